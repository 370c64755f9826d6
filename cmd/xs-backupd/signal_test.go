package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuf is a bytes.Buffer safe to read while the daemon writes it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// SIGHUP is what admins (and logrotate postrotate scripts) send to "reload"
// a daemon. xs-backupd does not reload, but it must not die on the spot
// either: Go's default for SIGHUP kills the process with no shutdown, the
// store not closed, backups in progress cut and admin.sock left behind.
// It should keep running (or at least shut down as on SIGTERM).
func TestSighupDoesNotKillTheDaemon(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "xs-backupd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "a4d")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(bin, "--config", "", "--data", dir, "--listen", "127.0.0.1:0", "--metrics", "", "--page", "")
	var log lockedBuf
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	for i := 0; !strings.Contains(log.String(), "xs-backupd ready"); i++ {
		if i == 500 {
			t.Fatalf("not ready:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the admin socket is listening
	cmd.Process.Signal(syscall.SIGHUP)
	select {
	case err := <-done:
		done <- err
		clean := err == nil && strings.Contains(log.String(), "msg=stopped")
		_, sockErr := os.Stat(filepath.Join(dir, "admin.sock"))
		if !clean {
			t.Errorf("SIGHUP killed xs-backupd without a shutdown (%v; admin.sock left: %v):\n%s", err, sockErr == nil, log.String())
		}
	case <-time.After(2 * time.Second):
		// Still running: fine.
	}
}
