package proto

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestHandshakeLimits: the rules, on a clock of their own. Handshakes an
// address has not proved are taken on up to the cap, then that address is
// asked to prove itself; a spoofer filling a laptop's address with
// unproved handshakes does not get the laptop's proved ones refused; a
// proved address is refused past its cap and its rate, and is taken on
// again once a handshake ends; past the global rate every new address is
// asked to prove itself; loopback is exempt unless LimitLoopback.
func TestHandshakeLimits(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := Limits{LimitLoopback: true}
	l.setDefaults(256 << 20)
	lim := newLimiter(l, func() time.Time { return now })
	h := newHandshakes(l, func() time.Time { return now }, lim.exempt)
	udp := func(a string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a)) }
	take := func(addr net.Addr, proved bool) (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := h.connContext(ctx, &quic.ClientInfo{RemoteAddr: addr, AddrVerified: proved})
		return cancel, err
	}
	laptop := udp("10.0.0.7:40000")
	for i := range l.HandshakesPerAddr {
		if h.verify(laptop) {
			t.Fatalf("handshake %d of a new address asked for proof", i+1)
		}
		if _, err := take(laptop, false); err != nil {
			t.Fatal(err)
		}
	}
	if !h.verify(laptop) {
		t.Fatalf("an address with %d unproved handshakes in progress is taken on again", l.HandshakesPerAddr)
	}
	// Those may all have been a spoofer's: the laptop, proved, gets in.
	var held []context.CancelFunc
	for i := range l.HandshakesPerAddr {
		cancel, err := take(laptop, true)
		if err != nil {
			t.Fatalf("proved handshake %d refused after unproved ones filled the address: %v", i+1, err)
		}
		held = append(held, cancel)
	}
	if _, err := take(laptop, true); KindOf(err) != KindBusy {
		t.Fatalf("a proved address past %d handshakes in progress: %v, want refused", l.HandshakesPerAddr, err)
	}
	held[0]() // given back as the connection's context ends, in a moment
	for i := 0; ; i++ {
		_, err := take(laptop, true)
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("a handshake ended, the next refused: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The rate: a burst one at a time, then one per HandshakeEvery.
	other := udp("10.0.0.8:40000")
	ended := func(a net.Addr) { // each handshake over before the next starts
		for range 100 {
			h.mu.Lock()
			n := h.proved[addrOf(a)]
			h.mu.Unlock()
			if n == 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal("an ended handshake was not given back")
	}
	for i := range l.HandshakeBurst {
		cancel, err := take(other, true)
		if err != nil {
			t.Fatalf("proved handshake %d of a burst of %d, one at a time: %v", i+1, l.HandshakeBurst, err)
		}
		cancel()
		ended(other)
	}
	if _, err := take(other, true); KindOf(err) != KindBusy {
		t.Fatalf("a proved address past its burst of %d: %v, want refused", l.HandshakeBurst, err)
	}
	now = now.Add(l.HandshakeEvery)
	if _, err := take(other, true); err != nil {
		t.Fatalf("one per %v after the burst: %v", l.HandshakeEvery, err)
	}
	// The global rate: new addresses (spoofed ones, each new) are taken on
	// for the burst, then asked to prove themselves.
	now = now.Add(time.Hour)
	asked := 0
	for i := range 2 * l.HandshakeGlobalBurst {
		if h.verify(udp(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1).String())) {
			asked++
		}
	}
	if asked < l.HandshakeGlobalBurst-1 || asked > l.HandshakeGlobalBurst+1 {
		t.Fatalf("%d of %d new addresses asked for proof, want those past the burst of %d", asked, 2*l.HandshakeGlobalBurst, l.HandshakeGlobalBurst)
	}
	lo := newLimiter(Limits{}, time.Now)
	hl := newHandshakes(l, time.Now, lo.exempt)
	for range 4 * l.HandshakeGlobalBurst {
		if hl.verify(udp("127.0.0.1:5")) {
			t.Fatal("loopback asked for proof without LimitLoopback")
		}
	}
}

// deafConn is a laptop's UDP socket that sends and hears nothing back (a
// spoofed source address, whose answers go elsewhere), or, with hearRetry,
// hears the server's Retry and nothing after it: a device that proves its
// address and then stalls its handshakes.
type deafConn struct {
	net.PacketConn
	hearRetry bool
	heard     atomic.Bool
}

func (d *deafConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := d.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		// A QUIC v1 Retry: long header, type 3.
		if d.hearRetry && n > 0 && b[0]&0xf0 == 0xf0 && !d.heard.Swap(true) {
			return n, addr, nil
		}
	}
}

// flood opens n connections to addr from the source address src (each
// with a socket of its own), whose handshakes never finish, and waits
// until they give up.
func flood(t *testing.T, addr string, srcs []string, hearRetry bool) {
	t.Helper()
	var wg sync.WaitGroup
	for _, src := range srcs {
		pc, err := net.ListenPacket("udp", src+":0")
		if err != nil {
			t.Fatal(err)
		}
		d := &deafConn{PacketConn: pc, hearRetry: hearRetry}
		wg.Go(func() {
			defer d.Close()
			tr := &quic.Transport{Conn: d}
			defer tr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			if c, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)),
				&tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPNBackup}, MinVersion: tls.VersionTLS13}, nil); err == nil {
				c.CloseWithError(0, "")
			}
		})
	}
	wg.Wait()
}

// TestHandshakeFloodCostsTheServerLittle: real QUIC on loopback. One device
// opens 40 connections whose handshakes it never finishes, 40 spoofed
// addresses send one Initial each, and a device that proves its address
// and then stalls opens 40 more: the server takes on a few handshakes
// (each one a key exchange and a signature) and asks the rest to prove
// their address, refuses the stalled prover past its cap, and a laptop
// that dials in the middle of it all gets its session.
func TestHandshakeFloodCostsTheServerLittle(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	lim := Limits{LimitLoopback: true, HandshakesPerAddr: 4, HandshakeGlobalBurst: 16, HandshakeGlobalEvery: time.Second}
	ctx, addr, s := startServer(t, ServerConfig{Backend: &sinkBackend{}, Key: key, Metrics: m, Limits: lim})

	one := make([]string, 40)
	for i := range one {
		one[i] = "127.0.0.2"
	}
	var spoofed []string
	for i := range 40 {
		spoofed = append(spoofed, netip.AddrFrom4([4]byte{127, 0, 9, byte(10 + i)}).String())
	}
	prover := make([]string, 40)
	for i := range prover {
		prover[i] = "127.0.0.3"
	}
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { flood(t, addr, one, false) })
	wg.Go(func() { flood(t, addr, spoofed, false) })
	wg.Go(func() { flood(t, addr, prover, true) })
	time.Sleep(300 * time.Millisecond)
	c := sessionClient(t, ctx, addr, s.PublicKey(), "backup") // fails the test unless granted
	c.Close()
	wg.Wait()

	started, checks, refused := s.hs.counts()
	t.Logf("120 connections whose handshakes never finish: %d handshakes taken on, %d asked to prove their address, %d refused", started, checks, refused)
	// 4 unproved from the device, the global burst of 16 (the spoofed
	// addresses, the prover's first), 4 proved from the prover, the
	// laptop, and the global rate's refill (one a second) meanwhile.
	bound := 4 + 16 + 4 + 1 + int(time.Since(start)/time.Second) + 1
	if started > int64(bound) {
		t.Errorf("the server took on %d handshakes of a flood of 120; want at most %d", started, bound)
	}
	if checks == 0 || refused == 0 {
		t.Errorf("%d address checks and %d refusals in a flood: want both", checks, refused)
	}
	if v := m.Values(); v.AddressChecks != checks || v.HandshakesRefused != refused {
		t.Errorf("metrics say %d checks and %d refusals, the server %d and %d", v.AddressChecks, v.HandshakesRefused, checks, refused)
	}
}

// TestHandshakeLimitsCountOnlyHandshakes: a place is given back as soon as
// the handshake is done, not when the connection ends. Ten laptops' long
// sessions from one address (a classroom behind one NAT address), with a
// cap of 4 handshakes in progress per address, all connect and stay
// connected.
func TestHandshakeLimitsCountOnlyHandshakes(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{LimitLoopback: true, HandshakesPerAddr: 4, HandshakeBurst: 64}
	ctx, addr, s := startServer(t, ServerConfig{Backend: &sinkBackend{}, Key: key, Limits: lim})
	for i := range 10 {
		c := sessionClient(t, ctx, addr, s.PublicKey(), "restore") // fails the test unless granted
		if c.Closed() {
			t.Fatalf("laptop %d's connection closed", i+1)
		}
	}
	if _, _, refused := s.hs.counts(); refused != 0 {
		t.Fatalf("%d handshakes refused for 10 laptops connecting one after another", refused)
	}
}
