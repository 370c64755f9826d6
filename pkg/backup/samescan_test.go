package backup_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/damage"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// sameTree is a small Journal-like tree: nested directories, files, an
// empty directory and an excluded temp file.
func sameTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for i := range 4 {
		d := filepath.Join(src, fmt.Sprintf("%02x", i), fmt.Sprintf("uid%d", i))
		writeFile(t, filepath.Join(d, "data"), []byte(strings.Repeat(fmt.Sprintf("document %d ", i), 200)))
		for _, k := range []string{"title", "mime_type", "timestamp"} {
			writeFile(t, filepath.Join(d, "metadata", k), []byte(k+fmt.Sprint(i)))
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "00", "draft.tmp"), []byte("excluded"))
	return src
}

// tmpExclude leaves out temp files.
func tmpExclude(rel string, isDir bool) bool { return strings.HasSuffix(rel, ".tmp") }

// sameSetup is a sameTree backed up once with a fresh cache, as a
// laptop's first night leaves it (with no racy window, for the test).
type sameSetup struct {
	s     *store.Store
	u     *store.User
	src   string
	cache *backup.Cache
	first *backup.Result
}

func backedUp(t *testing.T, serial string) sameSetup {
	t.Helper()
	t.Cleanup(backup.SetRacyWindow(0))
	b := sameSetup{s: openStore(t), src: sameTree(t), cache: backup.NewCache()}
	b.u = addUser(t, b.s, serial)
	settle()
	b.first, _ = cachedRun(t, b.s, b.u, b.src, b.cache, tmpExclude)
	return b
}

// TestUnchangedTreeIsTheCachedSnapshot: when the scan finds nothing
// changed, the backup is the last snapshot's root without a second walk,
// with the counts a walk would give; the cache is neither rewritten nor
// emptied by it, so the nights after take the same path.
func TestUnchangedTreeIsTheCachedSnapshot(t *testing.T) {
	b := backedUp(t, "SAME1")
	s, u, src, cache, first := b.s, b.u, b.src, b.cache, b.first
	path := filepath.Join(t.TempDir(), "cache")
	if err := cache.Save(path); err != nil {
		t.Fatal(err)
	}
	saved, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for night := range 3 {
		if cache, err = backup.LoadCache(path); err != nil {
			t.Fatal(err)
		}
		scan := mustScan(t, src, cache, tmpExclude)
		if !scan.SameAsCache(src, cache) {
			t.Fatalf("night %d: the scan of an unchanged tree does not find it as cached", night)
		}
		got := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: tmpExclude, Scan: scan})
		if got.Root != first.Root || got.Files != first.Files || got.Dirs != first.Dirs ||
			got.BytesScanned != first.BytesScanned || got.ChunksTotal != first.ChunksTotal || got.BytesRead != 0 || got.TreesNew != 0 {
			t.Fatalf("night %d: %+v, the first backup %+v", night, got, first)
		}
		sameAsFresh(t, s, u, src, got, tmpExclude, fmt.Sprintf("night %d", night))
		if err := cache.Save(path); err != nil {
			t.Fatal(err)
		}
		if now, err := os.Stat(path); err != nil || !now.ModTime().Equal(saved.ModTime()) || now.Size() != saved.Size() {
			t.Fatalf("night %d: an unchanged run rewrote the cache (%v)", night, err)
		}
	}
}

// TestChangedTreeIsWalked: every change the scan can see, and every
// change to the cache between the scan and the backup, makes the backup
// walk the tree again (the snapshot is then the one a walk without a cache
// makes); and once the change is recorded, the next unchanged night takes
// the cached snapshot again.
func TestChangedTreeIsWalked(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	cases := []struct {
		name string
		// change changes the tree before the scan; afterScan changes the
		// cache between the scan and the backup; exclude is the second
		// backup's rule.
		change    func(t *testing.T, src string)
		afterScan func(t *testing.T, cache *backup.Cache, first *backup.Result, s *store.Store)
		exclude   func(string, bool) bool
		// noAgain is set where the tree can never be taken whole from
		// the cache (a symlink is read again by every walk).
		noAgain bool
	}{
		{name: "a file rewritten in place, same size and mtime", change: func(t *testing.T, src string) {
			f := filepath.Join(src, "01", "uid1", "metadata", "title")
			fi, _ := os.Stat(f)
			writeFile(t, f, []byte("TITLE1"))
			os.Chtimes(f, fi.ModTime(), fi.ModTime())
		}},
		{name: "a file added deep down", change: func(t *testing.T, src string) {
			writeFile(t, filepath.Join(src, "02", "uid2", "metadata", "keep"), []byte("1"))
		}},
		{name: "a file removed", change: func(t *testing.T, src string) {
			os.Remove(filepath.Join(src, "03", "uid3", "data"))
		}},
		{name: "an empty directory removed", change: func(t *testing.T, src string) { os.Remove(filepath.Join(src, "empty")) }},
		{name: "a directory's mode", change: func(t *testing.T, src string) { os.Chmod(filepath.Join(src, "00", "uid0"), 0o700) }},
		{name: "an excluded file removed", change: func(t *testing.T, src string) { os.Remove(filepath.Join(src, "00", "draft.tmp")) }},
		{name: "the exclusion rule", exclude: func(string, bool) bool { return false }},
		{name: "an unreadable file (as root, a name the manifest refuses)", change: func(t *testing.T, src string) {
			if os.Getuid() == 0 {
				// root reads it anyway: a name the manifest refuses instead
				writeFile(t, filepath.Join(src, "01", "bad\nname"), []byte("x"))
				return
			}
			os.Chmod(filepath.Join(src, "01", "uid1", "data"), 0)
		}},
		{name: "a symlink", change: func(t *testing.T, src string) {
			os.Symlink("data", filepath.Join(src, "00", "uid0", "link"))
		}, noAgain: true},
		{name: "a chunk forgotten after the scan (the server reported it damaged)",
			afterScan: func(t *testing.T, cache *backup.Cache, first *backup.Result, s *store.Store) {
				cache.Forget([]blob.Ref{{Type: blob.Chunk, ID: chunkOf(t, s, first.Root, "02/uid2/data")}})
			}},
		{name: "the cache reset after the scan", afterScan: func(t *testing.T, cache *backup.Cache, _ *backup.Result, _ *store.Store) {
			cache.Reset()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := backedUp(t, "SAME2")
			s, u, src, cache, first := b.s, b.u, b.src, b.cache, b.first
			exclude := tmpExclude
			if tc.exclude != nil {
				exclude = tc.exclude
			}
			if tc.change != nil {
				tc.change(t, src)
			}
			settle()
			scan := mustScan(t, src, cache, exclude)
			if tc.afterScan != nil {
				if !scan.SameAsCache(src, cache) {
					t.Fatal("the scan of an unchanged tree does not find it as cached")
				}
				tc.afterScan(t, cache, first, s)
			}
			if scan.SameAsCache(src, cache) {
				t.Fatal("the scan finds the tree as cached after the change")
			}
			got := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: exclude, Scan: scan})
			sameAsFresh(t, s, u, src, got, exclude, "after the change")
			if tc.afterScan != nil && got.BytesRead == 0 {
				t.Fatal("the backup read no file again after the cache forgot one")
			}
			settle()
			next, scan := cachedRun(t, s, u, src, cache, exclude)
			sameAsFresh(t, s, u, src, next, exclude, "the night after")
			if again := scan.SameAsCache(src, cache); again == tc.noAgain {
				t.Fatalf("the night after the change: taken from the cache %v", again)
			}
		})
	}
}

// TestDamageFoundAfterTheScanIsHealed runs what a laptop runs (a scan, then
// the backup with it) against a store whose copy of one of the laptop's
// chunks rotted after the last backup: the unchanged tree would be taken
// whole from the cache, but the store's damage report makes the backup send
// that chunk again, and the snapshot is whole.
func TestDamageFoundAfterTheScanIsHealed(t *testing.T) {
	ctx := context.Background()
	b := backedUp(t, "SAME3")
	s, u, src, cache, first := b.s, b.u, b.src, b.cache, b.first
	victim := chunkOf(t, s, first.Root, "01/uid1/data")
	if n, err := damage.Record(s.Dir(), victim); err != nil || n == 0 {
		t.Fatalf("damage: %d records, %v", n, err)
	}
	if rep, err := s.Scrub(ctx, store.ScrubOptions{All: true}); err != nil || len(rep.Damaged) != 1 {
		t.Fatalf("scrub: %v %+v", err, rep)
	}
	settle()
	got, scan := cachedRun(t, s, u, src, cache, tmpExclude)
	if got.ChunksNew != 1 {
		t.Fatalf("the backup after the damage sent %d chunks, want the damaged one (scan as cached: %v)", got.ChunksNew, scan.SameAsCache(src, cache))
	}
	if d, err := s.Damaged(ctx); err != nil || len(d) != 0 {
		t.Fatalf("still damaged: %v %+v", err, d)
	}
	if rep, err := s.Check(ctx, store.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}
}

// TestCacheHoldingMoreIsNotTakenWhole: a cache file that holds a file the
// tree does not (edited, or left by a run that stopped) while every
// directory is as recorded: the backup walks, so that the stale record is
// dropped when the cache is saved.
func TestCacheHoldingMoreIsNotTakenWhole(t *testing.T) {
	b := backedUp(t, "SAME4")
	s, u, src, cache, first := b.s, b.u, b.src, b.cache, b.first
	cache = saveAndEdit(t, cache, func(f *rawCacheFile) {
		f.prefix = withExtraFile(t, f.prefix, "00/uid0/metadata/stale")
	})
	if cache == nil || cache.Len() != int(first.Files)+1 {
		t.Fatalf("the edited cache does not load with one file more")
	}
	scan := mustScan(t, src, cache, tmpExclude)
	if scan.SameAsCache(src, cache) {
		t.Fatal("a cache with a file the tree lacks is taken whole")
	}
	got := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: tmpExclude, Scan: scan})
	sameAsFresh(t, s, u, src, got, tmpExclude, "the cache with one file more")
	path := filepath.Join(t.TempDir(), "cache")
	if err := cache.Save(path); err != nil {
		t.Fatal(err)
	}
	if cache, err := backup.LoadCache(path); err != nil || cache.Len() != int(first.Files) {
		t.Fatalf("after the run the cache holds %d files, the tree %d (%v)", cache.Len(), first.Files, err)
	}
}

// withExtraFile adds a record for name (no chunks) to the file records of
// a version 2 cache file's prefix (magic, trees, files).
func withExtraFile(t *testing.T, prefix []byte, name string) []byte {
	t.Helper()
	off := 8
	nt, n := binary.Uvarint(prefix[off:])
	off += n + 32*int(nt)
	nf, n := binary.Uvarint(prefix[off:])
	if n <= 0 {
		t.Fatal("bad file count")
	}
	out := slices.Clone(prefix[:off])
	out = binary.AppendUvarint(out, nf+1)
	out = append(out, prefix[off+n:]...)
	for _, v := range []uint64{uint64(len(name)), 1, 1, 1, 1, 0} {
		out = binary.AppendUvarint(out, v)
	}
	out = append(out, name...)
	return binary.AppendUvarint(out, 0o644)
}

// chunkOf returns the first chunk of the file at rel in the snapshot tree
// root.
func chunkOf(t *testing.T, s *store.Store, root chunk.ID, rel string) chunk.ID {
	t.Helper()
	var id chunk.ID
	found := false
	err := s.Walk(context.Background(), root, func(p string, e *manifest.Entry) error {
		if p == rel && len(e.Chunks) > 0 {
			id, found = e.Chunks[0], true
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("no chunk of %s in %s: %v", rel, root, err)
	}
	return id
}

// failingCommit is a target whose commits fail after the uploads went
// through (the connection lost at the last step).
type failingCommit struct{ backup.Target }

func (failingCommit) Commit(context.Context, chunk.ID) (string, error) {
	return "", errors.New("connection lost")
}

// TestUncommittedTreeIsNotTakenWhole: a backup whose commit failed left its
// directories and files in the cache, but its trees are not in a
// committed snapshot: the next scan must not take them as the last
// snapshot's, and the night after the next backup does.
func TestUncommittedTreeIsNotTakenWhole(t *testing.T) {
	b := backedUp(t, "SAME5")
	s, u, src, cache := b.s, b.u, b.src, b.cache
	writeFile(t, filepath.Join(src, "02", "uid2", "data"), []byte("rewritten"))
	settle()
	scan := mustScan(t, src, cache, tmpExclude)
	tg := failingCommit{s.Target(u.ID, store.CommitInfo{Source: src})}
	if _, err := backup.Run(context.Background(), src, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: tmpExclude, Scan: scan}); err == nil {
		t.Fatal("the failing commit did not fail the backup")
	}
	scan = mustScan(t, src, cache, tmpExclude)
	if scan.SameAsCache(src, cache) {
		t.Fatal("the tree of a backup whose commit failed is taken as the last snapshot's")
	}
	got := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: tmpExclude, Scan: scan})
	sameAsFresh(t, s, u, src, got, tmpExclude, "after the failed commit")
	if _, scan := cachedRun(t, s, u, src, cache, tmpExclude); !scan.SameAsCache(src, cache) {
		t.Fatal("the night after a committed backup, the unchanged tree is not taken whole")
	}
}

// TestClockSetBackIsNotTakenWhole: a laptop whose clock went back (an XO's
// clock after its battery ran flat) sees directories it cached as changed
// within the racy window of this walk: those are walked and listed again,
// as a walk without the cache would.
func TestClockSetBackIsNotTakenWhole(t *testing.T) {
	b := backedUp(t, "SAME6")
	src, cache := b.src, b.cache
	restore := backup.SetRacyWindow(time.Hour) // as if the clock went back an hour
	scan := mustScan(t, src, cache, tmpExclude)
	restore()
	if scan.SameAsCache(src, cache) {
		t.Fatal("directories in the walk's racy window are taken from the cache")
	}
}
