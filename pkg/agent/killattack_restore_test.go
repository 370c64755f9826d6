package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestKillAttackRestoreAllKilledAndRunAgain: after a reflash,
// `restore --all` (a real process) is SIGKILLed at 6 moments spread over
// the restore, each time run again as its refusal advises (--force,
// the Journal holds entries now); after the third kill the progress file
// also loses its last write (cut mid-line), and the timer's run fires once
// in between. The run that is not cut brings the Journal from before the
// reflash back byte for byte, leaves no temporary file of the restore in
// the Journal and none in the state directory, ends the wait for the
// restore, and the timer's next backup is that Journal.
func TestKillAttackRestoreAllKilledAndRunAgain(t *testing.T) {
	ctx := context.Background()
	o := journalgen.Small(4)
	o.Entries, o.MediaBytes = 30, 150<<10
	src, st, jr := kaReflash(t, "KILL-RESTORE", o)
	psu := t.TempDir()
	// How long a whole restore takes (into another directory).
	start := time.Now()
	if _, _, err := Restore(ctx, st, RestoreOptions{Target: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	t.Logf("a whole restore takes %v", full)
	env := func(force bool) []string {
		f := "0"
		if force {
			f = "1"
		}
		return []string{kaEnvState + "=" + st.Dir, kaEnvTarget + "=" + jr, kaEnvForce + "=" + f}
	}
	force := false
	for k := 1; k <= 6; k++ {
		t0 := time.Now()
		c := kaStart(t, "restore", env(force)...)
		delay := full/5 + time.Duration(k)*full/7
		finished, end := c.killAfter(delay)
		t.Logf("restore --all killed after %v (%v in all): finished=%v %q; %d temporary files in the Journal", delay, time.Since(t0).Round(time.Millisecond), finished, end, len(rstTempFiles(jr)))
		if finished && end != "end restored" {
			t.Fatalf("restore --all (force=%v) failed: %s", force, end)
		}
		if finished {
			break // it finished before the kill: the uncut run below is refused
		}
		if empty, _ := emptyJournal(jr); !empty && !force {
			// As the refusal says: run again with --force.
			if _, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr}); !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("restore --all into the half restored Journal without --force: %v", err)
			}
			force = true
		}
		switch k {
		case 2:
			// The timer fires between two attempts.
			res, err := Run(ctx, st, RunOptions{Source: jr, PowerSupplyDir: psu, MaxSlotWait: 5 * time.Second})
			if err != nil {
				t.Fatalf("the timer's run between two attempts: %v", err)
			}
			t.Logf("the timer's run between two attempts: %s %s", res.Outcome, res.Skip)
		case 3:
			if b, err := os.ReadFile(st.path(restoreProgress)); err == nil && len(b) > 10 {
				os.WriteFile(st.path(restoreProgress), b[:len(b)*2/3], 0o600)
			}
		}
	}
	// As advised after a cut-off restore --all: run it again (the timer's
	// backup of the half Journal ended the wait, not the pin).
	if st.RestorePending() || st.restoreFromID() != "" {
		t0 := time.Now()
		defer func() { t.Logf("the uncut restore --all took %v", time.Since(t0)) }()
		if _, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Overwrite: force}); err != nil {
			t.Fatalf("restore --all run again, uncut: %v", err)
		}
	}
	if left := rstTempFiles(jr); len(left) > 0 {
		t.Errorf("after the uncut restore --all the Journal still holds %d temporary files the killed runs left (the next backup takes them): %q", len(left), left)
	}
	for _, own := range []string{"index", "index_updated", "ds_clean"} {
		os.RemoveAll(filepath.Join(jr, own))
	}
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Errorf("restore --all, killed 6 times and run again, did not bring the Journal back: %v", err)
	}
	// Nothing in the Journal that the backup did not hold (dircmp's
	// second walk does not exclude: src keeps Sugar's index).
	filepath.WalkDir(jr, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(jr, p)
		if err != nil || rel == "." {
			return err
		}
		if backup.JournalExclude(filepath.ToSlash(rel), d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if _, err := os.Lstat(filepath.Join(src, rel)); err != nil {
			t.Errorf("after restore --all, killed 6 times and run again, the Journal holds %s, which the backup did not", rel)
		}
		return nil
	})
	if st.RestorePending() || st.restoreFromID() != "" {
		t.Errorf("the uncut restore --all did not end the wait (pending %v, pinned %q)", st.RestorePending(), st.restoreFromID())
	}
	if left := kaStrays(t, st); len(left) > 0 {
		t.Errorf("the state directory holds %q after the restore", left)
	}
	res, err := Run(ctx, st, RunOptions{Source: jr, Force: true, PowerSupplyDir: psu})
	if err != nil || res.Outcome != Done {
		t.Fatalf("the backup after the restore: %+v %v", res, err)
	}
	kaRestoreEquals(t, st, res.Backup.Snapshot, src, "the backup after the restore")
}

// kaReflash is rstReflash with kaDaemon: a laptop's Journal (opts) backed
// up, then a new state directory registered for the serial with a claim
// code and a new, empty Journal. It returns the old Journal, the new state
// and the new Journal.
func kaReflash(t *testing.T, serial string, opts journalgen.Options) (string, State, string) {
	t.Helper()
	ctx := context.Background()
	d := kaDaemon(t)
	old := State{Dir: t.TempDir()}
	src := t.TempDir()
	if _, err := journalgen.Generate(src, opts); err != nil {
		t.Fatal(err)
	}
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
	if reg, err := Register(ctx, fresh, RegisterOptions{Server: d.Addr.String(), Serial: serial, Claim: code}); err != nil || !reg.Continued {
		t.Fatalf("register --claim: %+v %v", reg, err)
	}
	jr := t.TempDir()
	if err := os.WriteFile(filepath.Join(jr, "version"), []byte("6"), 0o644); err != nil {
		t.Fatal(err)
	}
	return src, fresh, jr
}
