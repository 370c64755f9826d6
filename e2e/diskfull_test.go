package e2e

import (
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

// TestDiskFull runs xs-backupd on a small tmpfs: a backup that would eat
// into the free-space reserve is refused with "storage full", the daemon
// keeps running, the existing backup stays intact, and once space is freed
// the refused laptop backs up.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a small tmpfs (CI runs it as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	cfg := filepath.Join(t.TempDir(), "xs.toml")
	os.WriteFile(cfg, []byte("reserve = \"40MiB\"\n"), 0o644)
	// Most of the disk is taken by something else.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 90<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	d := StartDaemon(t, filepath.Join(mnt, "data"), "--config", cfg)

	small, smallState := t.TempDir(), t.TempDir()
	journalgen.Generate(small, journalgen.Small(41))
	xo(t, smallState, "register", "--server", d.Addr, "--serial", "FULL1")
	runBackup(t, smallState, small)

	big, bigState := t.TempDir(), t.TempDir()
	for i := 0; i < 4; i++ {
		os.WriteFile(filepath.Join(big, "video"+string(rune('a'+i))+".ogv"), journalgen.Random(randFor(uint64(50+i)), 20<<20), 0o644)
	}
	xo(t, bigState, "register", "--server", d.Addr, "--serial", "FULL2")
	out, errOut, code := xo(t, bigState, "run", "--source", big, "--force")
	if code == 0 || !strings.Contains(errOut, "storage full") {
		t.Fatalf("a backup past the reserve: exit %d, %s %s; want a refusal saying storage full", code, out, errOut)
	}
	if d.Cmd.Process.Signal(syscall.Signal(0)) != nil {
		t.Fatal("xs-backupd died when its disk filled")
	}
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	if free := int64(st.Bavail) * int64(st.Bsize); free < 32<<20 {
		t.Fatalf("only %d MiB left: the reserve was not kept", free>>20)
	}
	// The existing backup is intact.
	restored := t.TempDir()
	if o, e, code := xo(t, smallState, "restore", "--to", restored); code != 0 {
		t.Fatalf("restore after the refusal: %s %s", o, e)
	}
	if err := dircmp.Compare(small, restored, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}
	// Space freed: the refused laptop backs up.
	os.Remove(filler)
	runBackup(t, bigState, big, "--force")
	if out, errOut, code := admin(t, d.Data, "check", "--read-data"); code != 0 {
		t.Fatalf("check: %s %s", out, errOut)
	}
}
