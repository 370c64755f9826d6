package proto

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/internal/bucket"
)

// handshakes bounds the work a flood of new connections makes the server
// do. Every QUIC Initial that carries a ClientHello costs the server a key
// exchange, a signature and a connection's state until the handshake ends
// or times out; one device sending Initials (from its own address or from
// spoofed ones) would otherwise keep both cores busy and every laptop out.
//
//   - An address with HandshakesPerAddr handshakes in progress that it has
//     not proved to be its own, or starting them faster than HandshakeBurst
//     then one per HandshakeEvery, or any address once new connections come
//     faster than the server's rate, is asked to prove it (a QUIC Retry:
//     one more round trip for a real laptop, nothing the server must keep,
//     and a spoofed address never answers).
//   - An address that has proved itself may have HandshakesPerAddr
//     handshakes in progress, and start them at HandshakeBurst then one
//     per HandshakeEvery; past that its new connections are refused.
//
// Spoofed handshakes are counted apart from proved ones, so that a device
// spoofing a laptop's address cannot get that laptop refused.
type handshakes struct {
	l   Limits
	now func() time.Time
	ex  func(netip.Addr) bool

	mu       sync.Mutex
	unproved map[netip.Addr]int // handshakes in progress from unproved addresses
	proved   map[netip.Addr]int
	global   bucket.Bucket
	perAddr  bucket.Keyed[netip.Addr] // proved handshakes started
	asked    bucket.Keyed[netip.Addr] // unproved handshakes started
	started  int64                    // handshakes the server took on (tests)
	retried  int64
	refused  int64
}

func newHandshakes(l Limits, now func() time.Time, exempt func(netip.Addr) bool) *handshakes {
	return &handshakes{l: l, now: now, ex: exempt, unproved: map[netip.Addr]int{}, proved: map[netip.Addr]int{},
		global:  bucket.Bucket{Burst: l.HandshakeGlobalBurst, Every: l.HandshakeGlobalEvery},
		perAddr: bucket.Keyed[netip.Addr]{Burst: l.HandshakeBurst, Every: l.HandshakeEvery},
		asked:   bucket.Keyed[netip.Addr]{Burst: l.HandshakeBurst, Every: l.HandshakeEvery}}
}

// verify is quic.Transport.VerifySourceAddress: whether an Initial from
// addr without a token must first prove its address.
func (h *handshakes) verify(a net.Addr) bool {
	addr := addrOf(a)
	if h.ex(addr) {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// A device that starts handshakes and drops them as soon as the
	// server has answered frees its places at once: its rate counts too.
	if h.unproved[addr] >= h.l.HandshakesPerAddr || !h.asked.Allow(addr, h.now()) || !h.global.Allow(h.now()) {
		h.retried++
		return true
	}
	return false
}

type handshakeKey struct{}

// connContext is quic.Transport.ConnContext: it takes on the handshake or
// refuses it. What it took on is given back when the handshake ends, by
// done (called when the server accepts the connection) or with ctx.
func (h *handshakes) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	addr := addrOf(info.RemoteAddr)
	if h.ex(addr) {
		return ctx, nil
	}
	count := h.unproved
	h.mu.Lock()
	if info.AddrVerified {
		count = h.proved
		if count[addr] >= h.l.HandshakesPerAddr || !h.perAddr.Allow(addr, h.now()) {
			h.refused++
			h.mu.Unlock()
			return nil, Errorf(KindBusy, "too many new connections from this device")
		}
	}
	count[addr]++
	h.started++
	h.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if count[addr]--; count[addr] <= 0 {
				delete(count, addr)
			}
		})
	}
	context.AfterFunc(ctx, release)
	return context.WithValue(ctx, handshakeKey{}, release), nil
}

// done gives back what the handshake of an accepted connection held.
func (h *handshakes) done(conn *quic.Conn) {
	if release, ok := conn.Context().Value(handshakeKey{}).(func()); ok {
		release()
	}
}

// counts are the handshakes taken on, the Initial packets answered with a
// Retry (a connection's retransmissions each count) and the refused ones
// so far.
func (h *handshakes) counts() (started, retried, refused int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started, h.retried, h.refused
}
