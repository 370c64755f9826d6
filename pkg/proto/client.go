package proto

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// ClientConfig configures a connection to a server.
type ClientConfig struct {
	// Addr is the server's UDP address, host:port.
	Addr string
	// Key is the laptop's identity.
	Key ed25519.PrivateKey
	// LoadKey, used when Key is nil, returns the laptop's identity. It is
	// called only when the handshake needs the key: a connection that
	// resumes a session (see Sessions) proves who it is with the ticket,
	// and a laptop with nothing to send then never derives its key (on an
	// XO-1 that is a table of multiples Go computes before the first
	// signature of a process).
	LoadKey func() (ed25519.PrivateKey, error)
	// Sessions, if set, keeps the TLS session tickets the server hands out,
	// so that the next connection resumes the session: a TLS 1.3 resumption
	// with a fresh key exchange, without certificates and without either
	// side's signature. The ticket carries the laptop's certificate from
	// the handshake that issued it, and the server checks that key against
	// its registry on every connection, resumed or not. Tickets live at
	// most 7 days and only within one run of the server.
	Sessions tls.ClientSessionCache
	// ServerKey is the server key pinned at registration. A server that
	// presents another key is refused (ErrServerKeyChanged).
	ServerKey ed25519.PublicKey
	// Streams is how many uploads run in parallel (default 4).
	Streams int
	// Timeout bounds connecting (default 10 s).
	Timeout time.Duration
	// IdleTimeout gives up on a server that has sent nothing for this long
	// (default 60 s); keep-alives go out at a quarter of it.
	IdleTimeout time.Duration
}

// clientTLS is the TLS configuration of a laptop's connection: its
// certificate made from key's key when the server asks for one, the
// server's key checked against pinned (nil: trust on first use, the key
// seen stored in seen), and sessions resumed from and stored in sessions
// when it is set.
func clientTLS(key func() (ed25519.PrivateKey, error), alpn string, pinned ed25519.PublicKey, seen *ed25519.PublicKey, sessions tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The certificate is made when the server asks for it: a resumed
		// handshake does not, and skips the key's signature.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			k, err := key()
			if err != nil {
				return nil, err
			}
			cert, err := certificate(k)
			return &cert, err
		},
		ClientSessionCache: sessions,
		NextProtos:         []string{alpn},
		ServerName:         "xs-backup",
		InsecureSkipVerify: true, // no CA: the server's key is pinned instead, checked below
		// VerifyConnection runs on every handshake, resumed ones too (with
		// the certificate the session was made with).
		VerifyConnection: func(cs tls.ConnectionState) error {
			pub, err := peerKey(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if pinned != nil && !pub.Equal(pinned) {
				return ErrServerKeyChanged
			}
			if seen != nil {
				*seen = pub
			}
			return nil
		},
	}
}

// fixedKey is a key source for clientTLS that has the key already.
func fixedKey(k ed25519.PrivateKey) func() (ed25519.PrivateKey, error) {
	return func() (ed25519.PrivateKey, error) { return k, nil }
}

func clientQUIC(idle time.Duration) *quic.Config {
	if idle <= 0 {
		idle = 60 * time.Second
	}
	return &quic.Config{HandshakeIdleTimeout: 10 * time.Second, MaxIdleTimeout: idle, KeepAlivePeriod: idle / 4,
		InitialStreamReceiveWindow: receiveWindow, MaxStreamReceiveWindow: receiveWindow,
		InitialConnectionReceiveWindow: receiveWindow, MaxConnectionReceiveWindow: receiveWindow}
}

// wireErr turns connection-level failures into *Error values where the
// server said why, and says what to do when it is unreachable.
func wireErr(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode > 0 && ae.ErrorCode < 256 {
		return &Error{Kind: Kind(ae.ErrorCode), Msg: ae.ErrorMessage}
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode > 0 && se.ErrorCode < 256 && Kind(se.ErrorCode).Valid() {
		// The server cut this request off with a kind and no frame.
		msg := "the server ended this request"
		if Kind(se.ErrorCode) == KindShutdown {
			msg = "the school server is restarting; run again in a minute"
		}
		return &Error{Kind: Kind(se.ErrorCode), Msg: msg}
	}
	var sr *quic.StatelessResetError
	if errors.As(err, &sr) {
		return fmt.Errorf("%w: the server restarted and dropped this connection; run again to resume where this run stopped", ErrUnreachable)
	}
	var ie *quic.IdleTimeoutError
	var he *quic.HandshakeTimeoutError
	if errors.As(err, &ie) || errors.As(err, &he) {
		return fmt.Errorf("%w: the server did not answer (the network is down or the server is not running)", ErrUnreachable)
	}
	return err
}

// ErrUnreachable: the server could not be reached.
var ErrUnreachable = errors.New("server unreachable")

// Register registers this laptop with the server at addr and returns the
// server's key, to be pinned for every later connection (trust on first use).
func Register(ctx context.Context, addr string, key ed25519.PrivateKey, serial, nickname string) (RegisterResult, error) {
	return RegisterWith(ctx, addr, key, RegisterRequest{Serial: serial, Nickname: nickname})
}

// RegisterWith is Register with every field of the request (a claim code).
func RegisterWith(ctx context.Context, addr string, key ed25519.PrivateKey, req RegisterRequest) (RegisterResult, error) {
	var server ed25519.PublicKey
	tc := clientTLS(fixedKey(key), ALPNRegister, nil, &server, nil)
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(dctx, addr, tc, clientQUIC(0))
	if err != nil {
		return RegisterResult{}, dialErr(addr, dialSide, err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return RegisterResult{}, wireErr(err)
	}
	if err := writeJSON(st, tRegister, req); err != nil {
		return RegisterResult{}, wireErr(err)
	}
	st.SetReadDeadline(time.Now().Add(15 * time.Second))
	typ, p, _, err := readFrame(st, nil)
	st.Close()
	if err != nil {
		return RegisterResult{}, wireErr(err)
	}
	if typ != tRegisterOK {
		return RegisterResult{}, Errorf(KindBadRequest, "unexpected answer %d to a registration", typ)
	}
	var res RegisterResult
	if err := decodeJSON(p, &res); err != nil {
		return res, err
	}
	res.ServerKey = server
	return res, nil
}

// Client is an authenticated connection to a server. It implements
// backup.Target once a backup session is granted (see Hello).
type Client struct {
	cfg  ClientConfig
	conn *quic.Conn
	// Info is sent with Commit.
	Info CommitInfo
	// Expect is what a backup expects to send, sent with Hello so that
	// admission can weigh it (zero: unknown, a small job).
	Expect Work
	// HoldFor is the longest the server may hold a Hello open while the
	// laptop waits for a place (0: the server decides).
	HoldFor time.Duration
	// EndWithCommit makes a successful Commit also end the session, as
	// Bye would, saving the laptop a round trip (Bye is then a no-op).
	EndWithCommit bool
	ended         bool
	last          SnapshotInfo
	params        chunk.Params
	granted       bool
	damaged       []blob.Ref // from the Grant: blobs to send again
	rescan        bool
	trips         atomic.Int64 // requests sent (each a stream and its answer)
	lastAct       atomic.Int64 // when a request last began or ended (Unix ns)
	afterWrite    func()       // tests: runs between a request's last frame and its FIN
}

// Dial connects and authenticates. A server that refuses this laptop (not
// registered, revoked, busy) fails here with an *Error saying so.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Streams <= 0 {
		cfg.Streams = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ServerKey == nil {
		return nil, Errorf(KindNotRegistered, "no pinned server key: this laptop has not registered with a server")
	}
	key := cfg.LoadKey
	if cfg.Key != nil {
		key = fixedKey(cfg.Key)
	} else if key == nil {
		return nil, errors.New("proto: ClientConfig has neither Key nor LoadKey")
	}
	tc := clientTLS(key, ALPNBackup, cfg.ServerKey, nil, cfg.Sessions)
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := quic.DialAddr(dctx, cfg.Addr, tc, clientQUIC(cfg.IdleTimeout))
	if err != nil {
		return nil, dialErr(cfg.Addr, dialSide, err)
	}
	return &Client{cfg: cfg, conn: conn}, nil
}

// dialSides names the two ends of a connection in dialErr's messages.
type dialSides struct{ self, peer string }

var (
	// Dial and registration serve laptops and school servers (to their
	// mothership).
	dialSide     = dialSides{"this machine", "the server"}
	recoverySide = dialSides{"this server", "the mothership"}
)

// dialErr says why connecting to the peer at addr failed.
func dialErr(addr string, sides dialSides, err error) error {
	if errors.Is(err, ErrServerKeyChanged) {
		return ErrServerKeyChanged
	}
	// The server answered and refused (revoked, busy…): its kind, not
	// "unreachable" (an ApplicationError is also a net.Error).
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return wireErr(err)
	}
	// The server answered, and the TLS handshake failed: it refused (another
	// protocol version, no common ALPN; a session it does not accept) or
	// what it sent did not pass this side's checks. Also a net.Error, but
	// reachable: saying "unreachable" would make every run a quiet skip.
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused {
		// A server that is stopping (or has just started), or one that
		// has more new connections from this address than it takes on at
		// once (handshake.go), refuses new connections: it is there, and
		// will take them again.
		return Errorf(KindShutdown, "%s (%s) is not taking connections right now: it is stopping or starting, or busy with new connections from this network address; try again in a minute", sides.peer, addr)
	}
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		who := sides.self + " refused " + sides.peer + "'s"
		if te.Remote {
			who = sides.peer + " refused " + sides.self + "'s"
		}
		return Errorf(KindBadRequest, "%s TLS handshake (%s, %v): %s and %s may run different versions of xs-backup (upgrade the older one); otherwise try again", who, addr, err, sides.peer, sides.self)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		// A resumed session's handshake waits on the context's deadline,
		// a full one on QUIC's own timeout: the same silence.
		return fmt.Errorf("%w (%s): %s did not answer (the network is down or %s is not running)", ErrUnreachable, addr, sides.peer, sides.peer)
	}
	if errors.As(err, &ne) {
		return fmt.Errorf("%w (%s): %v", ErrUnreachable, addr, err)
	}
	return wireErr(err)
}

// OpenRawStream opens a bare request stream, for protocol conformance tests
// and debugging tools that need to send frames the client never would.
func (c *Client) OpenRawStream(ctx context.Context) (*quic.Stream, error) {
	return c.conn.OpenStreamSync(ctx)
}

// RoundTrips returns how many requests this client has sent since Dial
// (each one a stream and its answer; uploads and fetches count once per
// stream they use).
func (c *Client) RoundTrips() int64 { return c.trips.Load() }

// Close ends the connection (and any session).
func (c *Client) Close() error { return c.conn.CloseWithError(0, "") }

// Closed reports whether the connection has ended: closed by either end
// (the server ends an idle one), or lost.
func (c *Client) Closed() bool { return c.conn.Context().Err() != nil }

// Resumed reports whether this connection resumed an earlier TLS session
// (see ClientConfig.Sessions) instead of a full handshake.
func (c *Client) Resumed() bool { return c.conn.ConnectionState().TLS.DidResume }

// BytesSent and BytesReceived are the QUIC bytes on this connection so far:
// everything on the wire (handshake, retransmissions, acknowledgements)
// except the UDP and IP headers.
func (c *Client) BytesSent() int64     { return int64(c.conn.ConnectionStats().BytesSent) }
func (c *Client) BytesReceived() int64 { return int64(c.conn.ConnectionStats().BytesReceived) }

// BytesLost is what this end has declared lost so far and had to send again.
func (c *Client) BytesLost() int64 { return int64(c.conn.ConnectionStats().BytesLost) }

// roundTrip opens a stream, writes the request frames, closes the write
// side and hands the stream's reader to read.
func (c *Client) roundTrip(ctx context.Context, write func(w io.Writer) error, read func(r io.Reader) error) error {
	c.trips.Add(1)
	c.lastAct.Store(time.Now().UnixNano())
	defer func() { c.lastAct.Store(time.Now().UnixNano()) }()
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return wireErr(err)
	}
	defer st.CancelRead(0)
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	// The server may answer with an error (and stop reading) before the
	// request is all written: that answer is the error to return.
	answered := func(err error) error {
		if _, _, _, rerr := readFrame(st, nil); rerr != nil && KindOf(rerr) != KindInternal {
			return wireErr(rerr)
		}
		return wireErr(err)
	}
	if err := write(st); err != nil {
		st.CancelWrite(0)
		return answered(err)
	}
	if c.afterWrite != nil {
		c.afterWrite()
	}
	// Close fails when the server stopped reading first: it does so once
	// it has the whole request and fails it part-way through its answer
	// (a fetch's blob that is damaged, after others were sent). The
	// request was all written, so the answer is read as usual and tells
	// what happened; the Close error itself says nothing.
	st.Close()
	return wireErr(read(st))
}

// KeepSession keeps a backup session from looking idle to the server
// while the laptop works without a request: reading a large file whose
// chunks this run has already sent (a file of zeros, a copy) can take
// minutes on an XO, and the server ends a session quiet for
// Limits.SessionIdle (30 s). Every `every`, if no request began or ended
// for that long, it asks the server for nothing (an empty need). stop ends
// it, and waits for a request it sent.
func (c *Client) KeepSession(ctx context.Context, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.lastAct.CompareAndSwap(0, time.Now().UnixNano())
	go func() {
		defer close(done)
		t := time.NewTicker(every / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, c.lastAct.Load())) < every {
				continue
			}
			c.roundTrip(ctx, func(w io.Writer) error {
				return writeFrame(w, tNeed, encodeRefs(nil))
			}, func(r io.Reader) error {
				_, err := expect(r, tNeedResp)
				return err
			})
		}
	}()
	return func() { cancel(); <-done }
}

func expect(r io.Reader, want byte) ([]byte, error) {
	typ, p, _, err := readFrame(r, nil)
	if err != nil {
		return nil, err
	}
	if typ != want {
		return nil, Errorf(KindBadRequest, "server answered with frame type %d, expected %d", typ, want)
	}
	return p, nil
}

// Hello asks to start: purpose "backup" asks admission for a backup
// session (with Expect), "restore" for a restore session (restores go
// first), "info" only fetches the parameters, quota and restore page. If
// the Grant is not granted, come back at Grant.Slot. The server may hold
// the hello open while a place is about to free.
func (c *Client) Hello(ctx context.Context, purpose string) (*Grant, error) {
	var g Grant
	req := helloReq{Version: 1, Purpose: purpose}
	if purpose == "backup" && c.Expect != (Work{}) {
		req.Work = &c.Expect
	}
	if c.HoldFor > 0 {
		req.HoldMillis = max(c.HoldFor.Milliseconds(), 1)
	}
	err := c.roundTrip(ctx, func(w io.Writer) error {
		return writeJSON(w, tHello, req)
	}, func(r io.Reader) error {
		p, err := expect(r, tHelloResp)
		if err != nil {
			return err
		}
		return decodeJSON(p, &g)
	})
	if err != nil {
		return nil, err
	}
	c.params = g.Params
	c.granted = g.Granted && purpose == "backup"
	c.damaged, c.rescan = g.Damaged, g.Rescan
	return &g, nil
}

// Damaged returns the blobs the server asked this laptop, in its Grant, to
// send again because its stored copy is damaged (backup.DamageReporter).
func (c *Client) Damaged(ctx context.Context) ([]blob.Ref, bool, error) {
	return c.damaged, c.rescan, nil
}

// Params returns the chunker parameters the server sent in Hello.
func (c *Client) Params() chunk.Params { return c.params }

// Need asks which blobs the server needs (see store.Store.Need for why the
// answer is private).
func (c *Client) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	out := make([]bool, 0, len(refs))
	for len(refs) > 0 {
		part := refs[:min(len(refs), MaxRefs)]
		refs = refs[len(part):]
		err := c.roundTrip(ctx, func(w io.Writer) error {
			return writeFrame(w, tNeed, encodeRefs(part))
		}, func(r io.Reader) error {
			p, err := expect(r, tNeedResp)
			if err != nil {
				return err
			}
			bits, err := decodeBits(p)
			if err != nil {
				return err
			}
			if len(bits) != len(part) {
				return Errorf(KindBadRequest, "server answered %d of %d", len(bits), len(part))
			}
			out = append(out, bits...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Put uploads blobs over up to Streams parallel streams, one stream per
// putStreamBytes of data: a night's few small blobs go in one request.
func (c *Client) Put(ctx context.Context, blobs []blob.Blob) error {
	size := 0
	for i := range blobs {
		size += len(blobs[i].Data)
	}
	n := min(c.cfg.Streams, len(blobs), 1+size/putStreamBytes)
	if n == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	per := (len(blobs) + n - 1) / n
	for i := 0; i < len(blobs); i += per {
		part := blobs[i:min(len(blobs), i+per)]
		g.Go(func() error {
			for len(part) > 0 {
				one := part[:min(len(part), MaxPutBlobs)]
				part = part[len(one):]
				err := c.roundTrip(gctx, func(w io.Writer) error {
					if err := writeFrame(w, tPut, nil); err != nil {
						return err
					}
					for i := range one {
						if err := writeBlob(w, &one[i]); err != nil {
							return err
						}
					}
					return writeFrame(w, tEnd, nil)
				}, func(r io.Reader) error {
					_, err := expect(r, tOK)
					return err
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// putStreamBytes is the least data Put gives a stream of its own.
const putStreamBytes = 1 << 20

// Commit records the snapshot of root and returns its ID.
func (c *Client) Commit(ctx context.Context, root chunk.ID) (string, error) {
	var sn SnapshotInfo
	err := c.roundTrip(ctx, func(w io.Writer) error {
		return writeJSON(w, tCommit, commitReq{Root: root, CommitInfo: c.Info, Last: c.EndWithCommit})
	}, func(r io.Reader) error {
		p, err := expect(r, tCommitResp)
		if err != nil {
			return err
		}
		return decodeJSON(p, &sn)
	})
	if err != nil {
		return "", err
	}
	c.last = sn
	c.ended = c.EndWithCommit
	return sn.ID, nil
}

// CommitWith records the snapshot of root with info, like Commit, but may
// run at the same time as other requests of the session, commits included:
// it neither ends the session nor changes Info or LastSnapshot. A school
// server replicating to its mothership commits many snapshots this way.
func (c *Client) CommitWith(ctx context.Context, root chunk.ID, info CommitInfo) (SnapshotInfo, error) {
	var sn SnapshotInfo
	err := c.roundTrip(ctx, func(w io.Writer) error {
		return writeJSON(w, tCommit, commitReq{Root: root, CommitInfo: info})
	}, func(r io.Reader) error {
		p, err := expect(r, tCommitResp)
		if err != nil {
			return err
		}
		return decodeJSON(p, &sn)
	})
	return sn, err
}

// LastSnapshot returns what the last successful Commit recorded.
func (c *Client) LastSnapshot() SnapshotInfo { return c.last }

// Bye ends the backup session, freeing its place for another laptop
// (nothing to do if a Commit with EndWithCommit already ended it).
func (c *Client) Bye(ctx context.Context) error {
	if c.ended {
		return nil
	}
	return c.roundTrip(ctx, func(w io.Writer) error { return writeFrame(w, tBye, nil) },
		func(r io.Reader) error { _, err := expect(r, tOK); return err })
}

// Snapshots lists this laptop's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context) ([]SnapshotInfo, error) {
	var sns []SnapshotInfo
	err := c.roundTrip(ctx, func(w io.Writer) error { return writeFrame(w, tList, nil) },
		func(r io.Reader) error {
			p, err := expect(r, tListResp)
			if err != nil {
				return err
			}
			return decodeJSON(p, &sns)
		})
	return sns, err
}

// Fetch downloads blobs this laptop's snapshots reference, calling fn for
// each in order. fn must verify what it uses (restore does: it re-hashes).
func (c *Client) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Blob) error) error {
	for len(refs) > 0 {
		part := refs[:min(len(refs), MaxRefs)]
		refs = refs[len(part):]
		err := c.roundTrip(ctx, func(w io.Writer) error {
			return writeFrame(w, tFetch, encodeRefs(part))
		}, func(r io.Reader) error {
			for i := 0; ; i++ {
				typ, p, _, err := readFrame(r, nil)
				if err != nil {
					return err
				}
				if typ == tEnd {
					if i != len(part) {
						return Errorf(KindBadRequest, "server sent %d of %d blobs", i, len(part))
					}
					return nil
				}
				if typ != tBlob || i >= len(part) {
					return Errorf(KindBadRequest, "unexpected frame %d in a fetch", typ)
				}
				b, err := decodeBlob(p)
				if err != nil {
					return err
				}
				if b.Ref != part[i] {
					return Errorf(KindBadRequest, "server sent %s, asked for %s", b.Ref, part[i])
				}
				if err := fn(b); err != nil {
					return err
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}
