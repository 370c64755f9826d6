package backup_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// settle waits until the filesystem's clock has moved past the last change
// (a scan never caches a directory changed after it started).
func settle() { time.Sleep(25 * time.Millisecond) }

// cachedRun is what the agent does: a scan with the cache, then the backup
// using that scan.
func cachedRun(t *testing.T, s *store.Store, u *store.User, src string, cache *backup.Cache, exclude func(string, bool) bool) (*backup.Result, *backup.Scan) {
	t.Helper()
	scan := mustScan(t, src, cache, exclude)
	return mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: exclude, Scan: scan}), scan
}

func mustScan(t *testing.T, src string, cache *backup.Cache, exclude func(string, bool) bool) *backup.Scan {
	t.Helper()
	_, _, scan, err := backup.EstimateScan(context.Background(), src, cache, exclude)
	if err != nil {
		t.Fatal(err)
	}
	return scan
}

// sameAsFresh fails the test if got is not the snapshot a walk without any
// cache makes of src.
func sameAsFresh(t *testing.T, s *store.Store, u *store.User, src string, got *backup.Result, exclude func(string, bool) bool, what string) {
	t.Helper()
	want := mustRun(t, s, u, src, backup.Options{Exclude: exclude})
	if got.Root != want.Root || got.Files != want.Files || got.Dirs != want.Dirs || got.BytesScanned != want.BytesScanned {
		t.Fatalf("%s: with the cache root %s (%d files, %d dirs, %d bytes), a fresh walk %s (%d files, %d dirs, %d bytes)",
			what, got.Root, got.Files, got.Dirs, got.BytesScanned, want.Root, want.Files, want.Dirs, want.BytesScanned)
	}
}

func countDirs(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestDirCacheSnapshotsMatchFreshWalks changes a tree at random, in every
// way a directory's entries can change, and checks after each round that
// the snapshot a run with the cached directories makes is the one a walk
// without any cache makes; and that an unchanged tree is not listed again.
func TestDirCacheSnapshotsMatchFreshWalks(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRC1")
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	dirs := []string{"", "a", "a/b", "c", "c/d/e"}
	for i, d := range dirs {
		for j := range 3 {
			writeFile(t, filepath.Join(src, d, fmt.Sprintf("f%d%d", i, j)), []byte(fmt.Sprintf("file %d %d", i, j)))
		}
	}
	cache := backup.NewCache()
	settle()
	cachedRun(t, s, u, src, cache, nil)

	// Every file and directory of the tree, as paths relative to src.
	list := func() (files, ds []string) {
		filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(src, p)
			if err != nil || rel == "." {
				return nil
			}
			if d.IsDir() {
				ds = append(ds, rel)
			} else if d.Type().IsRegular() {
				files = append(files, rel)
			}
			return nil
		})
		return files, ds
	}
	mutations := []struct {
		name string
		do   func(files, ds []string) error
	}{
		{"add a file", func(files, ds []string) error {
			return os.WriteFile(filepath.Join(src, ds[rng.IntN(len(ds))], fmt.Sprintf("new%d", rng.Int())), []byte("new"), 0o644)
		}},
		{"remove a file", func(files, ds []string) error { return os.Remove(filepath.Join(src, files[rng.IntN(len(files))])) }},
		{"rename a file in its directory", func(files, ds []string) error {
			f := filepath.Join(src, files[rng.IntN(len(files))])
			return os.Rename(f, f+"r")
		}},
		{"move a file to another directory", func(files, ds []string) error {
			return os.Rename(filepath.Join(src, files[rng.IntN(len(files))]), filepath.Join(src, ds[rng.IntN(len(ds))], fmt.Sprintf("moved%d", rng.Int())))
		}},
		{"rewrite a file in place, same size, old mtime", func(files, ds []string) error {
			f := filepath.Join(src, files[rng.IntN(len(files))])
			fi, err := os.Stat(f)
			if err != nil {
				return err
			}
			b, _ := os.ReadFile(f)
			for i := range b {
				b[i] ^= 0x55
			}
			if err := os.WriteFile(f, b, 0o644); err != nil {
				return err
			}
			return os.Chtimes(f, fi.ModTime(), fi.ModTime())
		}},
		{"chmod a file", func(files, ds []string) error {
			return os.Chmod(filepath.Join(src, files[rng.IntN(len(files))]), 0o600)
		}},
		{"chmod a directory", func(files, ds []string) error { return os.Chmod(filepath.Join(src, ds[rng.IntN(len(ds))]), 0o750) }},
		{"touch a directory back to its old mtime", func(files, ds []string) error {
			d := filepath.Join(src, ds[rng.IntN(len(ds))])
			fi, err := os.Stat(d)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, "touched"), []byte("t"), 0o644); err != nil {
				return err
			}
			return os.Chtimes(d, fi.ModTime(), fi.ModTime())
		}},
		{"add a directory", func(files, ds []string) error {
			return os.MkdirAll(filepath.Join(src, ds[rng.IntN(len(ds))], fmt.Sprintf("sub%d", rng.Int())), 0o755)
		}},
		{"remove a directory", func(files, ds []string) error {
			if len(ds) < 3 {
				return nil
			}
			return os.RemoveAll(filepath.Join(src, ds[rng.IntN(len(ds)-1)])) // not ".", the last
		}},
		{"replace a file with a directory", func(files, ds []string) error {
			f := filepath.Join(src, files[rng.IntN(len(files))])
			if err := os.Remove(f); err != nil {
				return err
			}
			if err := os.Mkdir(f, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(f, "inside"), nil, 0o644)
		}},
		{"add a symlink", func(files, ds []string) error {
			return os.Symlink("target", filepath.Join(src, ds[rng.IntN(len(ds))], fmt.Sprintf("link%d", rng.Int())))
		}},
	}
	for round := range 60 {
		m := mutations[round%len(mutations)]
		if round%5 != 4 { // every fifth round changes nothing
			files, ds := list()
			ds = append(ds, ".")
			if len(files) == 0 {
				writeFile(t, filepath.Join(src, "refill"), []byte("refill"))
				files, ds = list()
				ds = append(ds, ".")
			}
			if err := m.do(files, ds); err != nil {
				t.Fatalf("round %d, %s: %v", round, m.name, err)
			}
		}
		settle()
		scan := mustScan(t, src, cache, nil)
		// A round with no change takes the last snapshot whole, until a
		// symlink is in the tree (those are read again by every walk).
		if same := scan.SameAsCache(src, cache); round%5 == 4 && round < 11 && !same {
			t.Fatalf("round %d, nothing changed: the backup would walk the tree", round)
		} else if round%5 != 4 && same {
			t.Fatalf("round %d (%s): the changed tree would be taken whole", round, m.name)
		}
		got := mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan})
		sameAsFresh(t, s, u, src, got, nil, fmt.Sprintf("round %d (%s)", round, m.name))
		if round%5 == 4 {
			if scan.Listed() != 0 || got.TreesNew != 0 {
				t.Fatalf("round %d, nothing changed: %d directories listed again, %d trees sent", round, scan.Listed(), got.TreesNew)
			}
			// The cache went through a file as xo-backup keeps it.
			path := filepath.Join(t.TempDir(), "cache")
			if err := cache.Save(path); err != nil {
				t.Fatal(err)
			}
			var err error
			if cache, err = backup.LoadCache(path); err != nil {
				t.Fatal(err)
			}
		} else if scan.Listed() == countDirs(t, src) {
			t.Fatalf("round %d (%s): every directory was listed again", round, m.name)
		}
	}
}

// TestDirCacheIgnoresRacyDirectories: a directory changed just before the
// walk (within the filesystem's timestamp granularity, for all the walk
// can tell) is listed again next time.
func TestDirCacheIgnoresRacyDirectories(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "DIRC2")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a", "one"), []byte("one"))
	cache := backup.NewCache()
	cachedRun(t, s, u, src, cache, nil)
	_, scan := cachedRun(t, s, u, src, cache, nil)
	if scan.Listed() != 2 {
		t.Fatalf("directories changed a moment ago: %d of 2 listed again", scan.Listed())
	}
}

// TestDirCacheFollowsExclude: the same cache with another Exclude makes the
// snapshot that Exclude asks for.
func TestDirCacheFollowsExclude(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRC3")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep", "a"), []byte("a"))
	writeFile(t, filepath.Join(src, "keep", "b.tmp"), []byte("b"))
	writeFile(t, filepath.Join(src, "index", "x"), []byte("x"))
	settle()
	cache := backup.NewCache()
	for i, ex := range []func(string, bool) bool{backup.JournalExclude, nil, backup.JournalExclude, func(rel string, _ bool) bool { return rel == "keep/a" }} {
		got, _ := cachedRun(t, s, u, src, cache, ex)
		want := mustRun(t, s, u, src, backup.Options{Exclude: ex})
		if got.Root != want.Root || got.Files != want.Files {
			t.Fatalf("exclude %d: root %s (%d files), a fresh walk %s (%d files)", i, got.Root, got.Files, want.Root, want.Files)
		}
	}
}
