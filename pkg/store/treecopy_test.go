package store

import (
	"context"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// oldOnlyTrees lists the trees only the first night's snapshots use: the
// directories no laptop has any more, which no backup can heal.
func (a *a3) oldOnlyTrees() []blob.Ref {
	cur := a.current()
	var out []blob.Ref
	seen := map[blob.Ref]bool{}
	for _, u := range a.users {
		for _, r := range a.refsOf(a.s.Snapshots(u)[0]) {
			if r.Type == blob.Tree && !cur[r] && !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// restoreAll restores every snapshot into a new directory and returns how
// many files were left out as damaged.
func (a *a3) restoreAll(t *testing.T) int {
	t.Helper()
	left := 0
	for _, u := range a.users {
		for _, sn := range a.s.Snapshots(u) {
			res, err := restore.Restore(context.Background(), a.s, sn.Root, t.TempDir(), restore.Options{})
			if err != nil && res == nil {
				t.Fatalf("restore %s: %v", sn.ID, err)
			}
			left += len(res.Damaged)
		}
	}
	return left
}

// Directories only an old snapshot has rot: no laptop can send them again
// (a whole pack lost with them: e2e TestRecAttackFirstPackDeleted). Every
// tree has a copy in the index: check writes them back, and every file of
// the old snapshots restores again, with no laptop's help.
func TestOldTreesComeBackFromTheirCopies(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	old := a.oldOnlyTrees()
	if len(old) == 0 {
		t.Fatal("no tree only the first night uses")
	}
	for _, r := range old {
		a.flip(r)
	}
	rep, err := a.s.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.TreesRestored < len(old) {
		t.Errorf("check wrote back %d of the %d damaged trees from their copies", rep.TreesRestored, len(old))
	}
	if !rep.OK() {
		t.Errorf("check after the trees came back: %+v", rep.Problems)
	}
	if left := a.restoreAll(t); left > 0 {
		t.Fatalf("%d file(s) of the snapshots do not restore after check", left)
	}
	if bad := a.unreadableOf(a.refs()); len(bad) > 0 {
		t.Fatalf("%d blobs do not read", len(bad))
	}
	// And they stay: the lifecycle, GC and compaction, a reopen.
	a.lifecycleNights(t, 1)
	a.close()
	a.open()
	if rep, err := a.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after a night: %v %+v", err, rep)
	}
}

// A store written before trees had copies: the scrub gives every tree it
// reads one; garbage collection takes a tree's copy with it.
func TestScrubGivesOldTreesACopy(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	countCopies := func() int {
		n := 0
		a.s.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pCopy}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		return n
	}
	trees := 0
	for r := range a.refs() {
		if r.Type == blob.Tree {
			trees++
		}
	}
	if n := countCopies(); n < trees {
		t.Fatalf("%d copies for %d trees after the backups", n, trees)
	}
	if err := a.s.db.DropPrefix([]byte{pCopy}); err != nil {
		t.Fatal(err)
	}
	if n := countCopies(); n != 0 {
		t.Fatalf("%d copies left", n)
	}
	if _, err := a.s.Scrub(ctx, ScrubOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	if n := countCopies(); n < trees {
		t.Fatalf("the scrub gave %d of %d trees a copy", n, trees)
	}
	// Delete every snapshot: GC sweeps the trees and their copies.
	for _, u := range a.users {
		for _, sn := range a.s.Snapshots(u) {
			if err := a.s.DeleteSnapshot(ctx, u, sn.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := a.s.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := countCopies(); n != 0 {
		t.Fatalf("%d tree copies left after every tree was swept", n)
	}
}

// The same rot, and the index damaged too, so that check advises the
// repair: the rebuild keeps the trees' copies (checked against their IDs)
// and writes back from them what no pack holds intact.
func TestRepairWritesTreesBackFromTheirCopies(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	old := a.oldOnlyTrees()
	for _, r := range old {
		a.flip(r)
	}
	// The index loses an entry: the next check advises --repair.
	var victim blob.Ref
	for r := range a.current() {
		if r.Type == blob.Chunk {
			victim = r
			break
		}
	}
	a.s.dbUpdate(func(txn *badger.Txn) error { return txn.Delete(objKey(victim)) })
	a.close()
	rs, err := OpenForRepair(ctx, a.dir, a.opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rs.Repair(ctx)
	rs.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep.TreesRestored < len(old) {
		t.Errorf("the repair wrote back %d of the %d rotted trees from their copies", rep.TreesRestored, len(old))
	}
	a.open()
	if left := a.restoreAll(t); left > 0 {
		t.Fatalf("%d file(s) do not restore after the repair", left)
	}
	if rep, err := a.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after the repair: %v %+v", err, rep)
	}
}
