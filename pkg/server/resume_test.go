package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// dialResumed connects as the laptop does for a run (agent.Dial) and says
// whether the connection resumed the last TLS session; the server must
// grant it a backup session.
func dialResumed(t *testing.T, st agent.State) bool {
	t.Helper()
	c, _, err := agent.Dial(t.Context(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g, err := c.Hello(t.Context(), "backup"); err != nil || !g.Granted {
		t.Fatalf("hello: %+v %v", g, err)
	}
	return c.Resumed()
}

// TestRunsResumeTheTLSSession: a laptop's second connection resumes the
// TLS session of its first (no certificates, no signatures), and every way
// the stored ticket can go wrong ends in a full handshake, never in a
// refused or failed run, nor in a connection that is someone else.
func TestRunsResumeTheTLSSession(t *testing.T) {
	ctx := context.Background()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve, cfg.RestorePage.Listen = "127.0.0.1:0", t.TempDir(), "", 0, ""
	d, stop := runDaemon(t, cfg)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	l := newLaptop(t, d, "RESUME1", 1)
	l.run(t)
	ticket := filepath.Join(l.st.Dir, "tls-session")
	if _, err := os.Stat(ticket); err != nil {
		t.Fatalf("no session kept after a run: %v", err)
	}
	if !dialResumed(t, l.st) {
		t.Fatal("the connection after a run did not resume its session")
	}
	l.run(t)
	l.restoreAndCompare(t, "latest")
	good, err := os.ReadFile(ticket)
	if err != nil {
		t.Fatal(err)
	}

	// Damage: every flipped byte, cut and bad size makes a full handshake,
	// after which the next connection resumes again.
	damaged := map[string][]byte{"empty": nil, "huge": bytes.Repeat([]byte{7}, 1<<20)}
	for at := 0; at < len(good); at += 23 {
		b := bytes.Clone(good)
		b[at] ^= 0x20
		damaged[fmt.Sprintf("byte %d flipped", at)] = b
	}
	for _, n := range []int{1, 17, 49, len(good) / 2, len(good) - 1} {
		damaged[fmt.Sprintf("cut to %d bytes", n)] = good[:n]
	}
	for name, b := range damaged {
		if err := os.WriteFile(ticket, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if dialResumed(t, l.st) {
			t.Errorf("%s: a damaged session file was resumed", name)
		}
		if !dialResumed(t, l.st) {
			t.Errorf("%s: no session resumed after the full handshake that replaced the damaged one", name)
		}
	}

	// Another laptop's ticket (copied into this one's state) is never
	// offered: this laptop stays itself.
	other := newLaptop(t, d, "RESUME2", 2)
	other.run(t)
	otherTicket, err := os.ReadFile(filepath.Join(other.st.Dir, "tls-session"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ticket, otherTicket, 0o600); err != nil {
		t.Fatal(err)
	}
	if dialResumed(t, l.st) {
		t.Error("another laptop's session was resumed")
	}
	before := len(d.Store.Snapshots(userBySerial(t, d, "RESUME2").ID))
	l.run(t)
	if n := len(d.Store.Snapshots(userBySerial(t, d, "RESUME2").ID)); n != before {
		t.Errorf("a run with RESUME2's ticket gave RESUME2 a snapshot (%d, had %d)", n, before)
	}

	// A ticket whose state is intact but which the server cannot open (the
	// same laptop, the same server key, another daemon's ticket keys: a
	// restart) gives a full handshake, and resumes after it.
	if err := os.WriteFile(ticket, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	cfg.Listen = d.Addr.String()
	d2, stop2 := runDaemon(t, cfg)
	defer func() {
		if err := stop2(); err != nil {
			t.Error(err)
		}
	}()
	if dialResumed(t, l.st) {
		t.Error("a session of the daemon before the restart was resumed")
	}
	if !dialResumed(t, l.st) {
		t.Error("no session resumed after the restart's full handshake")
	}
	l.run(t)
	l.restoreAndCompare(t, "latest")

	// A revoked laptop holding a good ticket is refused all the same: the
	// server checks the key the ticket carries on every connection.
	u := userBySerial(t, d2, "RESUME1")
	d2.Store.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Revoked = true; return nil })
	c, _, err := agent.Dial(ctx, l.st, 0)
	if err == nil {
		if !c.Resumed() {
			t.Error("the revoked laptop's connection did not resume: the test does not test the ticket")
		}
		_, err = c.Hello(ctx, "backup")
		c.Close()
	}
	if !errors.Is(err, proto.ErrRevoked) {
		t.Errorf("a revoked laptop with a ticket: %v, want %v", err, proto.ErrRevoked)
	}
}

// TestResumedHandshakeNeedsNoKey: through the library (proto.Dial with a
// session cache and LoadKey), the key is derived for the full handshake
// and not for the resumed one, and a client without a cache never resumes.
func TestResumedHandshakeNeedsNoKey(t *testing.T) {
	ctx := t.Context()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "LAZYKEY1", 1)
	key, err := l.st.Key()
	if err != nil {
		t.Fatal(err)
	}
	loads := 0
	cfg := proto.ClientConfig{Addr: d.Addr.String(), ServerKey: d.Server.PublicKey(),
		LoadKey:  func() (ed25519.PrivateKey, error) { loads++; return key, nil },
		Sessions: tls.NewLRUClientSessionCache(1)}
	for i, want := range []struct {
		resumed bool
		loads   int
	}{{false, 1}, {true, 1}, {true, 1}} {
		c, err := proto.Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("connection %d: hello %+v %v", i, g, err)
		}
		if c.Resumed() != want.resumed || loads != want.loads {
			t.Errorf("connection %d: resumed %v with the key derived %d times, want %v and %d", i, c.Resumed(), loads, want.resumed, want.loads)
		}
		c.Close()
	}
	plain := proto.ClientConfig{Addr: d.Addr.String(), ServerKey: d.Server.PublicKey(), Key: key}
	for i := range 2 {
		c, err := proto.Dial(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Hello(ctx, "backup"); err != nil {
			t.Fatal(err)
		}
		if c.Resumed() {
			t.Errorf("connection %d without a session cache resumed", i)
		}
		c.Close()
	}
	if _, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), ServerKey: d.Server.PublicKey()}); err == nil {
		t.Error("a client without a key connected")
	}
}

// TestReflashedLaptopDoesNotResumeTheOldKey: a laptop whose key is new (a
// reflash keeps no state, but a state directory restored from elsewhere
// could keep the old ticket) never offers the old key's session: the
// server sees the new key, which waits for staff.
func TestReflashedLaptopDoesNotResumeTheOldKey(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "REFLASH1", 1)
	l.run(t)
	ticket := filepath.Join(l.st.Dir, "tls-session")
	kept, err := os.ReadFile(ticket)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"key", "server.json", "tls-session"} {
		os.Remove(filepath.Join(l.st.Dir, f))
	}
	reg, err := agent.Register(t.Context(), l.st, agent.RegisterOptions{Server: d.Addr.String(), Serial: "REFLASH1"})
	if err != nil {
		t.Fatal(err)
	}
	if !reg.KeyChange {
		t.Fatalf("a new key for a known serial: %+v", reg)
	}
	if err := os.WriteFile(ticket, kept, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := agent.Dial(t.Context(), l.st, 0)
	if err == nil {
		if c.Resumed() {
			t.Error("the new key's connection resumed the old key's session")
		}
		_, err = c.Hello(t.Context(), "backup")
		c.Close()
	}
	if !errors.Is(err, proto.ErrNotApproved) {
		t.Errorf("the new key before staff approve it: %v, want %v", err, proto.ErrNotApproved)
	}
}
