package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// faultFS is the real file system with one injected fault: the failAt-th
// operation of the chosen kind fails with EIO (or, for "short", writes
// half its bytes and reports that).
type faultFS struct {
	store.FS
	kind   string
	failAt int

	mu     sync.Mutex
	counts map[string]int
	hit    bool
}

var errInjected = fmt.Errorf("injected fault: %w", syscall.EIO)

func (f *faultFS) fail(kind string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == "write" && f.kind == "short" {
		kind = "short"
	}
	f.counts[kind]++
	if kind == f.kind && f.counts[kind] == f.failAt {
		f.hit = true
		return true
	}
	return false
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (store.File, error) {
	if flag&os.O_CREATE != 0 && f.fail("create") {
		return nil, errInjected
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

func (f *faultFS) Rename(o, n string) error {
	if f.fail("rename") {
		return errInjected
	}
	return f.FS.Rename(o, n)
}

func (f *faultFS) SyncDir(name string) error {
	if f.fail("syncdir") {
		return errInjected
	}
	return f.FS.SyncDir(name)
}

type faultFile struct {
	store.File
	fs *faultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.fs.fail("write") {
		if f.fs.kind == "short" {
			n, _ := f.File.Write(p[:len(p)/2])
			return n, errors.New("short write")
		}
		return 0, errInjected
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if f.fs.fail("sync") {
		return errInjected
	}
	return f.File.Sync()
}

// TestInjectedFaults runs backups over a file system that fails once, at
// about 30 of the writes (EIO, then the same writes cut short) and at every
// fsync, create, rename and directory sync in turn. No fault may lose an
// acknowledged snapshot (a fault in a write whose result is not needed may
// pass unnoticed); after reopening on a healthy disk the store checks
// clean, every acknowledged snapshot restores, and the next backup works.
func TestInjectedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection skipped in -short mode")
	}
	injectedFaults(t, nil, 30)
}

// The same with the packs on S3: the local disk (where packs are staged
// and the index and metadata live) fails at each operation in turn, fewer
// of the many writes.
func TestS3InjectedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection skipped in -short mode")
	}
	srv := s3test.Start(t)
	injectedFaults(t, func(dir string) store.Remote { return srv.Remote(t, filepath.Base(dir)) }, 8)
}

func injectedFaults(t *testing.T, remote func(dir string) store.Remote, perKind int) {
	ctx := context.Background()
	if remote == nil {
		remote = func(string) store.Remote { return nil }
	}
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(8)); err != nil {
		t.Fatal(err)
	}
	day1 := t.TempDir()
	journalgen.Generate(day1, journalgen.Small(8))
	journalgen.Mutate(day1, 8, 1)

	// Count the operations of a healthy run: two backups.
	probe := &faultFS{kind: "none", counts: map[string]int{}}
	run := func(dir string, fsys store.FS) (acked []*store.Snapshot, err error) {
		s, err := store.Open(ctx, dir, store.Options{Reserve: -1, FS: fsys, PackSize: 64 << 10, Remote: remote(dir)})
		if err != nil {
			return nil, err
		}
		defer s.Close()
		u, err := s.UserBySerial("FLT1")
		if err != nil {
			if u, err = s.AddUser(ctx, store.NewUser{Serial: "FLT1", Approved: true}); err != nil {
				return nil, err
			}
		}
		for _, d := range []string{src, day1} {
			tg := s.Target(u.ID, store.CommitInfo{})
			if _, err := backup.Run(ctx, d, tg, backup.Options{Params: s.Params(), Exclude: backup.JournalExclude}); err != nil {
				return acked, err
			}
			acked = append(acked, tg.Last())
		}
		return acked, nil
	}
	dir := t.TempDir()
	probe.FS = store.DirFS(dir)
	if _, err := run(dir, probe); err != nil {
		t.Fatal(err)
	}
	faults, errs := 0, 0
	byKind := map[string]int{}
	for _, kind := range []string{"write", "short", "sync", "create", "rename", "syncdir"} {
		// Every operation of the rarer kinds; about 30 of the many writes,
		// failed (EIO) and then cut short.
		n := probe.counts[kind]
		if kind == "short" {
			n = probe.counts["write"]
		}
		step := max(1, n/perKind)
		for at := 1; at <= n; at += step {
			dir := t.TempDir()
			ff := &faultFS{FS: store.DirFS(dir), kind: kind, failAt: at, counts: map[string]int{}}
			acked, err := run(dir, ff)
			if !ff.hit {
				continue
			}
			faults++
			byKind[kind]++
			// A fault in a write whose result is not needed could pass;
			// either way the store must be sound afterwards.
			if err != nil {
				errs++
			}
			s := openStore(t, dir, store.Options{Remote: remote(dir)})
			checkClean(t, s)
			u, err := s.UserBySerial("FLT1")
			if err != nil {
				if len(acked) > 0 {
					t.Fatalf("%s #%d: user lost", kind, at)
				}
				s.Close()
				continue
			}
			for i, sn := range acked {
				got, err := s.Snapshot(u.ID, sn.ID)
				if err != nil {
					t.Fatalf("%s #%d: acknowledged snapshot %s lost", kind, at, sn.ID)
				}
				restoreAndCompare(t, s, got, []string{src, day1}[i])
			}
			tg := s.Target(u.ID, store.CommitInfo{})
			if _, err := backup.Run(ctx, day1, tg, backup.Options{Params: s.Params(), Exclude: backup.JournalExclude}); err != nil {
				t.Fatalf("%s #%d: backup after the fault: %v", kind, at, err)
			}
			s.Close()
		}
	}
	t.Logf("%d faults injected (%v; %v in a healthy run); %d surfaced as errors", faults, byKind, probe.counts, errs)
	if faults < min(20, 3*perKind/2) || errs == 0 || byKind["short"] == 0 || byKind["write"] == 0 {
		t.Fatalf("only %d faults injected (%v), %d errors: the test does not reach the store's I/O", faults, byKind, errs)
	}
}
