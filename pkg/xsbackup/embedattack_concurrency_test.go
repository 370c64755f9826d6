package xsbackup_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// "A store is used by one process at a time: a second OpenLocal of the same
// dir fails until the first Repo is closed." Also through another spelling
// of the same directory (a symlink, a trailing "/.").
func TestEmbedAttackTwoReposSameDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	a := eaOpen(t, dir)
	for _, d := range []string{dir, dir + "/.", link} {
		if b, err := xsbackup.OpenLocal(ctx, d, xsbackup.Options{Reserve: -1}); err == nil {
			b.Close()
			t.Errorf("second OpenLocal(%q) while the first Repo is open succeeded", d)
		}
	}
	// The refused opens did not break the first Repo.
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": "A"})
	if _, err := a.Backup(ctx, src); err != nil {
		t.Fatalf("first Repo after refused opens: %v", err)
	}
	a.Close()
	b, err := xsbackup.OpenLocal(ctx, link, xsbackup.Options{Reserve: -1})
	if err != nil {
		t.Fatalf("OpenLocal after Close: %v", err)
	}
	if sns, err := b.Snapshots(ctx); err != nil || len(sns) != 1 {
		t.Fatalf("snapshots %v %v", sns, err)
	}
	b.Close()
}

// Two processes: the test binary re-executed opens the same store while
// this one holds it: it must fail; after Close it must succeed.
func TestEmbedAttackTwoProcesses(t *testing.T) {
	if d := os.Getenv("EA_CHILD_STORE"); d != "" {
		r, err := xsbackup.OpenLocal(context.Background(), d, xsbackup.Options{Reserve: -1})
		if err != nil {
			fmt.Println("CHILD-OPEN-FAILED:", err)
			os.Exit(3)
		}
		src := os.Getenv("EA_CHILD_SRC")
		if _, err := r.Backup(context.Background(), src); err != nil {
			fmt.Println("CHILD-BACKUP-FAILED:", err)
			os.Exit(4)
		}
		r.Close()
		fmt.Println("CHILD-OK")
		os.Exit(0)
	}
	dir := t.TempDir()
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": "A"})
	child := func() (string, int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEmbedAttackTwoProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), "EA_CHILD_STORE="+dir, "EA_CHILD_SRC="+src)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	a := eaOpen(t, dir)
	out, code := child()
	if code != 3 {
		t.Errorf("child opening a store this process holds: exit %d, %s", code, out)
	}
	a.Close()
	out, code = child()
	if code != 0 {
		t.Fatalf("child after Close: exit %d, %s", code, out)
	}
	b := eaOpen(t, dir)
	defer b.Close()
	if sns, _ := b.Snapshots(context.Background()); len(sns) != 1 {
		t.Fatalf("child's snapshot not seen: %v", sns)
	}
}

// Backup, Restore, Snapshots, Open+reads from many goroutines, and Close in
// the middle (run with -race). Every call returns nil or ErrClosed (once
// closed); after Close returns every call fails with ErrClosed; the store
// checks clean and all committed snapshots restore.
func TestEmbedAttackConcurrentWithClose(t *testing.T) {
	ctx := context.Background()
	storeDir := t.TempDir()
	srcs := make([]string, 3)
	for i := range srcs {
		srcs[i] = t.TempDir()
		files := map[string]string{}
		for j := range 40 {
			files[fmt.Sprintf("d%d/f%d", j%4, j)] = strings.Repeat(fmt.Sprintf("%d.%d ", i, j), 300+j*20)
		}
		eaWrite(t, srcs[i], files)
	}
	repo := eaOpen(t, storeDir)
	first, err := repo.Backup(ctx, srcs[0])
	if err != nil {
		t.Fatal(err)
	}
	var closed atomic.Bool
	var bad atomic.Value
	fail := func(what string, err error) {
		if err == nil {
			return
		}
		if errors.Is(err, xsbackup.ErrClosed) {
			return
		}
		bad.CompareAndSwap(nil, fmt.Sprintf("%s: %v", what, err))
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(1500 * time.Millisecond)
	for g := range 10 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop) || !closed.Load(); i++ {
				if closed.Load() && i > 1000 {
					return
				}
				switch (g + i) % 5 {
				case 0:
					_, err := repo.Backup(ctx, srcs[(g+i)%3])
					fail("Backup", err)
				case 1:
					_, err := repo.Snapshots(ctx)
					fail("Snapshots", err)
				case 2:
					err := repo.Restore(ctx, first, t.TempDir())
					fail("Restore", err)
				case 3:
					fsys, err := repo.Open(ctx, first)
					fail("Open", err)
					if err == nil {
						_, err = fs.ReadFile(fsys, "d1/f5")
						fail("ReadFile", err)
					}
				case 4:
					err := repo.Restore(ctx, first, t.TempDir(), "d2")
					fail("Restore d2", err)
				}
				if closed.Load() {
					return
				}
			}
		})
	}
	time.Sleep(800 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- repo.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close hangs with calls in flight")
	}
	closed.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if _, err := repo.Snapshots(ctx); !errors.Is(err, xsbackup.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	eaCheckStore(t, storeDir)
	r2 := eaOpen(t, storeDir)
	defer r2.Close()
	sns, _ := r2.Snapshots(ctx)
	for _, sn := range sns {
		if err := r2.Restore(ctx, sn, t.TempDir()); err != nil {
			t.Fatalf("restore %s: %v", sn.ID, err)
		}
	}
}

// "Close waits for the calls in flight": when Close returns, no Backup
// is still running (its Progress callback is never called after Close
// returned), and the Backup's outcome is a committed snapshot or ErrClosed
// or a clean error.
func TestEmbedAttackCloseWaitsForBackup(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{}
	for j := range 300 {
		files[fmt.Sprintf("d%d/f%d", j%9, j)] = strings.Repeat(fmt.Sprintf("%d ", j), 2000)
	}
	eaWrite(t, src, files)
	var closedAt atomic.Int64
	var lateCalls atomic.Int64
	started := make(chan struct{})
	var once sync.Once
	storeDir := t.TempDir()
	repo, err := xsbackup.OpenLocal(context.Background(), storeDir, xsbackup.Options{Reserve: -1, Progress: func(xsbackup.Progress) {
		once.Do(func() { close(started) })
		if closedAt.Load() != 0 {
			lateCalls.Add(1)
		}
		time.Sleep(time.Millisecond)
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { _, err := repo.Backup(context.Background(), src); res <- err }()
	<-started
	repo.Close()
	closedAt.Store(time.Now().UnixNano())
	select {
	case err := <-res:
		if err != nil {
			t.Errorf("backup in flight when Close was called: %v", err)
		}
	default:
		t.Fatal("Close returned while Backup was still running")
	}
	if n := lateCalls.Load(); n > 0 {
		t.Fatalf("%d Progress calls after Close returned", n)
	}
	eaCheckStore(t, storeDir)
}

// A Progress callback that asks the Repo for its snapshots (say, to show
// them in a UI) while another goroutine closes the Repo: neither may hang.
// (Repo.enter takes r.mu.RLock again inside the Backup's RLock; with Close
// waiting for the write lock, the second RLock blocks for ever.)
func TestEmbedAttackCloseDuringCallbackReentry(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{}
	for j := range 50 {
		files[fmt.Sprintf("f%d", j)] = strings.Repeat("x", j+1)
	}
	eaWrite(t, src, files)
	var repo *xsbackup.Repo
	inCallback := make(chan struct{})
	var once sync.Once
	var err error
	repo, err = xsbackup.OpenLocal(context.Background(), t.TempDir(), xsbackup.Options{Reserve: -1, Progress: func(p xsbackup.Progress) {
		once.Do(func() {
			close(inCallback)
			time.Sleep(200 * time.Millisecond) // Close is waiting by now
		})
		repo.Snapshots(context.Background())
	}})
	if err != nil {
		t.Fatal(err)
	}
	backupDone := make(chan error, 1)
	go func() { _, err := repo.Backup(context.Background(), src); backupDone <- err }()
	<-inCallback
	closeDone := make(chan error, 1)
	go func() { closeDone <- repo.Close() }()
	select {
	case <-backupDone:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: Backup (whose Progress calls Snapshots) and Close both hang")
	}
	<-closeDone
}
