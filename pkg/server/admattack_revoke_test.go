package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestAdmAttackRevokedWhileWaitingTakesThePlace: a stolen laptop's hello
// waits, held open, for a place on a full server; an honest laptop waits
// behind it. Staff revoke the stolen laptop. When a place frees it should
// go to the honest laptop, and the revoked one be refused; the server
// judges the held hello on the account as it was when it was sent, grants
// the revoked laptop a session, and the honest laptop keeps waiting while
// the revoked one holds the place (an idle session keeps it until
// SessionIdle, 30 s by default).
func TestAdmAttackRevokedWhileWaitingTakesThePlace(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(20 * time.Second)
	})
	ctx := context.Background()
	small := proto.Work{Bytes: 1 << 10, Files: 1}
	var blockers []*proto.Client
	for _, s := range []string{"AARVBLK1", "AARVBLK2"} {
		c := aaDial(t, d, aaKey(t, d, s), 4, small)
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("blocker %s: %+v %v", s, g, err)
		}
		blockers = append(blockers, c)
	}
	thief := aaDial(t, d, aaKey(t, d, "AARVTHIEF"), 4, small)
	honest := aaDial(t, d, aaKey(t, d, "AARVHONEST"), 4, small)
	thief.HoldFor, honest.HoldFor = 15*time.Second, 15*time.Second
	type answer struct {
		who string
		g   *proto.Grant
		err error
	}
	answers := make(chan answer, 2)
	ask := func(who string, c *proto.Client) {
		g, err := c.Hello(ctx, "backup")
		answers <- answer{who, g, err}
	}
	go ask("thief", thief)
	if !aaWaitFor(5*time.Second, func() bool { return d.Server.Admission(false).Held == 1 }) {
		t.Fatal("the thief's hello is not held")
	}
	time.Sleep(50 * time.Millisecond)
	go ask("honest", honest)
	if !aaWaitFor(5*time.Second, func() bool { return d.Server.Admission(false).Held == 2 }) {
		t.Fatal("the honest hello is not held")
	}
	svc := &admin.Service{S: d.Store, Live: true}
	if _, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: "AARVTHIEF"}); err != nil {
		t.Fatal(err)
	}
	blockers[0].Bye(ctx) // one place frees
	var first answer
	select {
	case first = <-answers:
	case <-time.After(10 * time.Second):
		t.Fatal("nobody answered when a place freed")
	}
	st := d.Server.Admission(false)
	t.Logf("first answer: %s granted=%v err=%v; admission running %d, held %d", first.who, first.g != nil && first.g.Granted, first.err, st.Running, st.Held)
	if first.who == "thief" && first.err == nil && first.g.Granted {
		// The revoked laptop holds the place; does the honest one get it
		// within a few seconds anyway?
		select {
		case a := <-answers:
			t.Logf("then %s: granted=%v err=%v", a.who, a.g != nil && a.g.Granted, a.err)
			if a.err == nil && a.g.Granted {
				t.Logf("the honest laptop started after all")
			}
		case <-time.After(3 * time.Second):
		}
		t.Errorf("a laptop revoked while its hello waited was granted a session (and a place the honest laptop behind it waits for)")
	}
	blockers[1].Bye(ctx)
}

// TestAdmAttackPendingAndUnregisteredTakeNoPlace: keys waiting for staff
// approval and an unregistered key ask for sessions: each is refused at
// the connection, and none appears in admission's queue or takes a place.
func TestAdmAttackPendingAndUnregisteredTakeNoPlace(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Registration = "approve"
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(time.Second)
	})
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		key := freshKey()
		res, err := proto.Register(ctx, d.Addr.String(), key, fmt.Sprintf("AAPEND%d", i), "")
		if err != nil || res.Approved {
			t.Fatalf("register: %+v %v", res, err)
		}
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err == nil {
			c.HoldFor = 300 * time.Millisecond
			_, err = c.Hello(ctx, "backup")
			c.Close()
		}
		if !errors.Is(err, proto.ErrNotApproved) {
			t.Errorf("pending key %d: hello answered %v (want not approved)", i, err)
		}
	}
	// An unregistered key.
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: freshKey(), ServerKey: d.Server.PublicKey()})
	if err == nil {
		_, err = c.Hello(ctx, "restore")
		c.Close()
	}
	if !errors.Is(err, proto.ErrNotRegistered) {
		t.Errorf("unregistered key: %v", err)
	}
	if st := d.Server.Admission(false); st.Running != 0 || st.Waiting != 0 || st.Held != 0 {
		t.Errorf("admission after refused keys: running %d, waiting %d, held %d", st.Running, st.Waiting, st.Held)
	}
}

// TestAdmAttackOneKeyOneQueuePlace: one laptop on a full server asks from
// every connection its key may open (4), each told to come back: it holds
// one place in the queue, not four, and a fifth connection is refused.
func TestAdmAttackOneKeyOneQueuePlace(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(time.Second)
	})
	ctx := context.Background()
	small := proto.Work{Bytes: 1 << 10, Files: 1}
	for _, s := range []string{"AAQBLK1", "AAQBLK2"} {
		c := aaDial(t, d, aaKey(t, d, s), 4, small)
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("blocker %s: %+v %v", s, g, err)
		}
	}
	ekey := aaKey(t, d, "AAQHOARD")
	for i := 0; i < 4; i++ {
		c := aaDial(t, d, ekey, 4, small)
		c.HoldFor = 200 * time.Millisecond
		if g, err := c.Hello(ctx, "backup"); err != nil || g.Granted {
			t.Fatalf("hoarder's hello %d on a full server: %+v %v", i, g, err)
		}
	}
	if c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: ekey, ServerKey: d.Server.PublicKey()}); err == nil {
		_, err = c.Hello(ctx, "backup")
		c.Close()
		if err == nil {
			t.Errorf("a fifth connection of one key was served")
		}
	}
	st := d.Server.Admission(true)
	if st.Waiting != 1 {
		t.Errorf("one laptop's four hellos hold %d places in the queue", st.Waiting)
	}
	if st.Running != 2 {
		t.Errorf("running %d, want the two blockers", st.Running)
	}
}
