package server_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestSiteAttackRegistryAfterClockSetBack: the school synced its registry
// in January 2026; then its clock reset to 2000 and a new laptop registered
// and backed up; the next sync sent the new registry (dated 2000 by the
// school's clock) and the new laptop's backup. A school rebuilt from the
// mothership must have the newest registry: the new laptop carries on
// without registering again (and the rebuild must not fail).
func TestSiteAttackRegistryAfterClockSetBack(t *testing.T) {
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	l1 := newLaptop(t, s.d, "SHCREG01", 71)
	saBackups(t, s, l1, 1, 100)
	s.approve(t)
	if rep := s.syncAt(t); !rep.Registry {
		t.Fatalf("first sync sent no registry: %+v", rep)
	}
	clk.set(saReset)
	l2 := newLaptop(t, s.d, "SHCREG02", 72)
	saBackups(t, s, l2, 1, 200)
	if rep := s.syncAt(t); !rep.Registry || rep.Snapshots != 1 {
		t.Fatalf("second sync: %+v (want the new laptop's backup and a new registry)", rep)
	}
	d, rec, err := s.rebuild(t, newSAClock(time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatalf("a school whose newest registry copy was made while its clock read 2000 cannot be rebuilt: %v", err)
	}
	if rec.Users != 2 {
		t.Errorf("rebuilt with %d laptop(s), want 2 (the mothership used an older copy of the registry)", rec.Users)
	}
	if _, err := d.Store.UserBySerial("SHCREG02"); err != nil {
		t.Fatalf("the laptop registered after the clock reset is unknown to the rebuilt server: %v", err)
	}
	l2.restoreAndCompare(t, "latest")
}

// TestSiteAttackRecoverKeepsRevokedLaptop: a laptop with backups was
// revoked at the school (stolen; "revoke keeps the snapshots reachable").
// Its backups replicate to the mothership. The server dies: the rebuild must
// still work, with the revoked laptop revoked and its history kept, and the
// other laptops carry on.
func TestSiteAttackRecoverKeepsRevokedLaptop(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	good := newLaptop(t, s.d, "SHCREV01", 73)
	stolen := newLaptop(t, s.d, "SHCREV02", 74)
	saBackups(t, s, good, 1, 100)
	saBackups(t, s, stolen, 2, 200)
	if _, err := (&admin.Service{S: s.d.Store}).Revoke(ctx, admin.RevokeRequest{Serial: "SHCREV02"}); err != nil {
		t.Fatal(err)
	}
	s.approve(t)
	s.sync(t)
	d, rec, err := s.rebuild(t, newSAClock(time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatalf("a school with a revoked laptop cannot be rebuilt from its mothership: %v", err)
	}
	if rec.Snapshots != 3 {
		t.Errorf("rebuilt %d snapshots, want 3", rec.Snapshots)
	}
	u, err := d.Store.UserBySerial("SHCREV02")
	if err != nil || !u.Revoked || len(d.Store.Snapshots(u.ID)) != 2 {
		t.Fatalf("the revoked laptop after the rebuild: %+v %v", u, err)
	}
	good.restoreAndCompare(t, "latest")
}

// TestSiteAttackRebuiltSchoolRetentionKeepLast: after a rebuild, the
// school's own retention (keep_last 2) keeps a laptop's two newest
// backups, as before the rebuild: the recovered history is the laptop's
// history, not a second one with its own "latest" and its own keep_last.
func TestSiteAttackRebuiltSchoolRetentionKeepLast(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, func(c *server.Config) { c.Retention = store.Policy{KeepLast: 2} })
	l := newLaptop(t, s.d, "SHCKEEP1", 75)
	saBackups(t, s, l, 3, 100)
	s.approve(t)
	s.sync(t)
	clk2 := newSAClock(saJan2026.AddDate(0, 0, 10))
	d, _, err := s.rebuild(t, clk2)
	if err != nil {
		t.Fatal(err)
	}
	// Three more nights on the rebuilt server.
	s2 := &saSchool{d: d, clk: clk2}
	newer := saBackups(t, s2, l, 3, 300)
	u, _ := d.Store.UserBySerial("SHCKEEP1")
	if _, err := d.Store.Retention(ctx, store.RetentionOptions{User: u.ID}); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, sn := range d.Store.Snapshots(u.ID) {
		left = append(left, string(sn.ID))
	}
	want := []string{string(newer[1]), string(newer[2])}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("keep_last 2 on the rebuilt server left %v, want the two newest %v", left, want)
	}
}

// TestSiteAttackRecoverAgainWrongSchoolInterrupted (expected to pass):
// `xs-admin recover` with another school's name is refused and writes
// nothing; one interrupted half way leaves the directory empty and the next
// try works; run again over the rebuilt server it is refused and leaves the
// rebuilt server as it was.
func TestSiteAttackRecoverAgainWrongSchoolInterrupted(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	for i := 0; i < 3; i++ {
		saBackups(t, s, newLaptop(t, s.d, fmt.Sprintf("SHCAGN%02d", i), uint64(90+i)), 2, uint64(100*i))
	}
	s.approve(t)
	s.sync(t)
	msKey := loadKey(t, ms.Config.Data)
	rdir := t.TempDir()
	if _, err := offsite.ExportRecovery(ctx, ms.Store, userBySerial(t, ms, "school-a"), msKey, rdir, 0); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	opts := offsite.RecoverOptions{DataDir: data, Paths: []string{rdir}, Mothership: msKey.Public().(ed25519.PublicKey),
		School: "school-b", Passphrase: s.kit.Passphrase, Store: store.Options{Reserve: -1}}
	if _, err := offsite.Recover(ctx, opts); err == nil || !strings.Contains(err.Error(), "school-a") {
		t.Fatalf("recover with the wrong school's name: %v", err)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 0 {
		t.Fatalf("a refused recovery left %d entries", len(ents))
	}
	opts.School = "school-a"

	// Interrupted as soon as the store appears.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		for cctx.Err() == nil {
			if ents, _ := os.ReadDir(data); len(ents) > 0 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := offsite.Recover(cctx, opts)
	cancel()
	t.Logf("interrupted recovery: %v", err)
	if err != nil {
		if ents, _ := os.ReadDir(data); len(ents) != 0 {
			t.Fatalf("an interrupted recovery left %d entries: the next try is refused", len(ents))
		}
		if _, err := offsite.Recover(ctx, opts); err != nil {
			t.Fatalf("recover after an interrupted one: %v", err)
		}
	}
	// Again, over the rebuilt server: refused, nothing touched.
	before, _ := os.ReadDir(data)
	if _, err := offsite.Recover(ctx, opts); !errors.Is(err, errkind.ErrExists) {
		t.Fatalf("a second recover into the rebuilt server: %v", err)
	}
	after, _ := os.ReadDir(data)
	if len(before) == 0 || len(after) != len(before) {
		t.Fatalf("a refused second recovery changed the data directory: %d entries before, %d after", len(before), len(after))
	}
	st, err := store.Open(ctx, data, store.Options{Reserve: -1, Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	for _, u := range st.Users() {
		n += len(st.Snapshots(u.ID))
	}
	if n != 6 {
		t.Fatalf("rebuilt server holds %d snapshots, want 6", n)
	}
}

// A student moved to a new laptop that had registered on its own, with
// `xs-admin alias OLD NEW`: the merged record stays, revoked, under the
// same serial as the active one. The rebuild imported users and then made
// the revoked ones able to take their backups, which gave two active
// users one serial: the whole rebuild failed. Users are imported as they
// were; the rebuilding store takes every backup whatever the registration
// says.
func TestRebuildAfterAliasOntoSelfRegisteredLaptop(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	old := newLaptop(t, s.d, "SHCALIAS1", 81)
	saBackups(t, s, old, 2, 100)
	fresh := newLaptop(t, s.d, "SHCALIAS2", 82)
	if _, err := (&admin.Service{S: s.d.Store}).Alias(ctx, admin.AliasRequest{Serial: "SHCALIAS1", NewSerial: "SHCALIAS2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := (&admin.Service{S: s.d.Store}).Approve(ctx, admin.ApproveRequest{Serial: "SHCALIAS2"}); err != nil {
		t.Fatal(err)
	}
	saBackups(t, s, fresh, 1, 200)
	s.approve(t)
	s.sync(t)
	d, rec, err := s.rebuild(t, newSAClock(time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatalf("a school that used alias cannot be rebuilt from its mothership: %v", err)
	}
	if rec.Snapshots != 3 {
		t.Errorf("rebuilt %d snapshots, want 3", rec.Snapshots)
	}
	before, after := s.d.Store.Users(), map[store.UserID]*store.User{}
	for _, u := range d.Store.Users() {
		after[u.ID] = u
	}
	if len(before) != len(after) {
		t.Fatalf("%d users before the rebuild, %d after", len(before), len(after))
	}
	for _, b := range before {
		if a := after[b.ID]; a == nil || b.Serial != a.Serial || b.Revoked != a.Revoked || b.Approved != a.Approved {
			t.Errorf("user before the rebuild %+v, after %+v", b, a)
		}
	}
}
