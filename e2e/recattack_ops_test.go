package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRecAttackKilledDuringRepair: the index will not open, staff run
// check --repair and it is SIGKILLed half way (power cut, OOM, ^C -9);
// then the sequence again from the start: nothing is lost.
func TestRecAttackKilledDuringRepair(t *testing.T) {
	w := raNewWorld(t, t.TempDir())
	w.stop(t)
	flipFile(t, filepath.Join(w.data, "index", "MANIFEST"))
	killed := false
	for try := 0; try < 5 && !killed; try++ {
		cmd := exec.Command(filepath.Join(bin, "xs-admin"), "--data", w.data, "check", "--repair")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20000; i++ {
			if _, err := os.Stat(filepath.Join(w.data, "REPAIRING")); err == nil {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
				break
			}
			if cmd.ProcessState != nil {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		cmd.Wait()
		if !killed {
			// It finished first: damage the new index again and retry.
			flipFile(t, filepath.Join(w.data, "index", "MANIFEST"))
		}
	}
	if !killed {
		t.Fatal("check --repair always finished before it could be killed")
	}
	w.note("check --repair SIGKILLed while REPAIRING was there")
	w.staff(t)
	w.finalCheck(t, false)
	w.verify(t, false)
	w.stillBacksUp(t)
}

// TestRecAttackRepairWhileDaemonRuns: staff run check --repair with the
// daemon up: it must refuse, say to stop xs-backupd, and lose nothing.
func TestRecAttackRepairWhileDaemonRuns(t *testing.T) {
	w := raNewWorld(t, t.TempDir())
	out, errOut, code := w.admin(t, "check", "--repair")
	if code != 6 || !strings.Contains(out+errOut, "stop xs-backupd") {
		t.Errorf("check --repair with the daemon running: exit %d, %s%s; want exit 6 and advice to stop xs-backupd", code, out, errOut)
	}
	if !w.running() {
		t.Fatal("xs-backupd died when check --repair ran beside it")
	}
	// What the message says: stop, run it again, start.
	w.stop(t)
	out, errOut, code = w.admin(t, "check", "--repair")
	w.note("check --repair (stopped): exit %d %s%s", code, out, errOut)
	if code != 0 {
		t.Errorf("check --repair with the daemon stopped: exit %d %s%s", code, out, errOut)
	}
	w.staff(t)
	w.finalCheck(t, false)
	w.verify(t, false)
	w.stillBacksUp(t)
}

// TestRecAttackRepairOnNearlyFullDisk: the index will not open on a data
// directory whose file system is nearly full (a 64 MiB tmpfs with 2 MiB
// left). The advised repair must either work or fail saying what to do,
// never leave the store worse; after space is freed (as the message says),
// nothing is lost.
func TestRecAttackRepairOnNearlyFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	cfg := filepath.Join(t.TempDir(), "xs.toml")
	os.WriteFile(cfg, []byte("reserve = \"1MiB\"\n"), 0o644)
	w := raNewWorld(t, filepath.Join(mnt, "data"), func(w *raWorld) {
		w.env = []string{"XS_BACKUP_CONFIG=" + cfg}
		w.daemonArgs = []string{"--config", cfg}
	})
	w.stop(t)
	flipFile(t, filepath.Join(w.data, "index", "MANIFEST"))
	// Fill the disk to 2 MiB of free space.
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(mnt, "filler")
	if free > 2<<20 {
		if err := os.WriteFile(filler, make([]byte, free-(2<<20)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := w.admin(t, "check", "--repair")
	w.note("check --repair on a full disk: exit %d\n%s%s", code, out, errOut)
	if code != 0 && !strings.Contains(out+errOut, "space") && !strings.Contains(out+errOut, "full") {
		t.Errorf("check --repair on a nearly full disk failed without saying the disk is full: exit %d\n%s%s", code, out, errOut)
	}
	// Staff free space (the filler was theirs), then follow the advice.
	os.Remove(filler)
	w.staff(t)
	w.finalCheck(t, false)
	w.verify(t, false)
	w.stillBacksUp(t)
}

// TestRecAttackForeignOwnerRepair: the daemon runs as an unprivileged user
// (as packaged); its index is damaged; staff, as root, run what check
// advises (check --repair with the daemon stopped); the daemon, as its
// user, must start again and nothing is lost.
func TestRecAttackForeignOwnerRepair(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as another user")
	}
	const uid, gid = 65534, 65534
	base, err := os.MkdirTemp("", "recattack-owner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	binDir := filepath.Join(base, "bin")
	os.Mkdir(binDir, 0o755)
	for _, p := range []string{"xs-backupd"} {
		raCopyFile(t, filepath.Join(bin, p), filepath.Join(binDir, p))
	}
	data := filepath.Join(base, "data")
	os.Mkdir(data, 0o750)
	os.Chown(data, uid, gid)
	w := raNewWorld(t, data, func(w *raWorld) {
		w.cred = &syscall.Credential{Uid: uid, Gid: gid}
		w.binDir = binDir
	})
	w.stop(t)
	flipFile(t, filepath.Join(w.data, "index", "MANIFEST"))
	os.Chown(filepath.Join(w.data, "index", "MANIFEST"), uid, gid)
	w.staff(t)
	var foreign []string
	filepath.Walk(w.data, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			if s, ok := fi.Sys().(*syscall.Stat_t); ok && s.Uid != uid {
				foreign = append(foreign, strings.TrimPrefix(p, w.data))
			}
		}
		return nil
	})
	if len(foreign) > 0 {
		t.Errorf("files in the store not owned by the daemon's user after root's repair: %v", foreign)
	}
	w.finalCheck(t, false)
	w.verify(t, false)
	w.stillBacksUp(t)
}

func raCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", src, err))
	}
	out.Close()
}

// TestRecAttackIndexDeletedCheckAdvice: the index directory is gone (a
// staff "cleanup", a failed disk sector under its directory). The daemon
// starts on a new, empty index; xs-admin check must call that what it is,
// an index problem to rebuild with check --repair (README: "Index
// problems ... rebuilds the index from the pack, user and snapshot
// files"), not bit rot that "heals when a laptop backs up" with "Do not
// run --repair": every pack is intact, and old snapshots cannot be healed
// by laptops that no longer have their trees.
func TestRecAttackIndexDeletedCheckAdvice(t *testing.T) {
	w := raNewWorld(t, t.TempDir())
	w.stop(t)
	os.RemoveAll(filepath.Join(w.data, "index"))
	if err := w.tryStart(t); err != nil {
		t.Logf("xs-backupd does not start without its index: %v", err)
	}
	out, errOut, code := w.admin(t, "check")
	if code == 0 || !advisesRepair(out+errOut) || strings.Contains(out+errOut, "Do not run --repair") {
		t.Errorf("xs-admin check after the index directory was deleted: exit %d; want advice to run check --repair, got:\n%s%s", code, out, errOut)
	}
}
