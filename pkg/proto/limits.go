package proto

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/xs-backup/xs-backup/internal/bucket"
)

// Limits are each device's fair share of the server: what one key and one
// source address may hold, and how fast registrations and commits may come.
// They are apart from admission (admission.go), which decides when a
// laptop's backup session runs: these caps hold whatever admission decides,
// so that one misbehaving device can never take what the others need.
// Zero values take the defaults shown.
type Limits struct {
	// ConnsPerKey caps one laptop key's open connections (default 4).
	ConnsPerKey int
	// ConnsPerAddr caps the backup connections from one source address,
	// whatever their keys (default 16).
	ConnsPerAddr int
	// MemoryPerKey caps the frame bytes one key's requests hold together
	// (default a quarter of ServerConfig.MemoryBudget, at least one
	// largest frame). Memory is reserved as bytes arrive, never for what a
	// frame header claims.
	MemoryPerKey int64
	// RegisterConns caps open registration connections in all (default 32)
	// and RegisterConnsPerAddr from one address (default 2). They are
	// counted apart from backup connections (ServerConfig.MaxConns).
	RegisterConns        int
	RegisterConnsPerAddr int
	// RegisterTimeout is all a registration connection gets (default 5 s);
	// the server closes it as soon as it has answered.
	RegisterTimeout time.Duration
	// RegisterBurst registrations per address, then one per RegisterEvery
	// (defaults 5 and 10 s); RegisterGlobalBurst and RegisterGlobalEvery
	// limit all addresses together (defaults 120 and 250 ms).
	RegisterBurst       int
	RegisterEvery       time.Duration
	RegisterGlobalBurst int
	RegisterGlobalEvery time.Duration
	// CommitBurst commits per laptop, then one per CommitEvery (defaults 24
	// and 10 minutes: a laptop backs up a few times a day).
	CommitBurst int
	CommitEvery time.Duration
	// SessionIdle ends a session that has made no request for this long
	// (default 30 s): keep-alives hold a connection open, and a session
	// holds a place in admission that other laptops wait for. A laptop
	// backing up or restoring asks again within seconds.
	SessionIdle time.Duration
	// ConnIdle ends a connection that has no session and has made no
	// request for this long (default 15 minutes): keep-alives would hold
	// it, a place of the server's connections and of its laptop's,
	// for as long as the laptop's process lives (a hung run). It is
	// longer than a laptop waits, connected, for the slot the server
	// reserved (agent.RunOptions.MaxSlotWait, 10 minutes).
	ConnIdle time.Duration
	// HandshakesPerAddr caps the handshakes in progress from one source
	// address (default 16, as ConnsPerAddr). Past it, an address that has
	// not proved it is its own is asked to (a QUIC Retry), and one that
	// has is refused. HandshakeBurst handshakes per address, then one per
	// HandshakeEvery (defaults 32 and 100 ms): past that rate an address
	// is asked to prove itself, and refused once it has. Once new connections from
	// all addresses together come faster than HandshakeGlobalBurst, then
	// one per HandshakeGlobalEvery (defaults 128 and 10 ms), every new
	// address is asked to prove itself first: a flood of Initials, from
	// one device or from spoofed addresses, costs the server no key
	// exchange and no signature, and a laptop one more round trip.
	HandshakesPerAddr    int
	HandshakeBurst       int
	HandshakeEvery       time.Duration
	HandshakeGlobalBurst int
	HandshakeGlobalEvery time.Duration
	// LimitLoopback applies the per-address caps and the registration and
	// commit rates to loopback peers too. By default they are exempt: a
	// laptop never reaches the school server over loopback, while local
	// tools, the demo and the benchmark (hundreds of laptops from 127.0.0.1)
	// do. Per-key caps and memory always apply.
	LimitLoopback bool
}

func (l *Limits) setDefaults(memoryBudget int64) {
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
	def(&l.ConnsPerKey, 4)
	def(&l.ConnsPerAddr, 16)
	def(&l.RegisterConns, 32)
	def(&l.RegisterConnsPerAddr, 2)
	def(&l.RegisterBurst, 5)
	def(&l.RegisterGlobalBurst, 120)
	def(&l.CommitBurst, 24)
	def(&l.HandshakesPerAddr, 16)
	def(&l.HandshakeBurst, 32)
	def(&l.HandshakeGlobalBurst, 128)
	defd(&l.HandshakeEvery, 100*time.Millisecond)
	defd(&l.HandshakeGlobalEvery, 10*time.Millisecond)
	defd(&l.RegisterTimeout, 5*time.Second)
	defd(&l.RegisterEvery, 10*time.Second)
	defd(&l.RegisterGlobalEvery, 250*time.Millisecond)
	defd(&l.CommitEvery, 10*time.Minute)
	defd(&l.SessionIdle, 30*time.Second)
	defd(&l.ConnIdle, 15*time.Minute)
	if l.MemoryPerKey <= 0 {
		l.MemoryPerKey = memoryBudget / 4
	}
	l.MemoryPerKey = max(l.MemoryPerKey, MaxBlobFrame)
}

// limiter enforces Limits.
type limiter struct {
	l   Limits
	now func() time.Time

	mu        sync.Mutex // guards the maps and regOpen
	keys      map[string]*keyShare
	addrs     map[netip.Addr]int
	regAddrs  map[netip.Addr]int
	regOpen   int
	regGlobal bucket.Bucket

	regPerAddr bucket.Keyed[netip.Addr]
	commits    bucket.Keyed[uint64]
}

// keyShare is what one key's connections hold together.
type keyShare struct {
	conns int
	mem   *semaphore.Weighted
}

func newLimiter(l Limits, now func() time.Time) *limiter {
	return &limiter{l: l, now: now, keys: map[string]*keyShare{}, addrs: map[netip.Addr]int{}, regAddrs: map[netip.Addr]int{},
		regGlobal:  bucket.Bucket{Burst: l.RegisterGlobalBurst, Every: l.RegisterGlobalEvery},
		regPerAddr: bucket.Keyed[netip.Addr]{Burst: l.RegisterBurst, Every: l.RegisterEvery},
		commits:    bucket.Keyed[uint64]{Burst: l.CommitBurst, Every: l.CommitEvery}}
}

func addrOf(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(u.IP); ok {
			return ip.Unmap()
		}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr()
}

// exempt reports whether addr escapes per-address caps and rates.
func (l *limiter) exempt(addr netip.Addr) bool { return !l.l.LimitLoopback && addr.IsLoopback() }

// register admits a registration connection from addr; release when it ends.
func (l *limiter) register(addr netip.Addr) (release func(), err error) {
	if l.exempt(addr) {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.regOpen >= l.l.RegisterConns:
		return nil, Errorf(KindBusy, "too many laptops are registering right now; try again in a minute")
	case l.regAddrs[addr] >= l.l.RegisterConnsPerAddr:
		return nil, Errorf(KindBusy, "this device already has a registration in progress; wait for it to finish")
	case !l.regPerAddr.Allow(addr, l.now()):
		return nil, Errorf(KindBusy, "too many registrations from this device; try again in a minute")
	case !l.regGlobal.Allow(l.now()):
		return nil, Errorf(KindBusy, "too many registrations right now; try again in a minute")
	}
	l.regOpen++
	l.regAddrs[addr]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.regOpen--
		if l.regAddrs[addr]--; l.regAddrs[addr] <= 0 {
			delete(l.regAddrs, addr)
		}
	}, nil
}

// conn admits a backup connection of key from addr; release when it ends.
func (l *limiter) conn(addr netip.Addr, key []byte) (*keyShare, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrs[addr] >= l.l.ConnsPerAddr && !l.exempt(addr) {
		return nil, nil, Errorf(KindBusy, "too many connections from this device (%d); close the others", l.l.ConnsPerAddr)
	}
	ks := l.keys[string(key)]
	if ks != nil && ks.conns >= l.l.ConnsPerKey {
		return nil, nil, Errorf(KindBusy, "this laptop already has %d connections open: another run of it is in progress, or runs cut off (the laptop switched off, the program killed) left them until they time out within a minute; the next run will do", ks.conns)
	}
	if ks == nil {
		ks = &keyShare{mem: semaphore.NewWeighted(l.l.MemoryPerKey)}
		l.keys[string(key)] = ks
	}
	ks.conns++
	l.addrs[addr]++
	return ks, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if ks.conns--; ks.conns == 0 {
			delete(l.keys, string(key))
		}
		if l.addrs[addr]--; l.addrs[addr] <= 0 {
			delete(l.addrs, addr)
		}
	}, nil
}

// commit says whether the laptop may commit another snapshot now.
func (l *limiter) commit(addr netip.Addr, user uint64) error {
	if !l.exempt(addr) && !l.commits.Allow(user, l.now()) {
		return Errorf(KindBusy, "this laptop committed %d backups recently (a laptop needs a few a day); the next run will do", l.l.CommitBurst)
	}
	return nil
}

// framePiece is how much of a frame's payload is reserved and read at once.
const framePiece = 64 << 10

// tryReserve is reserve without waiting: false if either is taken.
func tryReserve(share, global *semaphore.Weighted, n int64) (func(), bool) {
	if !share.TryAcquire(n) {
		return nil, false
	}
	if !global.TryAcquire(n) {
		share.Release(n)
		return nil, false
	}
	return func() { global.Release(n); share.Release(n) }, true
}

// reserve takes n bytes of frame memory from the key's share and then from
// the server's budget, waiting at most until ctx is done.
func reserve(ctx context.Context, share, global *semaphore.Weighted, n int64) (func(), error) {
	if err := share.Acquire(ctx, n); err != nil {
		return nil, Errorf(KindBusy, "this laptop holds its whole share of the server's memory; send fewer requests at once")
	}
	if err := global.Acquire(ctx, n); err != nil {
		share.Release(n)
		return nil, Errorf(KindBusy, "the server's memory for transfers is in use; try again in a few minutes")
	}
	return func() { global.Release(n); share.Release(n) }, nil
}
