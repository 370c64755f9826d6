package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// A migration back to the data directory while the bucket's listing lags
// (an eventually consistent listing leaves out the newest pack) must not
// report success with a pack left behind: the store is then opened without
// the bucket and a snapshot acknowledged before is not whole.
func TestMigrateToLocalWithLaggingListing(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{PackSize: 128 << 10, Remote: srv.Remote(t, "lagm")})
	u := addUser(t, s, "SHC1")
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(5))
	_, sn := backupDir(t, s, u, src, nil)
	s.Close()
	var newest string
	for n := range srv.Objects(t, "lagm/") {
		if strings.HasSuffix(n, ".pack") && n > newest {
			newest = n
		}
	}
	lag := &laggingRemote{Remote: srv.Remote(t, "lagm"), hide: newest}
	rep, err := store.MigrateToLocal(ctx, dir, lag, nil)
	if err != nil {
		t.Logf("migration refused (good): %v", err)
		return
	}
	t.Logf("migration reported success: %+v; %s left in the bucket", rep, newest)
	s = openStore(t, dir, store.Options{})
	cr, cerr := s.Check(ctx, store.CheckOptions{ReadData: true})
	if cerr != nil || len(cr.Problems) > 0 {
		t.Errorf("after a migration reported done, the local store is not whole: %v %+v", cerr, cr.Problems)
	}
	out := t.TempDir()
	if _, err := s.Restore(ctx, sn, out, store.RestoreOptions{}); err != nil {
		t.Errorf("restore of the acknowledged snapshot after migrate --to local: %v", err)
	}
}

// migrate --to local pointed at a bucket (prefix) that holds another
// store must be refused, as migrate --to s3 and Open are: it must neither
// write the other store's packs into this data directory nor delete them
// from the bucket.
func TestMigrateToLocalFromAnotherStoresBucket(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	// Store A lives in the bucket under "shared".
	dirA := t.TempDir()
	a := openStore(t, dirA, store.Options{PackSize: 64 << 10, Remote: srv.Remote(t, "shared")})
	ua := addUser(t, a, "SHCA")
	srcA := t.TempDir()
	journalgen.Generate(srcA, journalgen.Small(11))
	_, snA := backupDir(t, a, ua, srcA, nil)
	a.Close()
	packsA, _ := packObjects(srv.Objects(t, "shared/"))
	// Store B is local, with its own backup.
	dirB := t.TempDir()
	b := openStore(t, dirB, store.Options{PackSize: 64 << 10})
	ub := addUser(t, b, "SHCB")
	srcB := t.TempDir()
	journalgen.Generate(srcB, journalgen.Small(12))
	_, snB := backupDir(t, b, ub, srcB, nil)
	b.Close()

	rep, err := store.MigrateToLocal(ctx, dirB, srv.Remote(t, "shared"), nil)
	if err == nil {
		t.Errorf("migrate --to local from a bucket holding another store succeeded: %+v", rep)
	} else {
		t.Logf("refused: %v", err)
	}
	if n, _ := packObjects(srv.Objects(t, "shared/")); n != packsA {
		t.Errorf("store A's bucket held %d packs, %d after B's migration", packsA, n)
	}
	b = openStore(t, dirB, store.Options{})
	cr, cerr := b.Check(ctx, store.CheckOptions{ReadData: true})
	if cerr != nil || len(cr.Problems) > 0 {
		t.Errorf("store B after the migration: %v, %d problems", cerr, len(cr.Problems))
	}
	if _, err := b.Restore(ctx, snB, t.TempDir(), store.RestoreOptions{}); err != nil {
		t.Errorf("store B's snapshot: %v", err)
	}
	b.Close()
	a, err = store.OpenForRepair(ctx, t.TempDir(), store.Options{Remote: srv.Remote(t, "shared")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Repair(ctx); err != nil {
		t.Errorf("store A rebuilt from its bucket: %v", err)
		return
	}
	if _, err := a.Restore(ctx, snA, t.TempDir(), store.RestoreOptions{}); err != nil {
		t.Errorf("store A's snapshot after B's migration: %v", err)
	}
}
