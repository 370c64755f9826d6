package fsys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// failSync fails every fsync of a file, as a failing disk does.
type failSync struct{ FS }

type failSyncFile struct{ File }

func (f failSync) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	h, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return failSyncFile{h}, nil
}

func (failSyncFile) Sync() error { return errors.New("injected: fsync failed") }

func TestWriteFileAtomicKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	d := Dir(dir)
	if err := WriteFileAtomic(d, "users/a.json", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(failSync{d}, "users/a.json", []byte("new")); err == nil {
		t.Fatal("a failed fsync was not reported")
	}
	b, err := ReadFile(d, "users/a.json", 100)
	if err != nil || string(b) != "old" {
		t.Fatalf("after a failed write: %q %v, want the old content", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "users", "a.json.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temporary file was left behind: %v", err)
	}
	if err := WriteFileAtomic(d, "users/a.json", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := ReadFile(d, "users/a.json", 100); string(b) != "new" {
		t.Fatalf("got %q after a good write", b)
	}
}

func TestReadFileCap(t *testing.T) {
	d := Dir(t.TempDir())
	if err := WriteFileAtomic(d, "big", make([]byte, 101)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(d, "big", 100); errkind.Of(err) != errkind.Damaged {
		t.Fatalf("a file over the cap: %v, want a damaged-kind error", err)
	}
	if b, err := ReadFile(d, "big", 101); err != nil || len(b) != 101 {
		t.Fatalf("at the cap: %d bytes, %v", len(b), err)
	}
}
