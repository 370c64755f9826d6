package xsbackup_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// Backup of what is not a directory is a clear error and commits nothing.
// "" is not a directory either: it must not silently back up the current
// working directory.
func TestEmbedAttackBackupNotADir(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	os.Symlink(file, filepath.Join(tmp, "link-to-file"))
	os.Symlink(filepath.Join(tmp, "nowhere"), filepath.Join(tmp, "dangling"))
	syscall.Mkfifo(filepath.Join(tmp, "fifo"), 0o644)
	repo := eaOpen(t, "")
	defer repo.Close()
	for _, dir := range []string{file, filepath.Join(tmp, "link-to-file"), filepath.Join(tmp, "dangling"), filepath.Join(tmp, "nope"), filepath.Join(tmp, "fifo"), "", "/dev/null", file + "/"} {
		done := make(chan error, 1)
		go func() { _, err := repo.Backup(ctx, dir); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("Backup(%q) succeeded", dir)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Backup(%q) hangs", dir)
		}
	}
	if sns, err := repo.Snapshots(ctx); err != nil || len(sns) != 0 {
		t.Fatalf("failed backups left snapshots: %v %v", sns, err)
	}
}

// A symlink to a directory is backed up as that directory.
func TestEmbedAttackBackupSymlinkToDir(t *testing.T) {
	ctx := context.Background()
	real := t.TempDir()
	eaWrite(t, real, map[string]string{"a": "A", "s/b": "B"})
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(real, link)
	repo := eaOpen(t, "")
	defer repo.Close()
	sn, err := repo.Backup(ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Files != 2 {
		t.Fatalf("%d files", sn.Files)
	}
	out := t.TempDir()
	if err := repo.Restore(ctx, sn, out); err != nil {
		t.Fatal(err)
	}
	eaSame(t, real, out, nil)
}

// The store lies inside the backed-up directory, or is the directory: the
// backup ends (no chasing of its own growing pack), the store stays
// consistent, and the user's files restore byte for byte.
func TestEmbedAttackBackupStoreInsideSource(t *testing.T) {
	for _, self := range []bool{false, true} {
		t.Run(fmt.Sprint("self=", self), func(t *testing.T) {
			src := t.TempDir()
			eaWrite(t, src, map[string]string{"doc.txt": strings.Repeat("document ", 5000), "d/e.txt": "e"})
			storeDir := filepath.Join(src, "store")
			repo := eaOpen(t, storeDir)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			dir := src
			if self {
				dir = storeDir
			}
			var sns []xsbackup.Snapshot
			for i := range 3 {
				start := time.Now()
				sn, err := repo.Backup(ctx, dir)
				if err != nil {
					t.Fatalf("backup %d of a tree holding the store: %v", i, err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("backup %d took %v", i, d)
				}
				t.Logf("backup %d: %v, %d files %d bytes", i, time.Since(start), sn.Files, sn.Size)
				sns = append(sns, sn)
			}
			if !self {
				for _, sn := range sns {
					out := t.TempDir()
					if err := repo.Restore(context.Background(), sn, out, "doc.txt", "d"); err != nil {
						t.Fatal(err)
					}
					eaSame(t, src, out, func(rel string, isDir bool) bool { return rel == "store" })
				}
			}
			for _, sn := range sns {
				if err := repo.Restore(context.Background(), sn, t.TempDir()); err != nil {
					t.Fatalf("restore %s: %v", sn.ID, err)
				}
			}
			repo.Close()
			eaCheckStore(t, storeDir)
		})
	}
}

// Fifos, sockets, device files, sparse files, hard links and empty dirs in
// the tree: no hang, regular files byte for byte, specials left out.
func TestEmbedAttackBackupSpecialFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"plain": "p", "dir/x": "x"})
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("unix", filepath.Join(src, "sock")); err == nil {
		defer l.Close()
	}
	if os.Getuid() == 0 {
		syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, int(1<<8|3))
		syscall.Mknod(filepath.Join(src, "zero"), syscall.S_IFCHR|0o666, int(1<<8|5))
	}
	sp, _ := os.Create(filepath.Join(src, "sparse"))
	sp.Truncate(64 << 20)
	sp.WriteAt([]byte("middle"), 32<<20)
	sp.Close()
	os.Link(filepath.Join(src, "plain"), filepath.Join(src, "hardlink"))
	os.Mkdir(filepath.Join(src, "empty"), 0o700)
	os.Chmod(filepath.Join(src, "dir"), 0o500)
	defer os.Chmod(filepath.Join(src, "dir"), 0o755)
	repo := eaOpen(t, "")
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Files != 4 {
		t.Errorf("Files = %d, want 4 (plain, dir/x, sparse, hardlink)", sn.Files)
	}
	out := t.TempDir()
	if err := repo.Restore(ctx, sn, out); err != nil {
		t.Fatal(err)
	}
	special := func(rel string, isDir bool) bool {
		fi, err := os.Lstat(filepath.Join(src, rel))
		return err == nil && fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice) != 0
	}
	eaSame(t, src, out, special)
}

// A file that changes size while it is backed up, again and again: the
// backup finishes, the store is consistent, and once the writer stops the
// next backup holds the file's final content (the cache did not keep a
// torn version).
func TestEmbedAttackBackupFileChanging(t *testing.T) {
	src := t.TempDir()
	storeDir := t.TempDir()
	p := filepath.Join(src, "growing")
	os.WriteFile(p, make([]byte, 1<<20), 0o644)
	eaWrite(t, src, map[string]string{"still": "s"})
	repo := eaOpen(t, storeDir)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				continue
			}
			for j := range buf {
				buf[j] = byte(i + j)
			}
			if i%3 == 0 {
				f.Truncate(int64(i%50) << 14)
			} else {
				f.WriteAt(buf, int64(i%40)<<15)
			}
			f.Close()
		}
	})
	ctx := context.Background()
	for range 5 {
		if _, err := repo.Backup(ctx, src); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("backup while a file changes: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	final, _ := os.ReadFile(p)
	time.Sleep(50 * time.Millisecond)
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := repo.Restore(ctx, sn, out, "growing"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "growing"))
	if string(got) != string(final) {
		t.Fatalf("after the writer stopped, the backup holds %d bytes, the file has %d (content equal: %v)", len(got), len(final), string(got) == string(final))
	}
	repo.Close()
	eaCheckStore(t, storeDir)
}

// Hostile Options: a Reserve no disk can meet fails cleanly (no panic, no
// snapshot, a store that still works with a sane Reserve); negative
// Reserves turn the check off; odd Hosts are stored and listed after a
// reopen; an Exclude that leaves out everything gives an empty snapshot.
func TestEmbedAttackOptionsHostile(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": strings.Repeat("a", 1<<16), "d/b": "b"})
	for _, reserve := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 62} {
		dir := t.TempDir()
		repo, err := xsbackup.OpenLocal(ctx, dir, xsbackup.Options{Reserve: reserve})
		if err != nil {
			continue // refusing at open is fine
		}
		_, err = repo.Backup(ctx, src)
		if err == nil {
			t.Errorf("Reserve %d: backup succeeded on a disk that cannot have that much free", reserve)
		}
		if sns, _ := repo.Snapshots(ctx); len(sns) != 0 {
			t.Errorf("Reserve %d: %d snapshots after a refused backup", reserve, len(sns))
		}
		repo.Close()
		eaCheckStore(t, dir)
		repo2 := eaOpen(t, dir)
		if _, err := repo2.Backup(ctx, src); err != nil {
			t.Errorf("Reserve %d: next backup with Reserve -1: %v", reserve, err)
		}
		repo2.Close()
	}
	for _, reserve := range []int64{-1, math.MinInt64} {
		repo, err := xsbackup.OpenLocal(ctx, t.TempDir(), xsbackup.Options{Reserve: reserve})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Backup(ctx, src); err != nil {
			t.Errorf("Reserve %d (check off): %v", reserve, err)
		}
		repo.Close()
	}
	// Hosts.
	for _, host := range []string{"a\nb", "x\x00y", strings.Repeat("h", 1<<20), "../../etc", "ünï"} {
		dir := t.TempDir()
		repo, err := xsbackup.OpenLocal(ctx, dir, xsbackup.Options{Reserve: -1, Host: host})
		if err != nil {
			t.Fatal(err)
		}
		_, berr := repo.Backup(ctx, src)
		repo.Close()
		repo = eaOpen(t, dir)
		sns, err := repo.Snapshots(ctx)
		if berr == nil && (err != nil || len(sns) != 1) {
			t.Errorf("Host %.20q: after reopening, snapshots %v %v", host, sns, err)
		}
		if berr == nil && len(sns) == 1 {
			if err := repo.Restore(ctx, sns[0], t.TempDir()); err != nil {
				t.Errorf("Host %.20q: restore: %v", host, err)
			}
		}
		repo.Close()
		eaCheckStore(t, dir)
	}
	// Exclude everything; Exclude sees clean relative slash paths.
	var seen []string
	var mu sync.Mutex
	repo, err := xsbackup.OpenLocal(ctx, t.TempDir(), xsbackup.Options{Reserve: -1, Exclude: func(rel string, isDir bool) bool {
		mu.Lock()
		seen = append(seen, rel)
		mu.Unlock()
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil || sn.Files != 0 {
		t.Fatalf("exclude all: %+v %v", sn, err)
	}
	for _, r := range seen {
		if !fs.ValidPath(r) || r == "." || strings.HasPrefix(r, src) {
			t.Errorf("Exclude was asked about %q", r)
		}
	}
	out := filepath.Join(t.TempDir(), "o")
	if err := repo.Restore(ctx, sn, out); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("empty snapshot restored %d entries", len(ents))
	}
}

// Backup with an already-cancelled ctx fails with an error matching
// context.Canceled and commits nothing.
func TestEmbedAttackBackupCancelledBefore(t *testing.T) {
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a": "A"})
	repo := eaOpen(t, "")
	defer repo.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := repo.Backup(ctx, src)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with a cancelled ctx: %v, want context.Canceled", err)
	}
	if sns, _ := repo.Snapshots(context.Background()); len(sns) != 0 {
		t.Errorf("cancelled backup committed %v", sns)
	}
}

// Cancel Backups at many points (after N files, after a delay); between
// them change the source. Then: the store checks clean, the next Backup
// works, and every snapshot that was committed restores byte for byte as
// the source was at that time.
func TestEmbedAttackBackupCancelRandom(t *testing.T) {
	src := t.TempDir()
	storeDir := t.TempDir()
	files := map[string]string{}
	for i := range 120 {
		files[fmt.Sprintf("d%d/f%03d", i%6, i)] = strings.Repeat(fmt.Sprintf("v0-%d ", i), 100+i*50)
	}
	big := make([]byte, 6<<20)
	for i := range big {
		big[i] = byte(i ^ i>>11)
	}
	files["big"] = string(big)
	eaWrite(t, src, files)
	var cancelAt int64 = -1
	var mu sync.Mutex
	var cancel context.CancelFunc
	repo, err := xsbackup.OpenLocal(context.Background(), storeDir, xsbackup.Options{Reserve: -1, Progress: func(p xsbackup.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if cancelAt >= 0 && p.Files >= cancelAt && cancel != nil {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	type ok struct {
		sn   xsbackup.Snapshot
		tree map[string]string
	}
	var good []ok
	deadline := time.Now().Add(6 * time.Second)
	for round := 0; round < 25 && time.Now().Before(deadline); round++ {
		// change a few files
		for j := range 5 {
			i := (round*7 + j*13) % 120
			eaWrite(t, src, map[string]string{fmt.Sprintf("d%d/f%03d", i%6, i): strings.Repeat(fmt.Sprintf("v%d-%d ", round+1, i), 100+i*40+round)})
		}
		tree := eaSnapshotTree(t, src)
		var ctx context.Context
		mu.Lock()
		if round%2 == 0 {
			ctx, cancel = context.WithCancel(context.Background())
			cancelAt = int64(round * 5 % 121)
		} else {
			ctx, cancel = context.WithTimeout(context.Background(), time.Duration(round)*2*time.Millisecond)
			cancelAt = -1
		}
		c := cancel
		mu.Unlock()
		sn, err := repo.Backup(ctx, src)
		c()
		if err == nil {
			good = append(good, ok{sn, tree})
		} else if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: cancelled backup: %v (not a ctx error)", round, err)
		}
	}
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatalf("backup after cancelled ones: %v", err)
	}
	good = append(good, ok{sn, eaSnapshotTree(t, src)})
	t.Logf("%d snapshots committed", len(good))
	for _, g := range good {
		out := t.TempDir()
		if err := repo.Restore(context.Background(), g.sn, out); err != nil {
			t.Fatalf("restore %s: %v", g.sn.ID, err)
		}
		if d := eaDiff(g.tree, eaSnapshotTree(t, out)); d != "" {
			t.Fatalf("snapshot %s restores differently from the source at its time: %.300s", g.sn.ID, d)
		}
	}
	repo.Close()
	eaCheckStore(t, storeDir)
}
