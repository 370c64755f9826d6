package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// a3nIdleSession registers a fresh key as serial and opens a session with
// it that then does nothing (the client's keep-alives hold the connection).
func a3nIdleSession(t *testing.T, d *server.Daemon, serial, purpose string, work proto.Work) *proto.Client {
	t.Helper()
	ctx := context.Background()
	key := freshKey()
	res, err := proto.Register(ctx, d.Addr.String(), key, serial, "")
	if err != nil || !res.Approved {
		t.Fatalf("register %s: %+v %v", serial, res, err)
	}
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey(), IdleTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Expect = work
	c.HoldFor = 500 * time.Millisecond
	g, err := c.Hello(ctx, purpose)
	if err != nil {
		t.Fatalf("hello %s: %v", serial, err)
	}
	if !g.Granted {
		return nil
	}
	return c
}

// TestIdleSessionsHoardEveryPlace: one device registers eight keys (open
// registration approves a hundred an hour) and, with each, asks for a
// session it never uses: four restores (the small lane) and four "big first
// backups" (the bulk lane), each connection kept alive by QUIC keep-alives
// and otherwise silent. The connections' idle timeout is 4 s, so a session
// that sends nothing for twice that is not a laptop at work. An honest laptop should still
// back up within a few seconds; the places should not stay held for the
// whole session deadline (an hour by default).
func TestIdleSessionsHoardEveryPlace(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.Hold = server.Duration(2 * time.Second)
		c.Limits.SessionIdle = 3 * time.Second // 30 s by default
	})
	honest := newLaptop(t, d, "HONEST3A", 41)
	held := 0
	for i := 0; i < 4; i++ {
		if a3nIdleSession(t, d, fmt.Sprintf("HOARDS%d", i), "restore", proto.Work{}) != nil {
			held++
		}
		if a3nIdleSession(t, d, fmt.Sprintf("HOARDB%d", i), "backup", proto.Work{Bytes: 8 << 30, Files: 1}) != nil {
			held++
		}
	}
	st := d.Server.Admission(false)
	t.Logf("%d idle sessions granted; admission: running %d (small %d), limit %d (small %d)", held, st.Running, st.RunningSmall, st.Limit, st.LimitSmall)
	if held < 2 {
		t.Fatalf("only %d idle sessions were granted; the attack did not run", held)
	}
	time.Sleep(9 * time.Second) // over two idle timeouts of silence
	start := time.Now()
	res, err := agent.Run(context.Background(), honest.st, agent.RunOptions{Source: honest.src, Force: true, MaxSlotWait: 5 * time.Second})
	st = d.Server.Admission(false)
	t.Logf("honest run after %v: %+v %v; admission: running %d, limit %d (small %d), waiting %d",
		time.Since(start).Round(time.Millisecond), res, err, st.Running, st.Limit, st.LimitSmall, st.Waiting)
	if err != nil || res.Outcome != agent.Done {
		t.Errorf("eight silent sessions from one device keep an honest laptop out: outcome %v (%v); they hold their places until the session deadline", res, err)
	}
}

// a3nTwoHellos sends two backup hellos at once on two streams of one new
// connection of key, reads both answers and hangs up.
func a3nTwoHellos(t *testing.T, d *server.Daemon, key ed25519.PrivateKey) (granted int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello := frame(1, []byte(`{"version":1,"purpose":"backup","hold_ms":200}`))
	var sts []*quic.Stream
	for i := 0; i < 2; i++ {
		st, err := c.OpenRawStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, st)
	}
	for _, st := range sts {
		st.Write(hello)
		st.Close()
	}
	for _, st := range sts {
		st.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(st, 1<<16))
		if len(b) > 5 && b[4] == 2 && bytes.Contains(b, []byte(`"granted":true`)) {
			granted++
		}
	}
	return granted
}

// TestTwoHellosOnOneConnectionLeakAPlace: a laptop sends two backup
// hellos at the same moment on one connection, then hangs up. When the
// connection ends its place must be free again, as it is after one hello
// (TestAbandonedHelloFreesCapacity). Two keys do this against a server
// allowing two sessions; once every connection has ended, an honest laptop
// should back up at once.
func TestTwoHellosOnOneConnectionLeakAPlace(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.Admission.MaxSessions = 2; c.Admission.Hold = server.Duration(time.Second) })
	honest := newLaptop(t, d, "HONEST3H", 43)
	leaked := 0
	for k := 0; k < 2; k++ {
		key := freshKey()
		if res, err := proto.Register(context.Background(), d.Addr.String(), key, fmt.Sprintf("EVIL3H%d", k), ""); err != nil || !res.Approved {
			t.Fatalf("register: %+v %v", res, err)
		}
		for tries := 1; tries <= 60; tries++ {
			a3nTwoHellos(t, d, key)
			time.Sleep(50 * time.Millisecond) // the server sees the connection end
			if st := d.Server.Admission(false); st.Running > leaked {
				leaked = st.Running
				t.Logf("key %d: after %d tries with no connection open, admission counts %d session(s) running", k, tries, st.Running)
				break
			}
		}
	}
	time.Sleep(time.Second)
	st := d.Server.Admission(false)
	if st.Running != 0 {
		t.Errorf("a second after every connection of the two keys ended, admission still counts %d session(s) running: the places leaked", st.Running)
	}
	res, err := agent.Run(context.Background(), honest.st, agent.RunOptions{Source: honest.src, Force: true, MaxSlotWait: 3 * time.Second})
	if err != nil {
		t.Errorf("an honest laptop, with no other laptop connected: %v", err)
	} else if res.Outcome != agent.Done {
		t.Errorf("an honest laptop, with no other laptop connected: %s (%s)", res.Outcome, res.Reason)
	}
}
