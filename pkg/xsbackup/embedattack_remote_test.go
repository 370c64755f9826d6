package xsbackup_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// eaDaemon is startSchoolServer, keeping the daemon (for staff actions).
func eaDaemon(t *testing.T) *server.Daemon { return eaDaemonWith(t, nil) }

// eaDaemonWith is eaDaemon with edit applied to the configuration first.
func eaDaemonWith(t *testing.T, edit func(*server.Config)) *server.Daemon {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.RestorePage.Listen = "127.0.0.1:0", t.TempDir(), "", ""
	cfg.Reserve = 0
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready:
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// eaServer starts a school server and registers a laptop with it; stop
// may be called more than once.
func eaServer(t *testing.T, serial string) (state string, stop func(), addr string) {
	t.Helper()
	addr, s := startSchoolServer(t.TempDir())
	var once sync.Once
	stop = func() { once.Do(s) }
	t.Cleanup(stop)
	state = t.TempDir()
	if _, err := xsbackup.Register(context.Background(), state, xsbackup.RegisterOptions{Server: addr, Serial: serial}); err != nil {
		t.Fatal(err)
	}
	return state, stop, addr
}

func eaDial(t *testing.T, state string) *xsbackup.Repo {
	t.Helper()
	repo, err := xsbackup.Dial(context.Background(), state, xsbackup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return repo
}

// The server goes away: "those calls fail" (promptly, no hang), and a
// Backup is "skipped: the server did not answer", i.e. ErrBusy.
func TestEmbedAttackRemoteServerGone(t *testing.T) {
	state, stop, _ := eaServer(t, "SHC0000EA1")
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": "A"})
	repo := eaDial(t, state)
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	type r struct {
		what string
		err  error
	}
	res := make(chan r, 4)
	go func() { _, err := repo.Snapshots(context.Background()); res <- r{"Snapshots", err} }()
	go func() { _, err := repo.Backup(context.Background(), src); res <- r{"Backup", err} }()
	go func() { res <- r{"Restore", repo.Restore(context.Background(), sn, t.TempDir())} }()
	go func() { _, err := repo.Open(context.Background(), sn); res <- r{"Open", err} }()
	timeout := time.After(20 * time.Second)
	for range 4 {
		select {
		case x := <-res:
			if x.err == nil {
				t.Errorf("%s with the server gone succeeded", x.what)
			}
			if x.what == "Backup" && !errors.Is(x.err, xsbackup.ErrBusy) {
				t.Errorf("Backup with the server gone: %v, want ErrBusy (documented: skipped, the server did not answer)", x.err)
			}
		case <-timeout:
			t.Fatal("a call hangs with the server gone")
		}
	}
	done := make(chan struct{})
	go func() { repo.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs with the server gone")
	}
}

// Backup with a cancelled ctx on a server Repo reports the cancellation
// (errors.Is context.Canceled), as on a local one, and commits nothing.
func TestEmbedAttackRemoteBackupCancelled(t *testing.T) {
	state, _, _ := eaServer(t, "SHC0000EA2")
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": "A"})
	repo := eaDial(t, state)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := repo.Backup(ctx, src)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with a cancelled ctx: %v, want an error matching context.Canceled", err)
	}
	if sns, _ := repo.Snapshots(context.Background()); len(sns) != 0 {
		t.Errorf("cancelled backup committed %v", sns)
	}
	// Restore and Open too.
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Restore(ctx, sn, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Errorf("Restore with a cancelled ctx: %v", err)
	}
}

// Snapshot file systems from a server Repo: reads after Close fail with
// ErrClosed, also those the tree cache could answer.
func TestEmbedAttackRemoteFSAfterClose(t *testing.T) {
	state, _, _ := eaServer(t, "SHC0000EA3")
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"sub/a": "A", "b": "B"})
	repo, err := xsbackup.Dial(context.Background(), state, xsbackup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := repo.Open(context.Background(), sn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadDir(fsys, "sub"); err != nil {
		t.Fatal(err)
	}
	repo.Close()
	if _, err := fs.ReadDir(fsys, "sub"); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("ReadDir after Close: %v, want ErrClosed", err)
	}
	if _, err := fs.ReadFile(fsys, "b"); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("ReadFile after Close: %v, want ErrClosed", err)
	}
}

// Two Repos dialled on one state directory back up at once: "another
// backup of this laptop is running" is ErrBusy; nothing else fails (a
// server refusal for "busy" must match ErrBusy). Reads and restores run
// alongside (with -race).
func TestEmbedAttackRemoteConcurrent(t *testing.T) {
	state, _, _ := eaServer(t, "SHC0000EA4")
	src := t.TempDir()
	files := map[string]string{}
	for j := range 60 {
		files[fmt.Sprintf("d%d/f%d", j%5, j)] = strings.Repeat(fmt.Sprintf("%d ", j), 3000)
	}
	eaWrite(t, src, files)
	a := eaDial(t, state)
	b := eaDial(t, state)
	first, err := a.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 6 {
		repo := a
		if i%2 == 1 {
			repo = b
		}
		wg.Go(func() {
			for k := range 3 {
				switch (i + k) % 3 {
				case 0:
					eaWrite(t, src, map[string]string{fmt.Sprintf("new%d-%d", i, k): "n"})
					if _, err := repo.Backup(context.Background(), src); err != nil && !errors.Is(err, xsbackup.ErrBusy) {
						errs <- fmt.Errorf("Backup: %w", err)
					}
				case 1:
					if err := repo.Restore(context.Background(), first, t.TempDir(), "d1"); err != nil && !errors.Is(err, xsbackup.ErrBusy) {
						errs <- fmt.Errorf("Restore: %w", err)
					}
				case 2:
					fsys, err := repo.Open(context.Background(), first)
					if err == nil {
						_, err = fs.ReadFile(fsys, "d2/f7")
					}
					if err != nil {
						errs <- fmt.Errorf("Open/read: %w", err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	out := t.TempDir()
	if err := a.Restore(context.Background(), first, out); err != nil {
		t.Fatal(err)
	}
}

// One Repo used from 5 goroutines at once, each restoring ("A Repo is safe
// for concurrent use"): each Restore succeeds, or fails with an error an
// embedder can branch on (ErrBusy), never an unclassified "busy".
func TestEmbedAttackRemoteConcurrentRestores(t *testing.T) {
	state, _, _ := eaServer(t, "SHC0000EA7")
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": strings.Repeat("a", 1<<20), "b": "b"})
	repo := eaDial(t, state)
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() { errs <- repo.Restore(context.Background(), sn, t.TempDir()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, xsbackup.ErrBusy) {
			t.Errorf("concurrent Restore on one Repo: %v (not ErrBusy, not nil)", err)
		}
	}
}

// A reflashed laptop (registered again as the same serial, from a new
// state directory) backs up an empty folder: documented as ErrBusy ("an
// empty folder waits for a reflashed laptop's restore"); the old backup
// must stay the latest.
func TestEmbedAttackRemoteReflashEmptyFolder(t *testing.T) {
	d := eaDaemon(t)
	addr := d.Addr.String()
	ctx := context.Background()
	state := t.TempDir()
	if _, err := xsbackup.Register(ctx, state, xsbackup.RegisterOptions{Server: addr, Serial: "SHC0000EA5"}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"work/essay.txt": "a child's essay"})
	old, err := xsbackup.Dial(ctx, state, xsbackup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before, err := old.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	// The laptop is reflashed: a new key, the same serial; staff approve
	// the key change, keeping the history.
	state2 := t.TempDir()
	reg, err := xsbackup.Register(ctx, state2, xsbackup.RegisterOptions{Server: addr, Serial: "SHC0000EA5"})
	if err != nil {
		t.Fatal(err)
	}
	if !reg.Approved {
		u, err := d.Store.UserBySerial("SHC0000EA5")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Store.ApproveKey(ctx, u.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := xsbackup.Dial(ctx, state2, xsbackup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	sns, err := repo.Snapshots(ctx)
	if err != nil || len(sns) != 1 || sns[0].ID != before.ID {
		t.Fatalf("after the reflash the laptop sees %v %v, want its old backup", sns, err)
	}
	sn, err := repo.Backup(ctx, t.TempDir()) // the new, empty Journal
	if !errors.Is(err, xsbackup.ErrBusy) {
		t.Errorf("Backup of an empty folder after a reflash: snapshot %+v, err %v; want ErrBusy (an empty folder waits for a reflashed laptop's restore)", sn, err)
	}
	sns, _ = repo.Snapshots(ctx)
	if len(sns) == 0 || sns[len(sns)-1].ID != before.ID {
		t.Errorf("latest snapshot is now %+v, not the one from before the reflash (%s)", sns[len(sns)-1], before.ID)
	}
}

// Errors a server Repo returns must not tell the embedder to run a program
// or a flag (the library cannot know it was called from one).
func TestEmbedAttackRemoteErrorsNameNoProgram(t *testing.T) {
	advice := regexp.MustCompile(`\b(xs-admin|xo-backup|xs-backupd) [a-z]|(^|[\s(])--[a-z][a-z-]+`)
	state, stop, _ := eaServer(t, "SHC0000EA6")
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": "A"})
	repo := eaDial(t, state)
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	var got []error
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "a"), []byte("mine"), 0o644)
	got = append(got, repo.Restore(context.Background(), sn, target))
	got = append(got, repo.Restore(context.Background(), sn, t.TempDir(), "nope"))
	_, err = repo.Open(context.Background(), xsbackup.Snapshot{ID: "x"})
	got = append(got, err)
	stop()
	var mu sync.Mutex
	var wg sync.WaitGroup
	add := func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() }
	wg.Go(func() { _, err := repo.Backup(context.Background(), src); add(err) })
	wg.Go(func() { add(repo.Restore(context.Background(), sn, t.TempDir())) })
	wg.Go(func() { _, err := xsbackup.Dial(context.Background(), state, xsbackup.Options{}); add(err) })
	wg.Wait()
	for _, err := range got {
		if err == nil {
			continue
		}
		if m := advice.FindString(err.Error()); m != "" {
			t.Errorf("error names a program or flag (%q): %v", m, err)
		}
	}
}
