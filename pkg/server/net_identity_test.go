package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// a3nDialRaw connects with key and asks nothing yet (no hello).
func a3nDialRaw(t *testing.T, d *server.Daemon, l *laptop) *proto.Client {
	t.Helper()
	key, err := l.st.Key()
	if err != nil {
		t.Fatal(err)
	}
	c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// a3nRefusedNow returns what a fresh connection of l's key gets (nil: it is served).
func a3nRefusedNow(t *testing.T, d *server.Daemon, l *laptop) error {
	t.Helper()
	key, _ := l.st.Key()
	c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err == nil {
		_, err = c.Hello(context.Background(), "info")
		c.Close()
	}
	return err
}

// TestRevokeCutsAnOpenConnection: a stolen laptop keeps one connection
// open (it listed its backups once, then idles on keep-alives); staff
// revoke it. A new connection is
// refused, as TestHostileClients shows; the connection it already had
// should be refused too: no restore session, no listing, no blob.
func TestRevokeCutsAnOpenConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := startDaemon(t, nil)
	victim := newLaptop(t, d, "SHC3R01", 31)
	victim.run(t)
	thief := a3nDialRaw(t, d, victim) // the stolen laptop's connection, idle
	if sns, err := thief.Snapshots(ctx); err != nil || len(sns) != 1 {
		t.Fatalf("list before the revoke: %v %v", sns, err)
	}

	svc := &admin.Service{S: d.Store, Live: true}
	if _, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: "SHC3R01"}); err != nil {
		t.Fatal(err)
	}
	if err := a3nRefusedNow(t, d, victim); !errors.Is(err, proto.ErrRevoked) {
		t.Fatalf("a new connection after the revoke: %v (want revoked)", err)
	}

	var leaked []string
	if g, err := thief.Hello(ctx, "restore"); err == nil && g.Granted {
		leaked = append(leaked, "a restore session was granted")
	}
	sns, err := thief.Snapshots(ctx)
	if err == nil && len(sns) > 0 {
		leaked = append(leaked, "the snapshot list was served")
		got := 0
		err = thief.Fetch(ctx, []blob.Ref{{Type: blob.Tree, ID: sns[len(sns)-1].Root}}, func(blob.Blob) error { got++; return nil })
		if err == nil && got == 1 {
			leaked = append(leaked, "the root tree was served")
		}
	}
	if len(leaked) > 0 {
		t.Errorf("after the revoke, the revoked laptop's open connection still works: %v", leaked)
	}
}

// TestClaimedHistoryRefusesTheOldKeysConnection: a laptop is replaced by
// claim code (xs-admin claim-code, the new laptop registers with it); the
// old key is retired and a new connection of it is refused. A connection the
// old laptop held open across the claim must not be able to commit into the
// history the new laptop now owns.
func TestClaimedHistoryRefusesTheOldKeysConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := startDaemon(t, nil)
	old := newLaptop(t, d, "SHC3C01", 32)
	old.run(t)
	held := a3nDialRaw(t, d, old) // opened before the claim
	if _, err := held.Snapshots(ctx); err != nil {
		t.Fatal(err)
	}

	svc := &admin.Service{S: d.Store, Live: true}
	cr, err := svc.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: "SHC3C01"})
	if err != nil {
		t.Fatal(err)
	}
	fresh := agent.State{Dir: t.TempDir()}
	reg, err := agent.Register(ctx, fresh, agent.RegisterOptions{Server: d.Addr.String(), Serial: "SHC3C01", Claim: cr.Code})
	if err != nil || !reg.Continued {
		t.Fatalf("claim: %+v %v", reg, err)
	}
	if err := a3nRefusedNow(t, d, old); !errors.Is(err, proto.ErrRevoked) {
		t.Fatalf("a new connection of the old key after the claim: %v (want revoked)", err)
	}
	u := userBySerial(t, d, "SHC3C01")
	before := len(d.Store.Snapshots(u.ID))

	// The old laptop's open connection: a backup session, an empty tree, a commit.
	g, err := held.Hello(ctx, "backup")
	if err == nil && g.Granted {
		enc, _ := manifest.Encode(&manifest.Tree{})
		root := chunk.Sum(enc)
		err = held.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)}})
		if err == nil {
			_, err = held.Commit(ctx, root)
		}
	}
	after := len(d.Store.Snapshots(u.ID))
	if err == nil || after != before {
		t.Errorf("the retired key's open connection committed into the claimed history (%d -> %d snapshots, err %v): the new laptop's latest backup is now the old laptop's empty tree", before, after, err)
	}
}

// TestSerialShapedLikeAUserID: staff may name a laptop by its user ID
// (README: "Every command that takes a serial also takes a former serial or
// a user's ID", as xs-admin users --json shows it). A device registers
// itself with a serial that is another laptop's user ID, 16 hex digits
// (IDs are handed out in order, so easy to guess; no XO has such a serial).
// Staff then revoke the stolen laptop by its ID: the stolen laptop must be
// the one revoked.
func TestSerialShapedLikeAUserID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := startDaemon(t, nil)
	stolen := newLaptop(t, d, "SHC3I01", 33)
	stolen.run(t)
	id := userBySerial(t, d, "SHC3I01").ID.String()
	decoy := agent.State{Dir: t.TempDir()}
	if _, err := agent.Register(ctx, decoy, agent.RegisterOptions{Server: d.Addr.String(), Serial: id}); err != nil {
		t.Logf("registering serial %s: %v", id, err)
	}
	svc := &admin.Service{S: d.Store, Live: true}
	got, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("xs-admin revoke %s revoked user %s (serial %s)", id, got.ID, got.Serial)
	if err := a3nRefusedNow(t, d, stolen); !errors.Is(err, proto.ErrRevoked) {
		t.Errorf("staff revoked user %s by its ID; the serial %s another device registered took the command (it revoked %s), and the stolen laptop still connects: %v", id, id, got.Serial, err)
	}
}

// TestClaimCodeRacedAndVariants: staff issue a claim code for a laptop
// with backups. First, devices try the code with variants of the serial
// (case, spaces, a dot, a line break): none takes the history and none uses
// the code up. Then four devices give the right code at the same moment:
// exactly one continues the history, the others get nothing, not even a
// pending key change, and only the winner's key is served.
func TestClaimCodeRacedAndVariants(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := startDaemon(t, nil)
	owner := newLaptop(t, d, "SHC3K01", 34)
	owner.run(t)
	svc := &admin.Service{S: d.Store, Live: true}
	cr, err := svc.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: "SHC3K01"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"shc3k01", "SHC3K01 ", " SHC3K01", "SHC3K01\n", "SHC3K01.", "SHC3K01\x00", "ＳHC3K01"} {
		res, err := proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: v, Claim: cr.Code})
		if err == nil && (res.Continued || res.Snapshots > 0) {
			t.Errorf("serial %q with the claim code of SHC3K01 took its history: %+v", v, res)
		}
	}
	// Every variant registered without a code is its own, empty laptop.
	for _, v := range []string{"shc3k01", "SHC3K01.", "shc3K01"} {
		k := freshKey()
		res, err := proto.RegisterWith(ctx, d.Addr.String(), k, proto.RegisterRequest{Serial: v})
		if err != nil {
			t.Errorf("register %q: %v", v, err)
			continue
		}
		if res.KeyChange || res.Continued || res.Serial != v {
			t.Errorf("register %q: %+v", v, res)
		}
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: k, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		sns, err := c.Snapshots(ctx)
		c.Close()
		if err != nil || len(sns) != 0 {
			t.Errorf("laptop %q lists %d snapshots (%v)", v, len(sns), err)
		}
	}

	type try struct {
		key ed25519.PrivateKey
		res proto.RegisterResult
		err error
	}
	tries := make([]try, 4)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range tries {
		tries[i].key = freshKey()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			tries[i].res, tries[i].err = proto.RegisterWith(ctx, d.Addr.String(), tries[i].key, proto.RegisterRequest{Serial: "SHC3K01", Claim: strings.ToUpper(cr.Code)})
		}()
	}
	close(gate)
	wg.Wait()
	winners := 0
	var winner ed25519.PrivateKey
	for i, tr := range tries {
		t.Logf("device %d: %+v %v", i, tr.res, tr.err)
		if tr.err == nil && tr.res.Continued {
			winners++
			winner = tr.key
		} else if tr.err == nil {
			t.Errorf("device %d with a used code was registered: %+v", i, tr.res)
		}
	}
	if winners != 1 {
		t.Fatalf("%d devices continued the history with one claim code", winners)
	}
	u := userBySerial(t, d, "SHC3K01")
	if !bytes.Equal(u.PublicKey, winner.Public().(ed25519.PublicKey)) || u.PendingKey != nil || u.ClaimHash != "" {
		t.Errorf("after the race: key %x, pending %x, claim left %q", u.PublicKey, u.PendingKey, u.ClaimHash)
	}
	for i, tr := range tries {
		if bytes.Equal(tr.key, winner) {
			continue
		}
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: tr.key, ServerKey: d.Server.PublicKey()})
		if err == nil {
			_, err = c.Snapshots(ctx)
			c.Close()
		}
		if !errors.Is(err, proto.ErrNotRegistered) {
			t.Errorf("losing device %d: %v (want not registered)", i, err)
		}
	}
}

// TestRevokeVoidsAnOutstandingClaimCode: staff issue a claim code before
// a class reflash (valid a week; printed, handed out). One laptop is then
// stolen and staff revoke it. Whoever has that laptop's code must not take
// the revoked history with it, nor undo the revoke: a revoke is undone by
// staff (unrevoke, approve), and a claim code issued before it should be
// void.
func TestRevokeVoidsAnOutstandingClaimCode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := startDaemon(t, nil)
	victim := newLaptop(t, d, "SHC3V01", 35)
	victim.run(t)
	svc := &admin.Service{S: d.Store, Live: true}
	cr, err := svc.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: "SHC3V01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: "SHC3V01"}); err != nil {
		t.Fatal(err)
	}
	thief := agent.State{Dir: t.TempDir()}
	reg, err := agent.Register(ctx, thief, agent.RegisterOptions{Server: d.Addr.String(), Serial: "SHC3V01", Claim: cr.Code})
	t.Logf("the thief registers with the code after the revoke: %+v %v", reg, err)
	u := userBySerial(t, d, "SHC3V01")
	if err == nil && reg.Continued {
		tk, _ := thief.Key()
		c, derr := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: tk, ServerKey: d.Server.PublicKey()})
		n := 0
		if derr == nil {
			sns, _ := c.Snapshots(ctx)
			n = len(sns)
			c.Close()
		}
		t.Errorf("a claim code issued before the revoke still works after it: the account is active again (revoked=%v) and the new device lists its %d backup(s)", u.Revoked, n)
	}
}

// TestRevokedKeyGetsNoNewAccount: a device whose laptop staff revoked
// registers the same key under a new serial (open registration): it is
// refused, and no account is made.
func TestRevokedKeyGetsNoNewAccount(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHCREV01", 5)
	l.run(t)
	if _, err := (&admin.Service{S: d.Store}).Revoke(ctx, admin.RevokeRequest{Serial: "SHCREV01"}); err != nil {
		t.Fatal(err)
	}
	before := len(d.Store.Users())
	_, err := agent.Register(ctx, l.st, agent.RegisterOptions{Server: d.Addr.String(), Serial: "SHCREV99"})
	if proto.KindOf(err) != proto.KindRevoked {
		t.Fatalf("a revoked key registering a new serial: %v", err)
	}
	if n := len(d.Store.Users()); n != before {
		t.Fatalf("%d accounts after the refused registration, %d before", n, before)
	}
}

// TestWrongClaimCodeSaysSo: a wrong claim code is refused in words about
// the code, not the store's words for a chunk not uploaded.
func TestWrongClaimCodeSaysSo(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHCCODE1", 6)
	l.run(t)
	u, err := d.Store.UserBySerial("SHCCODE1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Store.IssueClaim(ctx, u.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err = agent.Register(ctx, agent.State{Dir: t.TempDir()}, agent.RegisterOptions{Server: d.Addr.String(), Serial: "SHCCODE1", Claim: "wrong-code"})
	if err == nil || !strings.Contains(err.Error(), "claim code") || strings.Contains(err.Error(), "uploaded") {
		t.Fatalf("a wrong claim code: %v", err)
	}
}
