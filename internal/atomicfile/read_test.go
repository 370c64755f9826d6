package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestReadCapped: a configuration or state file is read whole up to its
// cap, through a link; /dev/null reads empty; over the cap, /dev/zero and
// a named pipe (which would block forever) are refused at once.
func TestReadCapped(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadCapped(filepath.Join(dir, "link"), 10); err != nil || string(b) != "0123456789" {
		t.Errorf("through a link: %q %v", b, err)
	}
	if _, err := ReadCapped(p, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the cap: %v", err)
	}
	if b, err := ReadCapped("/dev/null", 10); err != nil || len(b) != 0 {
		t.Errorf("/dev/null: %q %v", b, err)
	}
	if _, err := ReadCapped("/dev/zero", 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("/dev/zero: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadCapped(fifo, 10); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a named pipe was read as a file")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a named pipe blocked")
	}
}
