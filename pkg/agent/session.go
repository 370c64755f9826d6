package agent

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// sessionName is the state file that keeps the TLS session ticket of the
// last connection to the server, so that the next run resumes that session
// instead of a full handshake (proto.ClientConfig.Sessions).
const sessionName = "tls-session"

// maxSessionFile caps what is read of the session file: a ticket and a
// session state are a few hundred bytes each, with the two certificates.
const maxSessionFile = 16 << 10

// sessionMagic starts the session file.
const sessionMagic = "xs-tls-session 1\n"

// sessionFile is a tls.ClientSessionCache that keeps one session in the
// state directory. It is bound to the laptop's key and the pinned server
// key: a session made with another key on either side is never offered
// (a new key after a reflash, another server after registering again). It
// is a cache: a file that is missing, damaged (its checksum) or stale
// means a full handshake, never a failed run, and it is written without
// fsync. A state altered behind a valid checksum fails one handshake
// (the server refuses its binder), after which crypto/tls forgets it.
type sessionFile struct {
	path string
	bind [32]byte
	mu   sync.Mutex // guards the file between quic-go's goroutines
}

// newSessionFile returns the session cache of a laptop whose key has seed
// and whose pinned server key is server.
func newSessionFile(path string, seed, server []byte) *sessionFile {
	h := sha256.New()
	h.Write([]byte("xs-backup tls session\x00"))
	h.Write(server)
	h.Write(seed)
	s := &sessionFile{path: path}
	h.Sum(s.bind[:0])
	return s
}

// Get returns the stored session for key, if there is one made with the
// same keys.
func (s *sessionFile) Get(key string) (*tls.ClientSessionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := readCapped(s.path, maxSessionFile)
	if err != nil {
		return nil, false
	}
	bind, k, ticket, state, err := decodeSession(b)
	if err != nil || bind != s.bind || k != key {
		return nil, false
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return nil, false
	}
	cs, err := tls.NewResumptionState(ticket, ss)
	if err != nil {
		return nil, false
	}
	return cs, true
}

// Put stores cs as the session for key, or forgets the stored one when cs
// is nil: crypto/tls does so for an expired ticket and when a handshake
// that offered the session failed (a server that rejects its binder), so
// that the next connection makes a full handshake.
func (s *sessionFile) Put(key string, cs *tls.ClientSessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs == nil {
		os.Remove(s.path)
		return
	}
	ticket, ss, err := cs.ResumptionState()
	if err != nil || ss == nil {
		return
	}
	state, err := ss.Bytes()
	if err != nil {
		return
	}
	b := encodeSession(s.bind, key, ticket, state)
	if len(b) > maxSessionFile {
		return
	}
	// Losing the file costs one full handshake: no fsync, but a rename, so
	// that a reader never sees half of it.
	f, err := os.CreateTemp(filepath.Dir(s.path), sessionName+".tmp*")
	if err != nil {
		return
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// encodeSession lays out the session file: the magic, the key binding, the
// cache key and the ticket each with a uvarint length, the session state
// (tls.SessionState.Bytes), then the SHA-256 of all that. A damaged state
// would otherwise fail the handshake (a wrong PSK binder) instead of
// falling back to a full one.
func encodeSession(bind [32]byte, key string, ticket, state []byte) []byte {
	b := make([]byte, 0, len(sessionMagic)+len(bind)+2*binary.MaxVarintLen64+len(key)+len(ticket)+len(state)+sha256.Size)
	b = append(b, sessionMagic...)
	b = append(b, bind[:]...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(ticket)))
	b = append(b, ticket...)
	b = append(b, state...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

var errBadSession = errors.New("agent: damaged TLS session file")

// decodeSession reads what encodeSession wrote; the slices alias b.
func decodeSession(b []byte) (bind [32]byte, key string, ticket, state []byte, err error) {
	if len(b) > maxSessionFile || !bytes.HasPrefix(b, []byte(sessionMagic)) || len(b) < len(sessionMagic)+len(bind)+sha256.Size {
		return bind, "", nil, nil, errBadSession
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return bind, "", nil, nil, errBadSession
	}
	b = body[len(sessionMagic):]
	copy(bind[:], b)
	b = b[len(bind):]
	field := func() []byte {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			err = errBadSession
			return nil
		}
		f := b[k : k+int(n)]
		b = b[k+int(n):]
		return f
	}
	k := field()
	if err != nil {
		return bind, "", nil, nil, err
	}
	ticket = field()
	if err != nil || len(ticket) == 0 || len(b) == 0 {
		return bind, "", nil, nil, errBadSession
	}
	return bind, string(k), ticket, b, nil
}

// readCapped reads the file at path, refusing one longer than limit.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = errBadSession
	}
	return b, err
}
