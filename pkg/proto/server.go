package proto

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/semaphore"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Account is what the server knows about an authenticated laptop.
type Account struct {
	ID         uint64
	Serial     string
	Nickname   string
	Approved   bool
	Revoked    bool
	LastBackup time.Time // zero if never
}

// SnapshotInfo describes a committed snapshot on the wire.
type SnapshotInfo struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Root      chunk.ID  `json:"root"`
	Files     int64     `json:"files"`
	Size      int64     `json:"size"`
	Stored    int64     `json:"stored"`
	Pinned    bool      `json:"pinned,omitempty"`
	PinReason string    `json:"pin_reason,omitempty"`
	// Origin is set on a mothership: where the snapshot was made.
	Origin *manifest.Origin `json:"origin,omitempty"`
	Host   string           `json:"host,omitempty"`
	Source string           `json:"source,omitempty"`
}

// QuotaStatus is a user's usage and limits, in bytes (0 = no limit).
type QuotaStatus struct {
	Used int64 `json:"used"`
	Soft int64 `json:"soft,omitempty"`
	Hard int64 `json:"hard,omitempty"`
}

// CommitInfo is sent with a commit (the same type as store.CommitInfo).
type CommitInfo = manifest.CommitInfo

// RegisterRequest is a laptop asking to be registered.
type RegisterRequest struct {
	Serial   string `json:"serial"`
	Nickname string `json:"nickname"`
	// Claim is a one-time claim code staff issued for this serial
	// (xs-admin claim-code): with it, a reflashed or replacement laptop
	// takes the serial's history at once, without waiting for approval.
	Claim string            `json:"claim,omitempty"`
	Key   ed25519.PublicKey `json:"-"` // from the TLS handshake
}

// RegisterResult is the server's answer to a registration.
type RegisterResult struct {
	Serial   string `json:"serial"`
	Approved bool   `json:"approved"`
	// KeyChange is set when the serial is known with another key (a
	// reflashed laptop, or a serial staff aliased or registered by hand):
	// the laptop waits until staff approve its key.
	KeyChange bool `json:"key_change,omitempty"`
	// Continued is set when the laptop took over an existing history (by
	// claim code); Snapshots is how many backups that history has.
	Continued bool              `json:"continued,omitempty"`
	Snapshots int               `json:"snapshots,omitempty"`
	ServerKey ed25519.PublicKey `json:"-"` // from the TLS handshake
}

// Prefetcher is an optional interface of a Backend: Prefetch is called
// with the whole list of a fetch request before Fetch is called for each,
// so that a backend whose blobs are remote can read them ahead together.
type Prefetcher interface {
	Prefetch(ctx context.Context, user uint64, refs []blob.Ref)
}

// FetchSizer is a Backend that tells, before reading it, the most bytes a
// blob's Fetch returns: a download reserves that much of the laptop's
// memory share, not the largest blob there may be. ok is false when it
// cannot tell.
type FetchSizer interface {
	FetchSize(ctx context.Context, r blob.Ref) (n int, ok bool)
}

// Backend is what the server needs from the store. Errors it returns should
// be *Error values (or wrap one) so that their kind reaches the laptop.
type Backend interface {
	// Params are the chunker parameters every client must use.
	Params() chunk.Params
	// Register records a new laptop (approved at once or not, by policy).
	Register(ctx context.Context, req RegisterRequest) (RegisterResult, error)
	// Account returns the laptop with this key; KindNotRegistered if none.
	Account(ctx context.Context, key ed25519.PublicKey) (Account, error)
	Quota(ctx context.Context, user uint64) (QuotaStatus, error)
	Need(ctx context.Context, user uint64, refs []blob.Ref) ([]bool, error)
	Put(ctx context.Context, user uint64, blobs []blob.Blob) error
	Commit(ctx context.Context, user uint64, root chunk.ID, info CommitInfo) (SnapshotInfo, error)
	Snapshots(ctx context.Context, user uint64) ([]SnapshotInfo, error)
	// Fetch returns a blob the user holds (KindNotFound otherwise, including
	// for blobs only other users hold).
	Fetch(ctx context.Context, user uint64, r blob.Ref) (blob.Blob, error)
	// Damaged lists the blobs this user holds whose stored copy is damaged
	// (all: there are more than the list holds), so that the laptop sends
	// them again in the session.
	Damaged(ctx context.Context, user uint64) (refs []blob.Ref, all bool, err error)
	// BeginSession is called when a backup session is granted; end is
	// called when it ends. Between the two, the store must not release
	// what the user holds (see store.Store.BeginSession).
	BeginSession(user uint64) (end func())
}

// Grant answers a Hello: a session now, or a slot to come back at.
type Grant struct {
	Granted    bool         `json:"granted"`
	Slot       time.Time    `json:"slot,omitempty"`
	Params     chunk.Params `json:"params"`
	Quota      QuotaStatus  `json:"quota"`
	ServerTime time.Time    `json:"server_time"`
	Serial     string       `json:"serial"`
	// RestorePage is where the students' restore page is served: a full
	// base URL, or ":PORT" on the host the laptop reached (empty: none).
	RestorePage string `json:"restore_page,omitempty"`
	// Damaged lists, in a granted backup session, blobs the laptop holds
	// whose stored copy is damaged: the laptop sends them again (reading
	// the files they came from even if unchanged), which heals them.
	Damaged []blob.Ref `json:"damaged,omitempty"`
	// Rescan: more blobs are damaged than Damaged lists; the laptop should
	// read every file again.
	Rescan bool `json:"rescan,omitempty"`
}

type helloReq struct {
	Version int    `json:"version"`
	Purpose string `json:"purpose"` // "backup", "restore" or "info"
	// Work is what a backup expects to send (absent from older clients:
	// a small job).
	Work *Work `json:"work,omitempty"`
	// HoldMillis is the longest the laptop lets the server hold the hello
	// while it waits for a place (absent: the server's AdmissionConfig.Hold).
	HoldMillis int64 `json:"hold_ms,omitempty"`
}

type commitReq struct {
	Root chunk.ID `json:"root"`
	CommitInfo
	// Last: the laptop has nothing more to do in this session; a
	// successful commit ends it (as a bye would). Servers before it ignore
	// the field and end the session when the connection closes.
	Last bool `json:"last,omitempty"`
}

// ServerConfig configures a Server. Zero values take the defaults shown.
type ServerConfig struct {
	Backend Backend
	// Key is the server's identity; laptops pin it at registration.
	Key ed25519.PrivateKey
	// RestorePage goes to laptops in every Grant (see Grant.RestorePage);
	// SetRestorePage changes it once the page listens.
	RestorePage string
	// Admission tunes admission (see AdmissionConfig): how many sessions
	// run at once is measured, not configured.
	Admission AdmissionConfig
	// FixedWindow, if set, replaces measured admission with the fixed
	// windows xs-backup had before (Capacity sessions, SlotLength windows),
	// so that a benchmark can compare old against new. Not for schools.
	FixedWindow *FixedWindow
	// Pacing paces what all laptops upload together (see PacingConfig).
	Pacing PacingConfig
	// MaxConns caps open connections (default 512).
	MaxConns int
	// MaxStreams caps concurrent requests per connection (default 16).
	MaxStreams int
	// SessionDeadline ends a backup session that runs longer (default 1 hour).
	SessionDeadline time.Duration
	// MinRate is the slowest transfer accepted, in bytes per second, per
	// frame after a 10-second allowance (default 4096): trickling clients are
	// dropped. Time the server itself holds a connection's uploads back (its
	// pacing, waits for upload memory) does not count against the laptop.
	MinRate int64
	// MemoryBudget caps the frame bytes all requests together hold (default
	// 256 MiB). An upload that would wait for memory first stores the blobs
	// it holds, so uploads never wait for each other's memory.
	MemoryBudget int64
	// HandshakeTimeout and IdleTimeout are QUIC's (defaults 10 s and 60 s).
	HandshakeTimeout, IdleTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the server's log (default: discarded).
	Logger *slog.Logger
	// Metrics, if set, is updated as the server runs.
	Metrics *Metrics
	// Limits are each device's fair share (see Limits).
	Limits Limits
}

// Server serves the backup protocol over QUIC.
type Server struct {
	cfg    ServerConfig
	admCfg AdmissionConfig // cfg.Admission with its defaults
	adm    admitter
	pace   *pacer
	lim    *limiter
	hs     *handshakes
	mem    *semaphore.Weighted
	tls    *tls.Config
	log    *slog.Logger
	m      *Metrics
	conns  atomic.Int64
	page   atomic.Value // string: the restore page announced in grants

	smallMu sync.Mutex               // guards smallAt and turns
	smallAt map[uint64]time.Time     // when each laptop's last small session was read ahead
	turns   map[uint64]chan struct{} // each laptop's turn in the pacer's line (paceTurn)

	mu       sync.Mutex // guards the fields below
	ln       *quic.Listener
	open     map[*quic.Conn]*atomic.Int64 // when each last answered a request (Unix ns)
	stopping bool
	// stopped is done once Shutdown begins: downloads in progress end
	// then (a read loses nothing; a laptop that died mid-restore would
	// hold the shutdown for its whole grace).
	stopped  context.Context
	stopNow  context.CancelFunc
	inflight sync.WaitGroup
}

// NewServer checks the configuration and returns a server ready to Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Backend == nil || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("proto: ServerConfig needs a Backend and an ed25519 Key")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxConns, 512)
	def(&cfg.MaxStreams, 16)
	defd(&cfg.SessionDeadline, time.Hour)
	defd(&cfg.HandshakeTimeout, 10*time.Second)
	defd(&cfg.IdleTimeout, 60*time.Second)
	if cfg.MinRate <= 0 {
		cfg.MinRate = 4096
	}
	if cfg.MemoryBudget <= 0 {
		cfg.MemoryBudget = 256 << 20
	}
	if cfg.MemoryBudget < MaxBlobFrame {
		cfg.MemoryBudget = MaxBlobFrame
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	cfg.Limits.setDefaults(cfg.MemoryBudget)
	cert, err := certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, mem: semaphore.NewWeighted(cfg.MemoryBudget), lim: newLimiter(cfg.Limits, cfg.Now),
		pace: newPacer(cfg.Pacing), open: map[*quic.Conn]*atomic.Int64{}, admCfg: cfg.Admission}
	s.stopped, s.stopNow = context.WithCancel(context.Background())
	s.admCfg.setDefaults()
	if fw := cfg.FixedWindow; fw != nil {
		s.adm = newFixedWindow(max(fw.Capacity, 1), max(fw.SlotLength, time.Second), 50*time.Millisecond, cfg.Now)
	} else {
		s.adm = newAdmission(cfg.Admission)
	}
	s.hs = newHandshakes(cfg.Limits, cfg.Now, s.lim.exempt)
	s.m.adm, s.m.pace, s.m.hs = s.adm, s.pace, s.hs
	s.tls = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{ALPNBackup, ALPNRegister, ALPNRecover},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs, err := parseCerts(raw)
			if err != nil {
				return err
			}
			_, err = peerKey(certs)
			return err
		},
	}
	return s, nil
}

// PublicKey returns the server's public key (what laptops pin).
func (s *Server) PublicKey() ed25519.PublicKey { return s.cfg.Key.Public().(ed25519.PublicKey) }

// receiveWindow caps what a peer may have in flight on one connection. quic-go
// drops a packet that arrives while 256 of the connection's packets wait to
// be processed, so a larger window lets a laptop outrun a busy server (or a
// busy laptop during a restore): the packets are dropped, declared lost and
// sent again. The school benchmark saw 6.4% of every upload's packets go
// twice; under this cap none are lost. 320 KiB is ~230 full packets, and
// still 26 Mbit/s at a 100 ms round trip, more than a school's Wi-Fi gives a
// laptop.
const receiveWindow = 320 << 10

// uploadWindow is the server's receive window for what laptops upload: small,
// so that the pacer's read rate, not a window a laptop may fill at once,
// decides what the laptops send (128 KiB is still 100 Mbit/s at a 10 ms
// round trip, and 10 Mbit/s at 100 ms).
const uploadWindow = 128 << 10

func (s *Server) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           s.cfg.HandshakeTimeout,
		MaxIdleTimeout:                 s.cfg.IdleTimeout,
		MaxIncomingStreams:             int64(s.cfg.MaxStreams),
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     uploadWindow,
		MaxStreamReceiveWindow:         uploadWindow,
		InitialConnectionReceiveWindow: uploadWindow,
		MaxConnectionReceiveWindow:     uploadWindow,
		Allow0RTT:                      false,
	}
}

// Serve accepts connections on pc until ctx is done or Shutdown is called.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	// A stateless reset key derived from the server's identity: after a
	// crash and restart, the new process answers packets of connections it
	// never knew with a stateless reset, so laptops learn at once that the
	// connection is gone (and may resume) instead of waiting out the idle
	// timeout.
	rk := quic.StatelessResetKey(blake3.Sum256(append([]byte("xs-backup stateless reset key\x00"), s.cfg.Key.Seed()...)))
	tr := &quic.Transport{Conn: pc, StatelessResetKey: &rk, VerifySourceAddress: s.hs.verify, ConnContext: s.hs.connContext}
	ln, err := tr.Listen(s.tls, s.quicConfig())
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	tctx, stopTicks := context.WithCancel(ctx)
	ticks := make(chan struct{})
	go func() { defer close(ticks); s.measure(tctx) }()
	defer func() { stopTicks(); <-ticks }()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping || ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.handleConn(ctx, conn)
	}
}

// ListenAndServe listens on the UDP address and serves.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer pc.Close()
	return s.Serve(ctx, pc)
}

// Shutdown stops accepting, lets requests in progress finish (so every
// commit that started is acknowledged or not, never half done) until ctx is
// done, then closes every connection. Downloads in progress end at once:
// a read loses nothing, and a laptop that died mid-restore would otherwise
// hold the shutdown until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	s.stopNow()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
		s.awaitAnswers(ctx)
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	for c := range s.open {
		c.CloseWithError(quic.ApplicationErrorCode(KindShutdown), "server shutting down; try again later")
	}
	s.mu.Unlock()
	return err
}

// answerGrace is how long Shutdown waits for laptops that were just
// answered to hang up: a request ends when its answer is queued, and a
// close sent before a lost packet of it was resent would lose it (a commit
// the server made, reported to the laptop as failed).
const answerGrace = 3 * time.Second

// awaitAnswers waits, at most answerGrace and not past ctx, for each
// connection that answered a request within answerGrace to be hung up by
// its laptop (which it does once it has read the answer). Idle
// connections are not waited for.
func (s *Server) awaitAnswers(ctx context.Context) {
	recent := time.Now().Add(-answerGrace).UnixNano()
	var wait []*quic.Conn
	s.mu.Lock()
	for c, answered := range s.open {
		if answered.Load() > recent {
			wait = append(wait, c)
		}
	}
	s.mu.Unlock()
	if len(wait) == 0 {
		return
	}
	t := time.NewTimer(answerGrace)
	defer t.Stop()
	for _, c := range wait {
		select {
		case <-c.Context().Done():
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) closeWith(conn *quic.Conn, err error) {
	k := KindOf(err)
	s.m.errorOf(k)
	msg := err.Error()
	var e *Error
	if errors.As(err, &e) {
		msg = e.Msg
	}
	conn.CloseWithError(quic.ApplicationErrorCode(k), msg)
}

func (s *Server) handleConn(ctx context.Context, conn *quic.Conn) {
	s.hs.done(conn)
	s.m.connsActive.Add(1)
	defer s.m.connsActive.Add(-1)
	cs := conn.ConnectionState().TLS
	addr := addrOf(conn.RemoteAddr())
	if cs.NegotiatedProtocol == ALPNRegister || cs.NegotiatedProtocol == ALPNRecover {
		// Registrations have their own small pool, apart from backups: a
		// flood of them never keeps a registered laptop out.
		release, err := s.lim.register(addr)
		if err != nil {
			s.m.limited.Add(1)
			s.closeWith(conn, err)
			return
		}
		defer release()
		if !s.track(conn) {
			return
		}
		defer s.untrack(conn)
		key, err := peerKey(cs.PeerCertificates)
		if err != nil {
			s.closeWith(conn, Errorf(KindBadRequest, "%v", err))
			return
		}
		if cs.NegotiatedProtocol == ALPNRecover {
			s.serveRecovery(ctx, conn, key)
			return
		}
		s.serveRegister(ctx, conn, key)
		return
	}
	n := s.conns.Add(1)
	defer s.conns.Add(-1)
	if n > int64(s.cfg.MaxConns) {
		s.closeWith(conn, Errorf(KindBusy, "too many connections; try again in a few minutes"))
		return
	}
	if !s.track(conn) {
		return
	}
	defer s.untrack(conn)
	key, err := peerKey(cs.PeerCertificates)
	if err != nil {
		s.closeWith(conn, Errorf(KindBadRequest, "%v", err))
		return
	}
	share, release, err := s.lim.conn(addr, key)
	if err != nil {
		s.m.limited.Add(1)
		s.closeWith(conn, err)
		return
	}
	defer release()
	acct, err := s.cfg.Backend.Account(ctx, key)
	if err == nil && acct.Revoked {
		err = Errorf(KindRevoked, "this laptop's registration was revoked or moved to a new laptop; ask your teacher")
	} else if err == nil && !acct.Approved {
		err = Errorf(KindNotApproved, "laptop %s is waiting for staff approval", acct.Serial)
	}
	if err != nil {
		if KindOf(err) == KindInternal {
			s.log.Error("account lookup", "err", err)
		}
		s.m.refused.Add(1)
		s.closeWith(conn, err)
		return
	}
	s.mu.Lock()
	answered := s.open[conn]
	s.mu.Unlock()
	if answered == nil {
		answered = new(atomic.Int64)
	}
	c := &serverConn{s: s, conn: conn, acct: acct, key: key, mem: share.mem, addr: addr, answered: answered}
	defer c.closed()
	c.watchIdle()
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		// Staff may revoke the laptop, move its history to a new key or
		// let a claim code take it while this connection is open: every
		// request is judged on the account as it is now.
		if err := s.stillValid(ctx, key, acct.ID); err != nil {
			st.CancelRead(quic.StreamErrorCode(KindOf(err)))
			writeError(st, err)
			st.Close()
			s.m.refused.Add(1)
			s.closeWith(conn, err)
			return
		}
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			st.CancelRead(quic.StreamErrorCode(KindShutdown))
			writeError(st, Errorf(KindShutdown, "server shutting down; try again later"))
			st.Close()
			continue
		}
		s.inflight.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.inflight.Done()
			c.serveStream(ctx, st)
		}()
	}
}

// stillValid reports whether key still belongs to the approved, unrevoked
// account id.
func (s *Server) stillValid(ctx context.Context, key ed25519.PublicKey, id uint64) error {
	_, err := s.accountNow(ctx, key, id)
	return err
}

// paceTurn runs wait (a read's place in the pacer's line) as user's only
// one in the line: a laptop reading on many streams and connections at once
// queues one read at a time, like a laptop reading on one, so the line
// shares the rate among laptops, not among streams.
func (s *Server) paceTurn(ctx context.Context, user uint64, wait func() error) error {
	s.smallMu.Lock()
	turn := s.turns[user]
	if turn == nil {
		if s.turns == nil || len(s.turns) > 1<<16 {
			s.turns = map[uint64]chan struct{}{} // bounded (a dropped turn only loses its fairness for a moment)
		}
		turn = make(chan struct{}, 1)
		s.turns[user] = turn
	}
	s.smallMu.Unlock()
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-turn }()
	return wait()
}

// smallAllowance reports whether user's new small session is read ahead
// of the big ones (see startSession): once per smallEvery.
func (s *Server) smallAllowance(user uint64) bool {
	now := time.Now()
	s.smallMu.Lock()
	defer s.smallMu.Unlock()
	if last, ok := s.smallAt[user]; ok && now.Sub(last) < smallEvery {
		return false
	}
	if s.smallAt == nil || len(s.smallAt) > 1<<16 {
		s.smallAt = map[uint64]time.Time{} // bounded; forgetting costs a laptop nothing
	}
	s.smallAt[user] = now
	return true
}

// smallEvery is how often a laptop's small session is read ahead of the
// big ones.
const smallEvery = time.Hour

// accountNow is the account of key as it is now, or why it may no longer
// back up or restore.
func (s *Server) accountNow(ctx context.Context, key ed25519.PublicKey, id uint64) (Account, error) {
	a, err := s.cfg.Backend.Account(ctx, key)
	switch {
	case err != nil:
		return a, err
	case a.Revoked || a.ID != id:
		return a, Errorf(KindRevoked, "this laptop's registration was revoked or moved to a new laptop; ask your teacher")
	case !a.Approved:
		return a, Errorf(KindNotApproved, "laptop %s is waiting for staff approval", a.Serial)
	}
	return a, nil
}

// track records an open connection (Shutdown closes it); false if the
// server is shutting down.
func (s *Server) track(conn *quic.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		s.closeWith(conn, Errorf(KindShutdown, "server shutting down"))
		return false
	}
	s.open[conn] = new(atomic.Int64)
	return true
}

func (s *Server) untrack(conn *quic.Conn) {
	s.mu.Lock()
	delete(s.open, conn)
	s.mu.Unlock()
}

// serveRegister answers one registration within Limits.RegisterTimeout and
// closes the connection.
func (s *Server) serveRegister(ctx context.Context, conn *quic.Conn, key ed25519.PublicKey) {
	deadline := time.Now().Add(s.cfg.Limits.RegisterTimeout)
	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	defer conn.CloseWithError(0, "")
	st, err := conn.AcceptStream(sctx)
	if err != nil {
		return
	}
	st.SetReadDeadline(deadline)
	st.SetWriteDeadline(deadline)
	res, err := s.register(sctx, st, key)
	if err != nil {
		s.m.errorOf(KindOf(err))
		writeError(st, err)
	} else {
		writeJSON(st, tRegisterOK, res)
	}
	st.Close()
	// Wait (within the deadline) for the client to read the answer and
	// close its side, so the connection's close cannot overtake the answer.
	io.Copy(io.Discard, io.LimitReader(st, 1))
}

func (s *Server) register(ctx context.Context, st *quic.Stream, key ed25519.PublicKey) (RegisterResult, error) {
	p, err := readFrameOf(st, tRegister)
	if err != nil {
		return RegisterResult{}, err
	}
	var req RegisterRequest
	if err := decodeJSON(p, &req); err != nil {
		return RegisterResult{}, err
	}
	req.Key = key
	res, err := s.cfg.Backend.Register(ctx, req)
	if err != nil {
		return res, err
	}
	s.log.Info("registered", "serial", req.Serial, "approved", res.Approved, "key_change", res.KeyChange, "claimed", res.Continued, "key", Fingerprint(key))
	return res, nil
}

// serverConn is one authenticated laptop connection.
type serverConn struct {
	s    *Server
	conn *quic.Conn
	acct Account
	key  ed25519.PublicKey   // the laptop's key, as its TLS handshake proved it
	mem  *semaphore.Weighted // the key's share of frame memory
	addr netip.Addr
	// held is how long, in all, the server has held this connection's
	// reads back (nanoseconds, every stream added: waits at the pacer and
	// for frame memory): time that is the server's, not the laptop's, when
	// the minimum rate is judged. holding counts the holds in progress.
	held    atomic.Int64
	holding atomic.Int32

	mu      sync.Mutex // guards the fields below
	session bool
	restore bool  // the session is a restore: it may fetch, not upload
	small   int64 // bytes a small session may still send ahead of big ones (pacing)
	gone    bool  // the connection has ended: no session may start
	asking  bool  // a hello for a session is waiting for admission
	timer   *time.Timer
	idle    *time.Timer // ends a session that makes no request (Limits.SessionIdle)
	// connIdle ends a connection without a session that makes no
	// request (Limits.ConnIdle).
	connIdle *time.Timer
	// active counts requests in progress; lastReq is when one last began
	// or ended (Unix nanoseconds).
	active  atomic.Int32
	lastReq atomic.Int64
	// answered is when a request last ended (Unix ns): its answer may
	// still be on the way, and Shutdown lets it arrive.
	answered *atomic.Int64
	end      func() // ends the backend's session
}

func (c *serverConn) inSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// ask marks a hello for a session as waiting for admission: false if the
// connection has a session or another hello waits (admission counts one
// place per laptop, released once: a second concurrent hello would take a
// place nobody gives back). done ends the wait.
func (c *serverConn) ask() (ok bool, done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session || c.asking {
		return false, nil
	}
	c.asking = true
	return true, func() {
		c.mu.Lock()
		c.asking = false
		c.mu.Unlock()
	}
}

// sessionKind reports whether a session runs, and whether it is a restore.
func (c *serverConn) sessionKind() (in, restore bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session, c.restore
}

// startSession starts the granted session; false if the connection has
// already ended (the laptop gave up while its hello waited for admission).
func (c *serverConn) startSession(restore bool, work Work) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone || c.session {
		return false
	}
	c.session, c.restore, c.small = true, restore, 0
	if (restore || work.Bytes < c.s.admCfg.SmallBytes) && c.s.smallAllowance(c.acct.ID) {
		// A small session's bytes are read first, up to what makes it
		// small (a laptop that claims little and sends much is paced
		// like the others once past it). Once an hour per laptop: a
		// new session (bye, hello) does not renew it.
		c.small = c.s.admCfg.SmallBytes
	}
	c.end = func() {}
	if !restore {
		c.end = c.s.cfg.Backend.BeginSession(c.acct.ID)
		c.s.m.sessions.Add(1)
	}
	c.timer = time.AfterFunc(c.s.cfg.SessionDeadline, func() {
		c.s.closeWith(c.conn, Errorf(KindTimeout, "the backup session passed its %v deadline; the next run continues where this one stopped", c.s.cfg.SessionDeadline))
	})
	c.lastReq.Store(time.Now().UnixNano())
	idle := c.s.cfg.Limits.SessionIdle
	check := func() {
		quiet := time.Since(time.Unix(0, c.lastReq.Load()))
		if c.active.Load() > 0 || quiet < idle {
			c.mu.Lock()
			if c.session {
				c.idle.Reset(max(idle-quiet, time.Second))
			}
			c.mu.Unlock()
			return
		}
		c.s.closeWith(c.conn, Errorf(KindTimeout, "the session made no request for %v; its place went to another laptop (the next run continues where this one stopped)", idle))
	}
	c.idle = time.AfterFunc(idle, check)
	return true
}

// closed ends the session, if any, when the connection ends, and keeps a
// hello still in flight from starting one.
func (c *serverConn) closed() {
	c.mu.Lock()
	c.gone = true
	if c.connIdle != nil {
		c.connIdle.Stop()
	}
	c.mu.Unlock()
	c.endSession()
}

// watchIdle ends the connection once it has had no session and no request
// for Limits.ConnIdle (a session has its own, shorter, SessionIdle).
func (c *serverConn) watchIdle() {
	idle := c.s.cfg.Limits.ConnIdle
	c.lastReq.Store(time.Now().UnixNano())
	check := func() {
		quiet := time.Since(time.Unix(0, c.lastReq.Load()))
		c.mu.Lock()
		busy := c.session || c.asking || c.gone
		c.mu.Unlock()
		if busy || c.active.Load() > 0 || quiet < idle {
			next := idle // a session or a request: look again later
			if !busy && c.active.Load() == 0 {
				next = max(idle-quiet, idle/8)
			}
			c.mu.Lock()
			if !c.gone {
				c.connIdle.Reset(next)
			}
			c.mu.Unlock()
			return
		}
		c.s.closeWith(c.conn, Errorf(KindTimeout, "the connection made no request for %v; connect again when there is something to do", idle))
	}
	c.mu.Lock()
	c.connIdle = time.AfterFunc(idle, check)
	c.mu.Unlock()
}

func (c *serverConn) endSession() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session {
		c.session = false
		c.timer.Stop()
		c.idle.Stop()
		c.end()
		c.s.adm.release(time.Now(), c.acct.ID)
	}
}

// read reads one request frame. Its memory is reserved piece by piece as
// the bytes arrive, from the key's share and the server's budget; the bytes
// are read through the pacer (pacedReader), and the minimum transfer rate
// is enforced through read deadlines over the frame.
//
// A request's own frame (hello, need, commit...: control, a few KB at
// most) goes in the pacer's small line; the blobs of an upload in the line
// of their session.
//
// spill, if not nil, gives back the memory the request holds (an upload's
// blobs so far go to the store): it is called before a piece waits for
// memory, so that uploads that each hold part of the server's memory never
// wait for each other until they fail as busy.
func (c *serverConn) read(ctx context.Context, st *quic.Stream, control bool, spill func() error, begun func()) (byte, []byte, func(), error) {
	st.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
	pr := &pacedReader{c: c, ctx: ctx, st: st, control: control, begun: begun}
	return readRequestFrame(pr, func(n int) (func(), error) {
		if pr.start.IsZero() {
			pr.start = time.Now() // the payload's minimum rate counts from here
			pr.held0 = c.held.Load()
		}
		rel, ok := tryReserve(c.mem, c.s.mem, int64(n))
		if !ok {
			if spill != nil {
				if err := spill(); err != nil {
					return nil, err
				}
			}
			rctx, cancel := c.memWait(ctx)
			defer cancel()
			// Waiting for memory other uploads hold is the server's time too.
			var err error
			c.hold(func() { rel, err = reserve(rctx, c.mem, c.s.mem, int64(n)) })
			if err != nil {
				c.s.m.limited.Add(1)
				return nil, err
			}
		}
		c.s.m.bytesIn.Add(int64(n))
		return rel, nil
	})
}

// readStep is the most the server reads from a stream at once: each step
// waits its turn at the pacer, so the flow-control credit a laptop gets
// back comes in small steps at the paced rate, not in frame-sized lumps.
const readStep = 16 << 10

// payloadGrace is how much longer than the minimum rate allows a payload
// may take (a variable for tests).
var payloadGrace = 10 * time.Second

// pacedReader reads a request stream through the pacer. A frame's header
// may take the idle timeout to come; its payload must come at the minimum
// rate from start (set when the first piece is reserved), and time the
// server itself holds the connection back is not the laptop's: it moves the
// read deadline. That is every wait of the connection's streams at the
// pacer and for frame memory, not this stream's pacer waits alone: the
// streams of an upload share the connection's flow-control credit, so
// while one of them is held back the others' bytes cannot come either, and
// a piece waits for memory that other sessions' uploads hold (a school
// morning with a class's download, dozens of sessions sharing a slow pace,
// had first backups cut as "too slow" when only a stream's own pacer waits
// counted).
type pacedReader struct {
	c     *serverConn
	ctx   context.Context
	st    *quic.Stream
	start time.Time
	got   int64
	held0 int64 // the connection's held time at start
	// last and heldLast: when the last bytes came, and the held time then.
	// A payload may not stall longer than 2*payloadGrace plus a step at the
	// minimum rate, however fast it came before: on the average alone, a
	// frame's first 16 MiB bought an hour of silence, its memory held.
	last     time.Time
	heldLast int64
	// control: the bytes go in the small line whatever the session.
	control bool
	// begun, if set, is called once the frame's header has come whole.
	begun func()
	hdr   int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > readStep {
		b = b[:readStep]
	}
	payload := !p.start.IsZero()
	var (
		n   int
		err error
	)
	for {
		held := p.c.held.Load()
		if payload {
			step := time.Duration(readStep * int64(time.Second) / p.c.s.cfg.MinRate)
			dl := p.start.Add(time.Duration(held-p.held0) + payloadGrace +
				time.Duration((p.got+readStep)*int64(time.Second)/p.c.s.cfg.MinRate))
			if p.last.IsZero() {
				p.last, p.heldLast = p.start, p.held0
			}
			if stall := p.last.Add(time.Duration(held-p.heldLast) + 2*payloadGrace + step); stall.Before(dl) {
				dl = stall
			}
			if soon := time.Now().Add(time.Second); p.c.holding.Load() > 0 && dl.Before(soon) {
				dl = soon // a hold in progress: look again
			}
			p.st.SetReadDeadline(dl)
		}
		n, err = p.st.Read(b)
		var ne net.Error
		if payload && n == 0 && errors.As(err, &ne) && ne.Timeout() && (p.c.held.Load() != held || p.c.holding.Load() > 0) {
			continue // the server held the connection back meanwhile: the deadline moves
		}
		break
	}
	if n > 0 {
		if payload {
			p.got += int64(n)
			p.last, p.heldLast = time.Now(), p.c.held.Load()
		}
		if p.begun != nil {
			if p.hdr += n; p.hdr >= 5 {
				p.begun()
				p.begun = nil
			}
		}
		var werr error
		small := p.control || p.c.takeSmall(n)
		p.c.hold(func() {
			werr = p.c.s.paceTurn(p.ctx, p.c.acct.ID, func() error { return p.c.s.pace.wait(p.ctx, n, small) })
		})
		if werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// hold runs wait, a time the server holds this connection's bytes back,
// and counts it as the server's.
func (c *serverConn) hold(wait func()) {
	c.holding.Add(1)
	t0 := time.Now()
	defer func() {
		c.held.Add(int64(time.Since(t0)))
		c.holding.Add(-1)
	}()
	wait()
}

// takeSmall says whether n bytes go in the pacer's small line: a small
// session's bytes do, up to what makes it small (a laptop that claims
// little and sends much is paced like the others once past it).
func (c *serverConn) takeSmall(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.small >= int64(n) {
		c.small -= int64(n)
		return true
	}
	return false
}

func (c *serverConn) serveStream(ctx context.Context, st *quic.Stream) {
	// A request counts as one in progress (the session is not idle) from
	// its whole header on: a stream holding a few bytes of a header, then
	// silence, must not keep a session's place in admission.
	counted := false
	begun := func() {
		counted = true
		c.active.Add(1)
		c.lastReq.Store(time.Now().UnixNano())
	}
	defer func() {
		if counted {
			now := time.Now().UnixNano()
			c.lastReq.Store(now)
			c.answered.Store(now)
			c.active.Add(-1)
		}
	}()
	defer st.Close()
	// A request ends at its last frame, not at the stream's FIN: read up to
	// the FIN (the client sends it right after its last frame), or QUIC never
	// counts the stream as finished and the connection runs out of stream
	// credit after MaxStreams requests.
	defer finishRead(st)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	typ, p, rel, err := c.read(ctx, st, true, nil, begun)
	if err != nil {
		c.fail(st, err)
		return
	}
	defer rel()
	switch typ {
	case tHello:
		err = c.hello(ctx, st, p)
	case tNeed:
		err = c.need(ctx, st, p)
	case tPut:
		err = c.put(ctx, st)
	case tCommit:
		err = c.commit(ctx, st, p)
	case tList:
		err = c.list(ctx, st)
	case tFetch:
		err = c.fetch(ctx, st, p)
	case tBye:
		c.endSession()
		err = writeFrame(st, tOK, nil)
	default:
		err = Errorf(KindBadRequest, "unexpected frame type %d at the start of a request", typ)
	}
	if err != nil {
		c.fail(st, err)
	}
}

// finishRead consumes the rest of a request stream up to its FIN; a client
// that sends more than a few bytes after its request, or holds the stream
// open, has its stream cancelled.
func finishRead(st *quic.Stream) {
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, io.LimitReader(st, 1<<10))
	if err != nil || n >= 1<<10 {
		st.CancelRead(quic.StreamErrorCode(KindBadRequest))
	}
}

func (c *serverConn) fail(st *quic.Stream, err error) {
	var se *quic.StreamError
	var ae *quic.ApplicationError
	if errors.As(err, &se) && se.Remote || errors.As(err, &ae) && ae.Remote {
		// The laptop gave the request up (interrupted, a sibling stream
		// failed, it hung up): its doing, not a failure of the server's,
		// whichever of the two ends got there first.
		c.s.m.abandoned.Add(1)
		c.s.log.Debug("request abandoned by the laptop", "serial", c.acct.Serial, "err", err)
		st.CancelRead(0)
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = Errorf(KindTimeout, "transfer too slow (under %d bytes/s); try again on a better connection", c.s.cfg.MinRate)
	}
	k := KindOf(err)
	c.s.m.errorOf(k)
	if k == KindInternal {
		c.s.log.Error("request failed", "serial", c.acct.Serial, "err", err)
	}
	writeError(st, err)
	st.CancelRead(quic.StreamErrorCode(k))
}

func (c *serverConn) hello(ctx context.Context, st *quic.Stream, p []byte) error {
	var req helloReq
	if err := decodeJSON(p, &req); err != nil {
		return err
	}
	if req.Version != 1 {
		return Errorf(KindBadRequest, "protocol version %d is not supported (this server speaks 1)", req.Version)
	}
	g := Grant{Granted: true}
	asking := false
	if req.Purpose == "backup" || req.Purpose == "restore" {
		var done func()
		if asking, done = c.ask(); asking {
			defer done()
		} else if in, restore := c.sessionKind(); !in {
			return Errorf(KindBadRequest, "another hello on this connection is waiting for a place")
		} else if restore != (req.Purpose == "restore") {
			return Errorf(KindBadRequest, "this connection's session is not a %s; end it (bye) before asking for another", req.Purpose)
		}
	}
	if asking {
		// The last good backup as it is now: a laptop that keeps its
		// connection open across backups is not "never backed up" for
		// ever (the fairness order puts those first).
		now, err := c.s.accountNow(ctx, c.key, c.acct.ID)
		if err != nil {
			return err
		}
		r := admitReq{user: c.acct.ID, restore: req.Purpose == "restore", lastBackup: now.LastBackup}
		if req.Work != nil {
			r.work = req.Work.sane()
		}
		r.hold = time.Duration(max(req.HoldMillis, 0)) * time.Millisecond
		// A hello held for a place ends when the laptop hangs up.
		hctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			select {
			case <-c.conn.Context().Done():
				stop()
			case <-hctx.Done():
			}
		}()
		g = c.s.adm.request(hctx, r, c.s.cfg.Now)
		if g.Granted {
			// Judged again once the place is given: staff may have
			// revoked the laptop while its hello waited.
			if err := c.s.stillValid(ctx, c.key, c.acct.ID); err != nil {
				c.s.adm.release(time.Now(), c.acct.ID)
				return err
			}
			if !c.startSession(r.restore, r.work) {
				c.s.adm.release(time.Now(), c.acct.ID)
				return Errorf(KindShutdown, "the connection ended before the session started")
			}
		}
		if !g.Granted && g.Slot.IsZero() {
			return Errorf(KindShutdown, "the connection ended while waiting for a place")
		}
		if !g.Granted {
			c.s.log.Debug("come back later", "serial", c.acct.Serial, "at", g.Slot)
		}
	}
	q, err := c.s.cfg.Backend.Quota(ctx, c.acct.ID)
	if err != nil {
		return err
	}
	if req.Purpose == "backup" && g.Granted {
		if g.Damaged, g.Rescan, err = c.s.cfg.Backend.Damaged(ctx, c.acct.ID); err != nil {
			return err
		}
	}
	g.Params, g.Quota, g.ServerTime, g.Serial = c.s.cfg.Backend.Params(), q, c.s.cfg.Now().UTC(), c.acct.Serial
	if v, ok := c.s.page.Load().(string); ok {
		g.RestorePage = v
	} else {
		g.RestorePage = c.s.cfg.RestorePage
	}
	return writeJSON(st, tHelloResp, g)
}

func (c *serverConn) needSession() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.session || c.restore {
		return Errorf(KindNoSession, "ask to start a backup (hello) and wait for a granted session first")
	}
	return nil
}

func (c *serverConn) need(ctx context.Context, st *quic.Stream, p []byte) error {
	if err := c.needSession(); err != nil {
		return err
	}
	refs, err := decodeRefs(p)
	if err != nil {
		return err
	}
	need, err := c.s.cfg.Backend.Need(ctx, c.acct.ID, refs)
	if err != nil {
		return err
	}
	return writeFrame(st, tNeedResp, encodeBits(need))
}

// put reads tBlob frames until tEnd and stores them in batches.
func (c *serverConn) put(ctx context.Context, st *quic.Stream) error {
	if err := c.needSession(); err != nil {
		return err
	}
	var batch []blob.Blob
	var rels []func()
	var size int
	flush := func() error {
		defer func() {
			for _, r := range rels {
				r()
			}
			batch, rels, size = batch[:0], rels[:0], 0
		}()
		if len(batch) == 0 {
			return nil
		}
		if err := c.s.cfg.Backend.Put(ctx, c.acct.ID, batch); err != nil {
			return err
		}
		c.s.m.blobsIn.Add(int64(len(batch)))
		return nil
	}
	defer func() {
		for _, r := range rels {
			r()
		}
	}()
	for n := 0; ; n++ {
		if n > MaxPutBlobs {
			return Errorf(KindTooLarge, "more than %d blobs in one upload", MaxPutBlobs)
		}
		typ, p, rel, err := c.read(ctx, st, false, flush, nil)
		if err != nil {
			return err
		}
		if typ == tEnd {
			rel()
			if err := flush(); err != nil {
				return err
			}
			return writeFrame(st, tOK, nil)
		}
		rels = append(rels, rel)
		if typ != tBlob {
			return Errorf(KindBadRequest, "expected a blob, got frame type %d", typ)
		}
		b, err := decodeBlob(p)
		if err != nil {
			return err
		}
		batch = append(batch, b)
		size += len(b.Data)
		if size >= 8<<20 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

func (c *serverConn) commit(ctx context.Context, st *quic.Stream, p []byte) error {
	if err := c.needSession(); err != nil {
		return err
	}
	var req commitReq
	if err := decodeJSON(p, &req); err != nil {
		return err
	}
	if err := c.s.lim.commit(c.addr, c.acct.ID); err != nil {
		c.s.m.commitsLimited.Add(1)
		return err
	}
	sn, err := c.s.cfg.Backend.Commit(ctx, c.acct.ID, req.Root, req.CommitInfo)
	if err != nil {
		return err
	}
	c.s.m.commits.Add(1)
	c.s.log.Info("snapshot committed", "serial", c.acct.Serial, "snapshot", sn.ID, "files", sn.Files, "size", sn.Size)
	if req.Last {
		c.endSession()
	}
	return writeJSON(st, tCommitResp, sn)
}

func (c *serverConn) list(ctx context.Context, st *quic.Stream) error {
	sns, err := c.s.cfg.Backend.Snapshots(ctx, c.acct.ID)
	if err != nil {
		return err
	}
	if sns == nil {
		sns = []SnapshotInfo{}
	}
	return writeJSON(st, tListResp, sns)
}

func (c *serverConn) fetch(ctx context.Context, st *quic.Stream, p []byte) error {
	if !c.inSession() {
		return Errorf(KindNoSession, "ask to start a restore (hello) and wait for a granted session first")
	}
	refs, err := decodeRefs(p)
	if err != nil {
		return err
	}
	if pf, ok := c.s.cfg.Backend.(Prefetcher); ok && len(refs) > 1 {
		pf.Prefetch(ctx, c.acct.ID, refs)
	}
	// When the daemon stops, a download ends within seconds: a laptop
	// that died mid-restore must not hold the shutdown. Between blobs the
	// laptop is told why (an error frame, which laptops of every release
	// read); a blob cut in the middle ends with the stream reset.
	stopping := Errorf(KindShutdown, "the school server is restarting; run the restore again in a minute")
	soon := func() { st.SetWriteDeadline(time.Now().Add(2 * time.Second)) }
	stop := context.AfterFunc(c.s.stopped, soon)
	defer stop()
	for _, r := range refs {
		if c.s.stopped.Err() != nil {
			return stopping
		}
		b, rel, err := c.fetchBlob(ctx, r)
		if err != nil {
			return err
		}
		st.SetWriteDeadline(time.Now().Add(10*time.Second + time.Duration(int64(len(b.Data))*int64(time.Second)/c.s.cfg.MinRate)))
		if c.s.stopped.Err() != nil {
			soon()
		}
		err = writeBlob(st, &b)
		rel()
		if err != nil && c.s.stopped.Err() != nil {
			st.CancelWrite(quic.StreamErrorCode(KindShutdown))
			return nil
		}
		if err != nil {
			return err
		}
	}
	return writeFrame(st, tEnd, nil)
}

// memWait is how long a request waits for frame memory: at most 30
// seconds, and not past its connection's end.
func (c *serverConn) memWait(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	stop := context.AfterFunc(c.conn.Context(), cancel)
	return rctx, func() { stop(); cancel() }
}

// fetchBlob reads one blob of a download with its memory reserved from the
// laptop's share and the server's budget, as an upload's frames are: the
// size the backend gives for it (FetchSizer; else the largest a blob may
// be) while it is read, then its own size until it is written (released
// by the returned func). A laptop that asks for blobs on
// many streams and never reads the answers holds its share, not the
// server's memory.
func (c *serverConn) fetchBlob(ctx context.Context, r blob.Ref) (blob.Blob, func(), error) {
	most := int64(MaxBlobFrame)
	if fs, ok := c.s.cfg.Backend.(FetchSizer); ok {
		if n, ok := fs.FetchSize(ctx, r); ok {
			most = min(int64(blobHeaderLen+n), most)
		}
	}
	take := func(n int64) (func(), error) {
		if rel, ok := tryReserve(c.mem, c.s.mem, n); ok {
			return rel, nil
		}
		rctx, cancel := c.memWait(ctx)
		defer cancel()
		var rel func()
		var err error
		c.hold(func() { rel, err = reserve(rctx, c.mem, c.s.mem, n) })
		if err != nil {
			c.s.m.limited.Add(1)
			return nil, Errorf(KindBusy, "the server's memory for downloads is in use; run the restore again in a few minutes")
		}
		return rel, nil
	}
	rel, err := take(most)
	if err != nil {
		return blob.Blob{}, nil, err
	}
	b, err := c.s.cfg.Backend.Fetch(ctx, c.acct.ID, r)
	if err != nil {
		rel()
		return blob.Blob{}, nil, err
	}
	if n := int64(blobHeaderLen + len(b.Data)); n > most {
		// Larger than its size said (written again since): the rest.
		more, err := take(n - most)
		if err != nil {
			rel()
			return blob.Blob{}, nil, err
		}
		return b, func() { more(); rel() }, nil
	}
	n := int64(blobHeaderLen + len(b.Data))
	c.s.mem.Release(most - n)
	c.mem.Release(most - n)
	return b, func() { c.s.mem.Release(n); c.mem.Release(n) }, nil
}

// Admission returns admission's state: the adaptive limit, the drain
// rates and, with queue, the waiting laptops in the order they will start.
func (s *Server) Admission(queue bool) AdmissionStatus { return s.adm.status(queue) }

// SetRestorePage changes the restore page address announced to laptops.
func (s *Server) SetRestorePage(page string) { s.page.Store(page) }

// SignLink signs a restore link with the server's key (for staff links).
func (s *Server) SignLink(c LinkClaims) string {
	c.ByServer = true
	return SignLink(s.cfg.Key, c)
}

// paceEvery is how often the pacer measures and moves its rate.
const paceEvery = 100 * time.Millisecond

// measure feeds the pacer (every paceEvery) and admission (every
// AdmissionConfig.Interval) with what the connections show: the bytes
// received and the queueing delay on the laptops' paths, from QUIC's
// ConnectionStats (a server that receives still sends acknowledged
// flow-control updates, which give round-trip samples) through a
// delayMeter.
func (s *Server) measure(ctx context.Context) {
	cfg := s.admCfg
	t := time.NewTicker(paceEvery)
	defer t.Stop()
	dm := newDelayMeter()
	lastPace, lastAdm := time.Now(), time.Now()
	var admBytes int64 = s.m.bytesIn.Load()
	var obs []connObs
	var worst time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case tick := <-t.C:
			// How late this goroutine runs after its timer fired is how
			// long the server's CPU makes any goroutine wait (QUIC's
			// packet handling too).
			dm.late(time.Since(tick))
		}
		now := time.Now()
		obs = obs[:0]
		s.mu.Lock()
		for c := range s.open {
			st := c.ConnectionStats()
			obs = append(obs, connObs{key: c, latest: st.LatestRTT, min: st.MinRTT})
		}
		s.mu.Unlock()
		q, base := dm.observe(now, obs)
		worst = max(worst, q)
		s.pace.update(now, now.Sub(lastPace), q, base)
		lastPace = now
		if now.Sub(lastAdm) >= cfg.Interval {
			b := s.m.bytesIn.Load()
			s.adm.tick(now, sample{bytes: b - admBytes, qdelay: worst})
			admBytes, lastAdm, worst = b, now, 0
		}
	}
}
