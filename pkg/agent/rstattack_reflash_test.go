package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// rstReflash backs up a laptop's Journal (opts), then "reflashes" it: a new
// state directory registered for the same serial with a claim code, and a
// new, empty Journal as Sugar writes it at its first start. It returns the
// daemon, the old Journal, the new state and the new Journal directory.
func rstReflash(t *testing.T, serial string, opts journalgen.Options) (*server.Daemon, string, State, string) {
	t.Helper()
	ctx := context.Background()
	d := attackDaemonD(t)
	old := State{Dir: t.TempDir()}
	src := t.TempDir()
	if _, err := journalgen.Generate(src, opts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := Register(ctx, old, RegisterOptions{Server: d.Addr.String(), Serial: serial}); err != nil {
		t.Fatal(err)
	}
	if res, err := Run(ctx, old, RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}); err != nil || res.Outcome != Done {
		t.Fatalf("the backup before the reflash: %+v %v", res, err)
	}
	u, err := d.Store.UserBySerial(serial)
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := d.Store.IssueClaim(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fresh := State{Dir: t.TempDir()}
	reg, err := Register(ctx, fresh, RegisterOptions{Server: d.Addr.String(), Serial: serial, Claim: code})
	if err != nil || !reg.Continued {
		t.Fatalf("register --claim: %+v %v", reg, err)
	}
	if !fresh.RestorePending() {
		t.Fatal("a reflashed laptop does not wait for restore --all")
	}
	jr := t.TempDir()
	if err := os.WriteFile(filepath.Join(jr, "version"), []byte("6"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d, src, fresh, jr
}

// rstTimer is the laptop's timer firing (no --force).
func rstTimer(t *testing.T, st State, jr string) *RunResult {
	t.Helper()
	res, err := Run(context.Background(), st, RunOptions{Source: jr, PowerSupplyDir: t.TempDir(), MaxSlotWait: 5 * time.Second})
	if err != nil {
		t.Logf("timer run: %v", err)
		return nil
	}
	t.Logf("timer run: %s %s %s", res.Outcome, res.Skip, res.Reason)
	return res
}

// rstCancelledRestoreAll starts restore --all into jr and cancels it after
// `after` files were written.
func rstCancelledRestoreAll(t *testing.T, st State, jr string, after int64) (written map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	written = map[string]bool{}
	_, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Progress: func(p restore.Progress) {
		mu.Lock()
		defer mu.Unlock()
		written[p.Path] = true
		if p.Files >= after {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("the cancelled restore --all succeeded: cancel it earlier")
	}
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "stream") {
		t.Errorf("a cancelled restore says %q, not that it was interrupted", err)
	}
	t.Logf("restore --all cancelled after %d files: %v", len(written), err)
	return written
}

// TestRstAttackNewEntryBeforeRestoreAllLosesTheJournal: the child's
// reflashed XO is handed back; before the teacher gets to it the child
// draws one picture. The timer backs up that Journal (README: "a Journal
// with new entries is backed up"), which becomes the latest backup. Then
// the teacher runs restore --all (with --force, as the refusal advises,
// since the Journal now holds an entry): the child's whole Journal from
// before the reflash must come back, and the new drawing must be kept.
func TestRstAttackNewEntryBeforeRestoreAllLosesTheJournal(t *testing.T) {
	ctx := context.Background()
	_, src, st, jr := rstReflash(t, "RST-NEWENTRY", journalgen.Small(3))
	drawing := journalgen.Entry{UID: "ff000000-0000-4000-8000-000000000001", Title: "My new drawing", Activity: "org.laptop.Oficina", Mime: "image/png", Data: []byte("a drawing made after the reflash")}
	if err := journalgen.WriteEntry(jr, drawing, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if res := rstTimer(t, st, jr); res == nil || res.Outcome != Done {
		t.Fatalf("README: a reflashed laptop's Journal with a new entry is backed up: %+v", res)
	}
	if _, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore --all into a Journal with an entry: %v", err)
	}
	res, sn, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Overwrite: true})
	if err != nil {
		t.Fatalf("restore --all --force: %v", err)
	}
	t.Logf("restore --all --force restored %d files from %s", res.Files, sn.ID)
	if _, err := os.Stat(filepath.Join(jr, drawing.UID[:2], drawing.UID, "data")); err != nil {
		t.Errorf("the drawing made after the reflash is gone: %v", err)
	}
	// Every file of the Journal from before the reflash is back.
	var missing []string
	filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if backup.JournalExclude(filepath.ToSlash(rel), false) {
			return nil
		}
		if _, err := os.Stat(filepath.Join(jr, rel)); err != nil {
			missing = append(missing, rel)
		}
		return nil
	})
	if len(missing) > 0 {
		t.Fatalf("restore --all --force after the child's first new entry restored the latest backup (%s, only the new entry) and reported success: %d files of the Journal from before the reflash are not back, e.g. %s", sn.ID, len(missing), missing[0])
	}
}

// TestRstAttackCancelledRestoreAllThenTimer: restore --all is cut off half
// way (the lid closed, the wifi lost, Ctrl-C) and the timer fires before it
// is run again. The half-restored Journal is neither an empty Journal nor
// the child's new work: backing it up makes it the latest backup, the one
// restore --all takes. Running restore --all again (with --force, as the
// refusal advises) must bring the whole Journal back.
func TestRstAttackCancelledRestoreAllThenTimer(t *testing.T) {
	ctx := context.Background()
	_, src, st, jr := rstReflash(t, "RST-CANCEL", journalgen.Small(4))
	rstCancelledRestoreAll(t, st, jr, 5)
	if !st.RestorePending() {
		t.Error("a cancelled restore --all ended the wait for a restore")
	}
	timer := rstTimer(t, st, jr)
	res, sn, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Overwrite: true})
	if err != nil {
		t.Fatalf("restore --all --force after the cancelled one: %v", err)
	}
	t.Logf("second restore --all: %d files from %s", res.Files, sn.ID)
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatalf("after a cancelled restore --all and a timer run (%s %s), restore --all --force did not bring the Journal back (it restored %s, the half Journal the timer backed up): %v",
			timer.Outcome, timer.Skip, sn.ID, err)
	}
}

// TestRstAttackTimerDuringRestoreAll: the timer fires every 5 minutes and a
// whole Journal over the school's wifi takes longer. A run while restore
// --all is writing must not back up the half-written Journal (it would be
// the latest backup, and mark the day done, until tomorrow).
func TestRstAttackTimerDuringRestoreAll(t *testing.T) {
	ctx := context.Background()
	_, src, st, jr := rstReflash(t, "RST-DURING", journalgen.Small(5))
	var once sync.Once
	var mid *RunResult
	res, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Progress: func(p restore.Progress) {
		if p.Files >= 5 {
			once.Do(func() { mid = rstTimer(t, st, jr) })
		}
	}})
	if err != nil {
		t.Fatalf("restore --all: %v", err)
	}
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatalf("restore --all: %v", err)
	}
	t.Logf("restored %d files", res.Files)
	if mid != nil && mid.Outcome == Done {
		sns, _ := Snapshots(ctx, st)
		t.Fatalf("the timer's run in the middle of restore --all backed up the half-restored Journal (%d files of it): backup %s is now the latest (%d backups) and the day counts as done",
			mid.Backup.Files, mid.Backup.Snapshot, len(sns))
	}
}

// TestRstAttackRestoreAllAgainRedownloadsEverything: after restore --all was
// cut off (here after most of the files), running it again (--force, as
// advised) should finish the job: the files already restored whole (same
// size, time and content as in the backup) need not be fetched and written
// again on the school's shared wifi.
func TestRstAttackRestoreAllAgainRedownloadsEverything(t *testing.T) {

	ctx := context.Background()
	_, src, st, jr := rstReflash(t, "RST-AGAIN", journalgen.Small(6))
	written := rstCancelledRestoreAll(t, st, jr, 30)
	inode := map[string]uint64{}
	for p := range written {
		fi, err := os.Lstat(filepath.Join(jr, p))
		if err != nil {
			t.Fatalf("%s reported restored: %v", p, err)
		}
		inode[p] = fi.Sys().(*syscall.Stat_t).Ino
	}
	if _, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Overwrite: true}); err != nil {
		t.Fatalf("restore --all again: %v", err)
	}
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}
	again := 0
	for p, ino := range inode {
		fi, err := os.Lstat(filepath.Join(jr, p))
		if err == nil && fi.Sys().(*syscall.Stat_t).Ino != ino {
			again++
		}
	}
	if again > 0 {
		t.Fatalf("restore --all run again after an interruption fetched and wrote again %d of the %d files the first run had already restored whole", again, len(inode))
	}
}

// TestRstAttackNewEntryDuringRestoreAllIsKept: Sugar writes an entry (the
// child opened an activity) while restore --all runs: the restore must not
// remove or replace it, and it is backed up afterwards.
func TestRstAttackNewEntryDuringRestoreAllIsKept(t *testing.T) {
	ctx := context.Background()
	_, src, st, jr := rstReflash(t, "RST-SUGAR", journalgen.Small(8))
	e := journalgen.Entry{UID: "ee000000-0000-4000-8000-000000000002", Title: "Written during the restore", Activity: "org.laptop.AbiWordActivity", Mime: "text/plain", Data: []byte("new work")}
	var once sync.Once
	if _, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Progress: func(p restore.Progress) {
		once.Do(func() {
			if err := journalgen.WriteEntry(jr, e, time.Now()); err != nil {
				t.Error(err)
			}
		})
	}}); err != nil {
		t.Fatalf("restore --all: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(jr, e.UID[:2], e.UID, "data"))
	if err != nil || string(got) != "new work" {
		t.Fatalf("the entry Sugar wrote during restore --all: %q %v", got, err)
	}
	// Apart from it, the Journal is the backup.
	os.RemoveAll(filepath.Join(jr, e.UID[:2]))
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}
	if st.RestorePending() {
		t.Fatal("restore --all did not end the wait")
	}
}

// rstTempFiles lists the restore's temporary files left under dir.
func rstTempFiles(dir string) []string {
	var left []string
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), ".xs-restore-") {
			left = append(left, p)
		}
		return nil
	})
	return left
}
