package server_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// laUDPProxy forwards one laptop's datagrams to the daemon and back until
// cut: then the laptop has vanished (lid closed, out of the Wi-Fi's reach)
// without a word to the server.
type laUDPProxy struct {
	front, back net.PacketConn
	wg          sync.WaitGroup
}

func laNewProxy(t testing.TB, server net.Addr) *laUDPProxy {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	p := &laUDPProxy{front: front, back: back}
	var mu sync.Mutex
	var client net.Addr
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			client = from
			mu.Unlock()
			back.WriteTo(buf[:n], server)
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, _, err := back.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := client
			mu.Unlock()
			if to != nil {
				front.WriteTo(buf[:n], to)
			}
		}
	}()
	return p
}

// cut drops everything from now on.
func (p *laUDPProxy) cut() {
	p.front.Close()
	p.back.Close()
	p.wg.Wait()
}

// TestLeakAttackConnections: over a term the daemon sees every kind of
// connection that never becomes a backup: laptops that finish the TLS
// handshake and hang up, that ask for a session and hang up, that send
// garbage on a stream, stray UDP datagrams, devices with a key the server
// does not know, and laptops that vanish mid-session (no close ever
// arrives). Each is refused or ended, and afterwards the daemon holds what
// it held before: nothing per connection stays behind.
func TestLeakAttackConnections(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		reps   int
		settle time.Duration
		op     func(t *testing.T, d *server.Daemon, l *laptop, r *rand.Rand)
	}{
		{"handshake then hang up", 300, 5 * time.Second, func(t *testing.T, d *server.Daemon, l *laptop, _ *rand.Rand) {
			key, _ := l.st.Key()
			c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}},
		{"session granted then hang up", 300, 5 * time.Second, func(t *testing.T, d *server.Daemon, l *laptop, _ *rand.Rand) {
			key, _ := l.st.Key()
			c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
			if err != nil {
				t.Fatal(err)
			}
			if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
				c.Close()
				t.Fatalf("hello: %+v %v", g, err)
			}
			c.Close()
		}},
		{"garbage on a stream", 200, 5 * time.Second, func(t *testing.T, d *server.Daemon, l *laptop, r *rand.Rand) {
			key, _ := l.st.Key()
			c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			junk := make([]byte, 1+r.IntN(400))
			for j := range junk {
				junk[j] = byte(r.Uint32())
			}
			if r.IntN(2) == 0 {
				junk = append(frame(99, nil), junk...)
			}
			rawRequest(t, c, junk)
		}},
		{"stray UDP datagrams", 500, 3 * time.Second, func(t *testing.T, d *server.Daemon, _ *laptop, r *rand.Rand) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			junk := make([]byte, 1200+r.IntN(200))
			for j := range junk {
				junk[j] = byte(r.Uint32())
			}
			// Half of them look like a QUIC v1 Initial's long header.
			if r.IntN(2) == 0 {
				junk[0] = 0xc0 | junk[0]&0x0f
				copy(junk[1:5], []byte{0, 0, 0, 1})
				junk[5] = 8
			}
			pc.WriteTo(junk, d.Addr)
		}},
		{"unknown key refused", 300, 5 * time.Second, func(t *testing.T, d *server.Daemon, _ *laptop, _ *rand.Rand) {
			key, err := proto.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
			if err == nil {
				_, err = c.Hello(ctx, "backup")
				c.Close()
			}
			if err == nil || errors.Is(err, proto.ErrUnreachable) {
				t.Fatalf("an unknown key: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, nil)
			l := newLaptop(t, d, "LEAKCN01", 403)
			l.run(t)
			r := randFor(404)
			for range 5 {
				tc.op(t, d, l, r)
			}
			time.Sleep(200 * time.Millisecond)
			base := laMeasure(t)
			took := laRepeat(t, tc.reps, func(int) { tc.op(t, d, l, r) })
			t.Logf("%d × %s in %v", tc.reps, tc.name, took.Round(time.Millisecond))
			laCheck(t, tc.name, tc.reps, base, tc.settle)
			// The daemon still serves a laptop.
			l.run(t)
		})
	}
}

// TestLeakAttackVanishedLaptops: 40 laptops connect and ask for a session
// at once (some are granted one, the rest wait in admission's line), then
// vanish (lid closed, walked out of the Wi-Fi): no close ever reaches the
// server. Once QUIC's idle timeout has passed (here 2 s, the laptops'
// setting) the daemon has let go of each: goroutines, descriptors and heap
// are back near the baseline, and admission has no session running or
// waiting.
func TestLeakAttackVanishedLaptops(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "LEAKVN01", 405)
	l.run(t)
	// One key per laptop: a key holds at most a few connections.
	var keys []ed25519.PrivateKey
	for i := range 43 {
		k, err := proto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := proto.Register(ctx, d.Addr.String(), k, fmt.Sprintf("LEAKVN%03d", i+2), "kid"); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	vanish := func(n int) {
		var wg sync.WaitGroup
		for range n {
			key := keys[0]
			keys = keys[1:]
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := laNewProxy(t, d.Addr)
				c, err := proto.Dial(ctx, proto.ClientConfig{Addr: p.front.LocalAddr().String(), Key: key, ServerKey: d.Server.PublicKey(),
					IdleTimeout: 2 * time.Second})
				if err != nil {
					p.cut()
					t.Error(err)
					return
				}
				hctx, cancel := context.WithCancel(ctx)
				asked := make(chan struct{})
				go func() { defer close(asked); c.Hello(hctx, "backup") }()
				time.Sleep(300 * time.Millisecond)
				p.cut()
				c.Close() // the close frame goes nowhere
				cancel()
				<-asked
			}()
		}
		wg.Wait()
	}
	idle := func() {
		end := time.Now().Add(10 * time.Second)
		for a := d.Server.Admission(false); (a.Running != 0 || a.Waiting != 0) && time.Now().Before(end); a = d.Server.Admission(false) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	vanish(3)
	time.Sleep(3 * time.Second)
	idle()
	base := laMeasure(t)
	const reps = 40
	vanish(reps)
	a := d.Server.Admission(false)
	t.Logf("right after %d vanished: %v; admission running %d, waiting %d", reps, laMeasure(t), a.Running, a.Waiting)
	time.Sleep(3 * time.Second) // the idle timeout
	idle()
	laCheck(t, "vanished laptop", reps, base, 8*time.Second)
	if a := d.Server.Admission(false); a.Running != 0 || a.Waiting != 0 {
		t.Errorf("10 s after the idle timeout, admission still counts %d sessions running and %d waiting for laptops that vanished", a.Running, a.Waiting)
	}
	l.run(t)
}

// TestLeakAttackKeptAliveWithoutRequests: 40 laptops' runs hang after
// connecting (a run stuck reading a dying SD card, a process stopped by a
// debugger): QUIC's keep-alives, sent by the client library on its own,
// hold each connection open, but no request ever comes; 20 of them were
// granted a session first. The daemon ends a session that makes no request
// (Limits.SessionIdle, here 1 s), and a connection without a session that
// makes no request (Limits.ConnIdle, here 1 s; by default 15 minutes,
// longer than a laptop waits connected for its slot): each held a
// goroutine, a connection place (max_connections) and a per-key place for
// as long as the laptop's process lived. Within a few seconds every one is
// closed and the daemon holds what it held before.
func TestLeakAttackKeptAliveWithoutRequests(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, func(c *server.Config) { c.Limits.SessionIdle, c.Limits.ConnIdle = time.Second, time.Second })
	l := newLaptop(t, d, "LEAKKA01", 418)
	l.run(t)
	const n = 40
	var keys []ed25519.PrivateKey
	for i := range n {
		k, err := proto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := proto.Register(ctx, d.Addr.String(), k, fmt.Sprintf("LEAKKA%03d", i+2), "kid"); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	base := laMeasure(t)
	var clients []*proto.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i, k := range keys {
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: k, ServerKey: d.Server.PublicKey(), IdleTimeout: 4 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if i%2 == 0 {
			if g, err := c.Hello(ctx, "restore"); err != nil || !g.Granted {
				t.Fatalf("hello: %+v %v", g, err)
			}
		}
	}
	t.Logf("%d connections open: %v", n, laMeasure(t))
	// Each is closed by the server: a raw stream then fails at once.
	open := func() (withSession, without int) {
		for i, c := range clients {
			sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			st, err := c.OpenRawStream(sctx)
			cancel()
			if err != nil {
				continue
			}
			st.CancelWrite(0)
			st.CancelRead(0)
			if i%2 == 0 {
				withSession++
			} else {
				without++
			}
		}
		return
	}
	var ws, wo int
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if ws, wo = open(); ws+wo == 0 {
			break
		}
	}
	active := d.Metrics.Values().ConnsActive
	t.Logf("8 s later, still open: %d of %d with a session, %d of %d that never asked anything; the daemon counts %d connections active", ws, n/2, wo, n/2, active)
	if active > 0 && ws+wo == 0 {
		t.Errorf("the laptops see every connection closed, the daemon counts %d active", active)
	}
	if ws != 0 {
		t.Errorf("%d of %d connections whose session made no request for 8 s (SessionIdle 1 s) are still open", ws, n/2)
	}
	if wo != 0 {
		t.Errorf("%d of %d connections that never made a request are still open after 8 s (ConnIdle 1 s): a connection without a session is never timed out while its keep-alives come", wo, n/2)
	}
	// What the test itself opened stays out of the count: close it, then
	// the daemon must be back at the baseline.
	for _, c := range clients {
		c.Close()
	}
	clients = nil
	laCheck(t, "kept-alive idle connection", n, base, 5*time.Second)
}

// TestConnIdleSparesWhatIsNotIdle: the connection idle limit (here 2 s)
// ends only a connection that is quiet that long without a session. A
// laptop that asks something every 1.2 s (as one waits, connected, for its
// slot and asks again) keeps its connection past the limit, and one in a
// session that is silent for longer than the limit (but within
// SessionIdle, 30 s) keeps it too; a request afterwards is answered.
func TestConnIdleSparesWhatIsNotIdle(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, func(c *server.Config) { c.Limits.ConnIdle = 2 * time.Second })
	l := newLaptop(t, d, "CONNIDLE1", 419)
	l.run(t)
	key, _ := l.st.Key()
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 4 {
		if _, err := c.Snapshots(ctx); err != nil {
			t.Fatalf("a request %v after the last, on a connection asking every 1.2 s: %v", time.Duration(i)*1200*time.Millisecond, err)
		}
		time.Sleep(1200 * time.Millisecond)
	}
	if g, err := c.Hello(ctx, "restore"); err != nil || !g.Granted {
		t.Fatalf("hello: %+v %v", g, err)
	}
	time.Sleep(3 * time.Second)
	if _, err := c.Snapshots(ctx); err != nil {
		t.Fatalf("a request after 3 s of silence in a session: %v", err)
	}
}

// TestSlotWaitLongerThanConnIdle: a laptop told to come back at its slot
// waits, connected, and the server ends the quiet connection meanwhile
// (ConnIdle, here 0.3 s, shorter than the waits between its hellos: a
// laptop's MaxSlotWait may be set longer than the default 15-minute limit,
// and a network may go away). The run connects again after the wait and
// backs up, instead of failing on the ended connection.
func TestSlotWaitLongerThanConnIdle(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(100 * time.Millisecond)
		c.Limits.SessionIdle = 4 * time.Second
		c.Limits.ConnIdle = 300 * time.Millisecond
	})
	honest := newLaptop(t, d, "SLOTWAIT1", 420)
	for i, purpose := range []string{"backup", "restore"} {
		a3nIdleSession(t, d, fmt.Sprintf("SLOTHOG%d", i), purpose, proto.Work{Bytes: 8 << 30, Files: 1})
	}
	if st := d.Server.Admission(false); st.Running < 2 {
		t.Fatalf("the two sessions that hold every place were not granted (%d running)", st.Running)
	}
	start := time.Now()
	res, err := agent.Run(context.Background(), honest.st, agent.RunOptions{Source: honest.src, Force: true, MaxSlotWait: 30 * time.Second})
	t.Logf("honest run after %v: %+v %v", time.Since(start).Round(time.Millisecond), res, err)
	if err != nil || res.Outcome != agent.Done {
		t.Fatalf("a laptop waiting for its slot longer than the connection may be quiet: %+v %v", res, err)
	}
	if time.Since(start) < 2*time.Second {
		t.Fatalf("the run did not wait (%v): the test did not make it wait past ConnIdle", time.Since(start))
	}
}
