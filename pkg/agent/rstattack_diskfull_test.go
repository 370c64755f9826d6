package agent

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestRstAttackLaptopDiskFillsDuringRestoreAll: the XO's flash fills half
// way through restore --all (a 1 MiB tmpfs for a bigger Journal). The error
// says the disk is full; no file is left truncated under its real name and
// no temporary file is left behind; the laptop still waits for the restore;
// once space is freed, restore --all --force brings the whole Journal back.
func TestRstAttackLaptopDiskFillsDuringRestoreAll(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	o := journalgen.Small(9)
	o.Entries = 30
	_, src, st, _ := rstReflash(t, "RST-FULL", o)
	jr := filepath.Join(mnt, "datastore")
	os.MkdirAll(jr, 0o755)
	os.WriteFile(filepath.Join(jr, "version"), []byte("6"), 0o644)

	res, _, err := Restore(context.Background(), st, RestoreOptions{All: true, Target: jr})
	if err == nil {
		t.Skip("the Journal fitted on the tmpfs")
	}
	t.Logf("restore --all on a full disk: %v (%d files written)", err, res.Files)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("the error does not say the laptop's disk is full: %v", err)
	}
	if left := rstTempFiles(jr); len(left) > 0 {
		t.Errorf("temporary files left on the full disk: %q", left)
	}
	var short []string
	halfEntries, emptyEntries := 0, 0
	filepath.WalkDir(jr, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(jr, p)
		if de.IsDir() {
			if strings.Count(rel, string(filepath.Separator)) == 1 { // an entry
				_, derr := os.Stat(filepath.Join(p, "data"))
				metas, _ := os.ReadDir(filepath.Join(p, "metadata"))
				srcMetas, _ := os.ReadDir(filepath.Join(src, rel, "metadata"))
				switch {
				case derr != nil && len(metas) == 0:
					emptyEntries++
				case derr != nil || len(metas) != len(srcMetas):
					halfEntries++
				}
			}
			return nil
		}
		if rel == "version" {
			return nil
		}
		got, _ := os.ReadFile(p)
		want, werr := os.ReadFile(filepath.Join(src, rel))
		if werr != nil || !bytes.Equal(got, want) {
			short = append(short, rel)
		}
		return nil
	})
	if len(short) > 0 {
		t.Errorf("files under their real name that are not the backup's (truncated?): %q", short)
	}
	t.Logf("after the full disk: %d entry directories with nothing in them, %d half-written entries", emptyEntries, halfEntries)
	if !st.RestorePending() {
		t.Error("the failed restore --all ended the wait for a restore")
	}
	// Space freed (the child deleted a big video elsewhere).
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot grow the tmpfs (%v: %s)", err, out)
	}
	if _, _, err := Restore(context.Background(), st, RestoreOptions{All: true, Target: jr, Overwrite: true}); err != nil {
		t.Fatalf("restore --all --force once space is freed: %v", err)
	}
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}
	if st.RestorePending() {
		t.Error("the finished restore --all did not end the wait")
	}
}
