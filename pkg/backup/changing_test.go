package backup_test

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// entryAt returns the entry at rel in the snapshot tree of res (nil if
// there is none).
func entryAt(t *testing.T, s *store.Store, res *backup.Result, rel string) *manifest.Entry {
	t.Helper()
	var found *manifest.Entry
	err := s.Walk(context.Background(), res.Root, func(p string, e *manifest.Entry) error {
		if p == rel {
			c := *e
			found = &c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// contentAt reads the file at rel from the snapshot of res.
func contentAt(t *testing.T, s *store.Store, res *backup.Result, rel string) string {
	t.Helper()
	f, err := restore.SnapshotFS(context.Background(), s, res.Root).Open(rel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFileBecomesDirectoryAfterScan: a file the admission scan saw
// as a regular file is a directory by the time the backup reads it (the
// agent reuses the scan, up to maxScanAge later). The backup must not fail
// as a whole for it: like a file that vanished, it is left out (or taken as
// what it is now), and the rest is backed up.
func TestFileBecomesDirectoryAfterScan(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ATK2A")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep"), []byte("precious work"))
	writeFile(t, filepath.Join(src, "turns-dir"), []byte("a file for now"))
	cache := backup.NewCache()
	scan := mustScan(t, src, cache, nil)

	if err := os.Remove(filepath.Join(src, "turns-dir")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "turns-dir", "inside"), []byte("now a directory"))

	res, err := run(s, u, src, backup.Options{Cache: cache, Scan: scan})
	if err != nil {
		t.Fatalf("a file replaced by a directory after the scan fails the whole backup: %v", err)
	}
	if got := contentAt(t, s, res, "keep"); got != "precious work" {
		t.Fatalf("keep: %q", got)
	}
}

// TestFileBecomesSymlinkAfterScan: a file the scan saw as a regular
// file is a symlink (to a file outside the Journal) when the backup opens
// it. The snapshot must never hold the symlink target's bytes as the
// content of a regular file named like the Journal's file: the backup
// follows no symlink.
func TestFileBecomesSymlinkAfterScan(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ATK2B")
	top := t.TempDir()
	src := filepath.Join(top, "journal")
	writeFile(t, filepath.Join(src, "doc"), []byte("the student's own text"))
	writeFile(t, filepath.Join(top, "outside"), []byte("SECRET: not part of the Journal"))
	cache := backup.NewCache()
	scan := mustScan(t, src, cache, nil)

	if err := os.Remove(filepath.Join(src, "doc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(top, "outside"), filepath.Join(src, "doc")); err != nil {
		t.Fatal(err)
	}
	res, err := run(s, u, src, backup.Options{Cache: cache, Scan: scan})
	if err != nil {
		return // refusing is fine
	}
	e := entryAt(t, s, res, "doc")
	if e != nil && e.Type == manifest.File {
		if got := contentAt(t, s, res, "doc"); strings.Contains(got, "SECRET") {
			t.Fatalf("the snapshot holds the symlink's target (outside the backup source) as the content of the regular file doc: %q", got)
		}
	}
}

// TestDirectoryBecomesSymlinkAfterScan: the same one level up. A
// directory the scan listed is a symlink to a directory outside the
// Journal (holding a file of the same name) when the backup reads it: the
// backup takes the directory's listing from the scan and opens its files
// by path, through the symlink. Refusing to follow the last component of
// the path (O_NOFOLLOW) does not stop this one.
func TestDirectoryBecomesSymlinkAfterScan(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ATK2B2")
	top := t.TempDir()
	src := filepath.Join(top, "journal")
	writeFile(t, filepath.Join(src, "sub", "doc"), []byte("the student's own text"))
	writeFile(t, filepath.Join(top, "outside", "doc"), []byte("SECRET: not part of the Journal"))
	cache := backup.NewCache()
	scan := mustScan(t, src, cache, nil)

	if err := os.Rename(filepath.Join(src, "sub"), filepath.Join(top, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(top, "outside"), filepath.Join(src, "sub")); err != nil {
		t.Fatal(err)
	}
	res, err := run(s, u, src, backup.Options{Cache: cache, Scan: scan})
	if err != nil {
		return // refusing is fine
	}
	if e := entryAt(t, s, res, "sub/doc"); e != nil && e.Type == manifest.File {
		if got := contentAt(t, s, res, "sub/doc"); strings.Contains(got, "SECRET") {
			t.Fatalf("the snapshot holds a file outside the backup source, reached through a directory turned symlink, as sub/doc: %q", got)
		}
	}
}

// TestFileBecomesFifoAfterScan: a file the scan saw as a regular
// file is a named pipe when the backup opens it. The backup must not block
// for ever on the open (it holds the run lock: every later run would be
// skipped as "another run in progress" until a reboot).
func TestFileBecomesFifoAfterScan(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ATK2C")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep"), []byte("precious work"))
	writeFile(t, filepath.Join(src, "pipe"), []byte("a file for now"))
	cache := backup.NewCache()
	scan := mustScan(t, src, cache, nil)

	fifo := filepath.Join(src, "pipe")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{Source: src}), backup.Options{Params: s.Params(), Cache: cache, Scan: scan})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("backup with a fifo in place of a file: %v", err)
		}
	case <-time.After(6 * time.Second):
		// Unblock the open so that the goroutine ends with the test.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("the backup blocked on opening a named pipe that replaced a file after the scan (past its context's deadline)")
	}
}

// TestDeepTreeDoesNotStopEveryBackup: one directory nested deeper
// than a snapshot may hold (manifest.MaxDepth) must not make every backup
// of the Journal fail, night after night: the part too deep is left out
// (and said), the rest is backed up.
func TestDeepTreeDoesNotStopEveryBackup(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ATK2D")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep"), []byte("precious work"))
	deep := src
	for range manifest.MaxDepth + 2 {
		deep = filepath.Join(deep, "d")
	}
	writeFile(t, filepath.Join(deep, "bottom"), []byte("deep down"))
	cache := backup.NewCache()
	for night := range 2 {
		scan := mustScan(t, src, cache, nil)
		res, err := run(s, u, src, backup.Options{Cache: cache, Scan: scan})
		if err != nil {
			t.Fatalf("night %d: a tree %d directories deep fails the whole backup: %v", night, manifest.MaxDepth+2, err)
		}
		if got := contentAt(t, s, res, "keep"); got != "precious work" {
			t.Fatalf("keep: %q", got)
		}
		if len(res.Skipped) == 0 {
			t.Errorf("night %d: the part of the tree too deep to back up is not reported as left out", night)
		}
	}
}

// TestRacilyCleanFileIsNotCachedForEver: on a filesystem whose
// timestamps tick coarsely (ramfs here: every 4 ms; the XO's kernels and
// filesystems, ext4 before multigrain timestamps, jffs2, ubifs, vfat on an
// SD card: a jiffy or more), a file rewritten with the same size right
// after the backup read it, within the same tick as its previous write,
// keeps its size, mtime, ctime and inode. The cache recorded it with the
// old chunks; if it trusts that record, every later backup commits the
// old content, night after night, until the file happens to change again.
// The directories already guard against this (racyWindow); the files
// must too (git's "racily clean" entries).
func TestRacilyCleanFileIsNotCachedForEver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a ramfs (coarse timestamps)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "ramfs", "ramfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a ramfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	s := openStore(t)
	u := addUser(t, s, "ATK2RACY")
	for attempt := range 100 {
		src := filepath.Join(mnt, fmt.Sprint(attempt))
		doc := filepath.Join(src, "doc")
		writeFile(t, doc, []byte("first version"))
		before, _ := os.Lstat(doc)
		var after os.FileInfo
		cache := backup.NewCache()
		scan := mustScan(t, src, cache, nil)
		mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan, Progress: func(p backup.Progress) {
			if p.Path == "doc" {
				// The student saves again, at once, the same length.
				os.WriteFile(doc, []byte("SECOND VERSION"[:13]), 0o644)
				after, _ = os.Lstat(doc)
			}
		}})
		if after == nil || !sameStat(before, after) {
			continue // the clock ticked between the two writes: try again
		}
		var stale []int
		for night := range 3 {
			got, _ := cachedRun(t, s, u, src, cache, nil)
			if c := contentAt(t, s, got, "doc"); c != "SECOND VERSIO" {
				stale = append(stale, night)
			}
		}
		if len(stale) > 0 {
			t.Fatalf("attempt %d: the nights %v after the rewrite back up the file's old content (%q), not what it holds (%q)", attempt, stale, "first version", "SECOND VERSIO")
		}
		return
	}
	t.Skip("the two writes never fell within one timestamp tick")
}

func sameStat(a, b os.FileInfo) bool {
	sa, sb := a.Sys().(*syscall.Stat_t), b.Sys().(*syscall.Stat_t)
	return a.Size() == b.Size() && sa.Mtim == sb.Mtim && sa.Ctim == sb.Ctim && sa.Ino == sb.Ino
}

// TestFarFutureTimesAreHeld: a file dated 2300 (a clock set wrong) is
// recorded with the latest time a snapshot can hold, not a wrapped-around
// one in 1715.
func TestFarFutureTimesAreHeld(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ATK2TIME")
	src, err := os.MkdirTemp("/dev/shm", "xs-far-future-") // tmpfs keeps 64-bit times
	if err != nil {
		t.Skipf("no /dev/shm here: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(src) })
	doc := filepath.Join(src, "doc")
	writeFile(t, doc, []byte("from the future"))
	future := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	ts, err := unix.TimeToTimespec(future) // os.Chtimes goes through int64 nanoseconds
	if err != nil {
		t.Skipf("no time in 2300 on this architecture: %v", err)
	}
	if err := unix.UtimesNano(doc, []unix.Timespec{ts, ts}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(doc); err != nil || fi.ModTime().Year() != 2300 {
		t.Skipf("this filesystem cannot hold a time in 2300: %v", fi.ModTime())
	}
	res, err := run(s, u, src, backup.Options{Cache: backup.NewCache()})
	if err != nil {
		t.Fatal(err)
	}
	if e := entryAt(t, s, res, "doc"); e == nil || time.Unix(0, e.MTime).Year() < 2262 {
		t.Fatalf("a file dated 2300 recorded as %v", e)
	}
}
