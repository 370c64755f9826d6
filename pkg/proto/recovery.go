package proto

import (
	"context"
	"crypto/ed25519"
	"io"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPNRecover is the protocol a new machine rebuilding a school server uses
// to fetch the school's recovery bundle from a mothership. It authenticates
// with the recovery key its staff derive from the recovery kit's passphrase.
const ALPNRecover = "xs-backup-recover/1"

// RecoveryServer is an optional Backend interface: a mothership that can
// stream a school's recovery bundle to the holder of its recovery key.
type RecoveryServer interface {
	// Recovery writes the recovery bundle of the school whose recovery key
	// is key to w, or fails with KindNotRegistered for a key it does not
	// know (before writing anything).
	Recovery(ctx context.Context, key ed25519.PublicKey, w io.Writer) error
}

// RecoveryTimeout bounds a recovery download (a whole school's history over
// a slow uplink).
const RecoveryTimeout = 12 * time.Hour

func (s *Server) serveRecovery(ctx context.Context, conn *quic.Conn, key ed25519.PublicKey) {
	defer conn.CloseWithError(0, "")
	rs, ok := s.cfg.Backend.(RecoveryServer)
	if !ok {
		s.closeWith(conn, Errorf(KindBadRequest, "this server keeps no schools' recovery bundles (it is not a mothership)"))
		return
	}
	sctx, cancel := context.WithTimeout(ctx, RecoveryTimeout)
	defer cancel()
	// The request comes at once, like a registration's: a connection that
	// opens no stream must not hold its registration place for the
	// download's hours.
	actx, acancel := context.WithTimeout(sctx, s.cfg.Limits.RegisterTimeout)
	st, err := conn.AcceptStream(actx)
	acancel()
	if err != nil {
		return
	}
	// The request is one empty frame, so the client's stream exists.
	st.SetReadDeadline(time.Now().Add(s.cfg.Limits.RegisterTimeout))
	if _, err := readFrameOf(st, tRecover); err != nil {
		return
	}
	st.SetReadDeadline(time.Time{})
	w := &startedWriter{w: st}
	if err := rs.Recovery(sctx, key, w); err != nil {
		s.m.errorOf(KindOf(err))
		if !w.started {
			writeError(st, err)
		} else {
			st.CancelWrite(quic.StreamErrorCode(KindOf(err)))
			return
		}
	}
	st.Close()
	st.SetReadDeadline(time.Now().Add(s.cfg.Limits.RegisterTimeout))
	io.Copy(io.Discard, io.LimitReader(st, 1))
}

// startedWriter records whether anything was written (an error after that
// can only cut the stream).
type startedWriter struct {
	w       io.Writer
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if len(p) > 0 && !s.started {
		s.started = true
		// The bundle starts with a frame header of its own kind, so the
		// client tells it from an error frame.
		if err := writeFrame(s.w, tRecoverData, nil); err != nil {
			return 0, err
		}
	}
	return s.w.Write(p)
}

// FetchRecovery connects to the mothership at addr with the school's
// recovery key and copies its recovery bundle into w. pinned, if set, is the
// mothership's key: another is refused (ErrServerKeyChanged).
func FetchRecovery(ctx context.Context, addr string, key ed25519.PrivateKey, pinned ed25519.PublicKey, w io.Writer) (int64, error) {
	tc := clientTLS(fixedKey(key), ALPNRecover, pinned, nil, nil)
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(dctx, addr, tc, clientQUIC(0))
	if err != nil {
		return 0, dialErr(addr, recoverySide, err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return 0, wireErr(err)
	}
	if err := writeFrame(st, tRecover, nil); err != nil {
		return 0, wireErr(err)
	}
	// Our side stays open until the answer is read: the server waits for
	// it to close before it closes the connection, which would otherwise
	// overtake the answer.
	defer st.Close()
	typ, p, _, err := readFrame(st, nil)
	if err != nil {
		return 0, wireErr(err)
	}
	if typ == tError {
		return 0, decodeError(p)
	}
	if typ != tRecoverData {
		return 0, Errorf(KindBadRequest, "unexpected answer %d to a recovery request", typ)
	}
	n, err := io.Copy(w, st)
	return n, wireErr(err)
}
