package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A table file of the index cut short (a lost block, a copy that stopped
// half way): Badger opens tables in goroutines of its own, where the
// damaged footer panicked and took the daemon, or the staff tool run to
// check, down with it. Open must say the index is damaged (what check
// turns into the advice to rebuild it), the repair must work, and nothing
// may be lost.
func TestTruncatedIndexTableIsIndexDamage(t *testing.T) {
	for _, cut := range []string{"half", "footer", "empty"} {
		t.Run(cut, func(t *testing.T) {
			a := newA3(t)
			before := a.refs()
			a.close()
			tables, _ := filepath.Glob(filepath.Join(a.dir, "index", "*.sst"))
			if len(tables) == 0 {
				t.Fatal("the index has no table files")
			}
			var big string
			var size int64
			for _, p := range tables {
				if fi, err := os.Stat(p); err == nil && fi.Size() > size {
					big, size = p, fi.Size()
				}
			}
			n := map[string]int64{"half": size / 2, "footer": size - 3, "empty": 0}[cut]
			if err := os.Truncate(big, n); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				opts := a.opts
				opts.ReadOnly = ro
				s, err := Open(context.Background(), a.dir, opts)
				if err == nil {
					s.Close()
					t.Fatalf("a store whose index table %s was cut to %d of %d bytes opened (read-only %v)", filepath.Base(big), n, size, ro)
				}
				if !errors.Is(err, ErrIndexDamaged) {
					t.Fatalf("open (read-only %v): %v, want the index damaged", ro, err)
				}
				t.Logf("open (read-only %v): %v", ro, err)
			}
			a.repair(t)
			if bad := a.unreadableOf(before); len(bad) > 0 {
				t.Fatalf("%d blobs lost after the repair", len(bad))
			}
			if rep, err := a.s.Check(context.Background(), CheckOptions{ReadData: true}); err != nil || !rep.OK() {
				t.Fatalf("check after the repair: %v %+v", err, rep)
			}
		})
	}
}

// The index directory deleted (or a data directory copied without it):
// the store must not start with a new empty index, which takes every blob
// the snapshots use for lost (check then called it bit rot and advised
// against the repair). Open says the index is damaged; the repair rebuilds
// it and nothing is lost.
func TestMissingIndexIsIndexDamage(t *testing.T) {
	a := newA3(t)
	before := a.refs()
	a.close()
	if err := os.RemoveAll(filepath.Join(a.dir, "index")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), a.dir, a.opts)
	if err == nil {
		s.Close()
		t.Fatal("a store whose index was deleted opened with a new empty one")
	}
	if !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("open: %v, want the index damaged", err)
	}
	t.Logf("open: %v", err)
	a.repair(t)
	if bad := a.unreadableOf(before); len(bad) > 0 {
		t.Fatalf("%d blobs lost after the repair", len(bad))
	}
	if rep, err := a.s.Check(context.Background(), CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after the repair: %v %+v", err, rep)
	}
}
