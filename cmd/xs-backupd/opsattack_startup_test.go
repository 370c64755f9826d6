package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opsBuild builds xs-backupd into a directory anyone may read (the
// daemon runs as an unprivileged user in some tests).
func opsBuild(t *testing.T) (bin, top string) {
	t.Helper()
	top, err := os.MkdirTemp("", "opsattack-d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	bin = filepath.Join(top, "xs-backupd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin, top
}

// opsRun runs the daemon to its exit (at most 10 s) and returns its exit
// code and standard error; asUser runs it as nobody, as the unit runs it
// as xs-backup.
func opsRun(t *testing.T, bin string, asUser bool, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if asUser {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var errb lockedBuf
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), errb.String()
		}
		return 0, errb.String()
	case <-time.After(10 * time.Second):
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		t.Fatalf("xs-backupd %v still running after 10 s:\n%s", args, errb.String())
		return 0, ""
	}
}

// The README's set-up: "edit the configuration (e.g. data =
// "/library/xs-backup" on an OLPC XS), then systemctl start xs-backupd".
// The daemon runs as xs-backup, which cannot create a directory in the
// root-owned /library (and the unit's ProtectSystem=strict makes any
// path but /var/lib/xs-backup and an existing /library/xs-backup
// read-only). It fails, exit 1, with "mkdir ...: permission denied" or
// "read-only file system" and nothing more. Exit 1 promises "the message
// says what to do next": create the directory for the xs-backup user
// (chown), or give the unit ReadWritePaths in a drop-in.
func TestOpsAttackDataDirNotWritableSaysWhatToDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the daemon as an unprivileged user, mounts a read-only file system")
	}
	bin, top := opsBuild(t)
	advice := []string{"chown", "owner", "owned by", "ReadWritePaths", "systemctl edit", "writable by"}
	says := func(log string) bool {
		for _, a := range advice {
			if strings.Contains(log, a) {
				return true
			}
		}
		return false
	}
	base := []string{"--config", "", "--listen", "127.0.0.1:0", "--metrics", "", "--page", ""}

	t.Run("library owned by root", func(t *testing.T) {
		library := filepath.Join(top, "library")
		os.Mkdir(library, 0o755)
		code, log := opsRun(t, bin, true, append(base, "--data", filepath.Join(library, "xs-backup"))...)
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, log)
		}
		if !says(log) {
			t.Errorf("the daemon cannot create its data directory and does not say what to do (any of %q):\n%s", advice, log)
		}
	})
	t.Run("read-only file system", func(t *testing.T) {
		mnt := filepath.Join(top, "srv")
		os.Mkdir(mnt, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Skipf("mount tmpfs: %v %s", err, out)
		}
		defer exec.Command("umount", mnt).Run()
		os.Mkdir(filepath.Join(mnt, "xs-backup"), 0o750)
		if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
			t.Skipf("remount ro: %v %s", err, out)
		}
		code, log := opsRun(t, bin, false, append(base, "--data", filepath.Join(mnt, "xs-backup"))...)
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, log)
		}
		if !says(log) {
			t.Errorf("the data directory is on a read-only file system (as ProtectSystem=strict makes it) and the daemon does not say what to do (any of %q):\n%s", advice, log)
		}
	})
}

// Start-up failures that already behave: exit codes as --help documents
// them, and messages naming what is wrong.
func TestOpsAttackStartupExitCodes(t *testing.T) {
	bin, top := opsBuild(t)
	data := filepath.Join(top, "data")
	base := []string{"--listen", "127.0.0.1:0", "--metrics", "", "--page", "", "--data", data}

	conf := filepath.Join(top, "bad.toml")
	os.WriteFile(conf, []byte("[admision]\nmax_sessions = 8\n"), 0o644)
	if code, log := opsRun(t, bin, false, append([]string{"--config", conf}, base...)...); code != 1 || !strings.Contains(log, `"admision"`) {
		t.Errorf("misspelt section: exit %d, want 1 naming it:\n%s", code, log)
	}
	if code, log := opsRun(t, bin, false, append([]string{"--config", top}, base...)...); code != 1 || !strings.Contains(log, "directory") {
		t.Errorf("a directory as --config: exit %d:\n%s", code, log)
	}
	if code, log := opsRun(t, bin, false, append([]string{"--config", filepath.Join(top, "missing.toml")}, base...)...); code != 1 || !strings.Contains(log, "missing.toml") {
		t.Errorf("a missing --config: exit %d:\n%s", code, log)
	}
	if code, log := opsRun(t, bin, false, "--config", "", "--capacity", "4"); code != 2 {
		t.Errorf("--capacity: exit %d, want 2:\n%s", code, log)
	}
	if code, log := opsRun(t, bin, false, "--config", "", "--log-level", "loud"); code != 2 {
		t.Errorf("--log-level loud: exit %d, want 2:\n%s", code, log)
	}
	if code, log := opsRun(t, bin, false, "--config", "", "extra-arg"); code != 2 {
		t.Errorf("an argument: exit %d, want 2:\n%s", code, log)
	}
	// A busy UDP port: exit 1, the port named.
	pc, err := listenUDP()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	busy := pc.LocalAddr().String()
	code, log := opsRun(t, bin, false, "--config", "", "--listen", busy, "--metrics", "", "--page", "", "--data", data)
	if code != 1 || !strings.Contains(log, busy) || !strings.Contains(log, "in use") {
		t.Errorf("busy port %s: exit %d:\n%s", busy, code, log)
	}
	// A busy metrics address: exit 1, named.
	ln, err := listenTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, log = opsRun(t, bin, false, "--config", "", "--listen", "127.0.0.1:0", "--metrics", ln.Addr().String(), "--page", "", "--data", data)
	if code != 1 || !strings.Contains(log, ln.Addr().String()) {
		t.Errorf("busy metrics address: exit %d:\n%s", code, log)
	}
	if _, err := os.Stat(filepath.Join(data, "admin.sock")); err == nil {
		t.Errorf("a failed start left admin.sock behind")
	}
}

func listenUDP() (interface {
	LocalAddr() net.Addr
	Close() error
}, error) {
	return net.ListenPacket("udp", "127.0.0.1:0")
}

func listenTCP() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
