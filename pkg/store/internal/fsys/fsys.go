// Package fsys is the file system under a store: the operations the store
// needs (open, remove, rename, list, fsync a directory, free space), so
// that tests can wrap the real one to inject I/O errors, short writes and
// failed fsyncs, and the one durable-write helper every store file goes
// through.
package fsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// FS is the file system the store keeps its pack files, users and snapshots
// in. Tests wrap the real one to inject I/O errors, short writes and failed
// fsyncs; every such fault must surface as an error, never as a corrupt store.
// Names are slash-separated paths relative to the store directory.
type FS interface {
	// OpenFile opens name like os.OpenFile.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Remove removes one file.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(name string, perm fs.FileMode) error
	// ReadDir lists a directory.
	ReadDir(name string) ([]fs.DirEntry, error)
	// SyncDir makes the directory's entries (creates, renames, removes) durable.
	SyncDir(name string) error
	// Free returns the bytes available to the store on its file system.
	Free() (uint64, error)
}

// File is an open file of an FS.
type File interface {
	io.ReaderAt
	io.Writer
	Sync() error
	Close() error
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
}

// Dir returns the FS of the operating system rooted at dir.
func Dir(dir string) FS { return osFS(dir) }

type osFS string

func (d osFS) path(name string) string { return filepath.Join(string(d), filepath.FromSlash(name)) }

// OpenFile opens name; one opened only for reading is opened without
// waiting for a writer, so that a named pipe in a file's place (a hostile
// or confused hand) fails its read instead of blocking the store forever.
func (d osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		flag |= unix.O_NONBLOCK
	}
	return os.OpenFile(d.path(name), flag, perm)
}
func (d osFS) Remove(name string) error                  { return os.Remove(d.path(name)) }
func (d osFS) Rename(o, n string) error                  { return os.Rename(d.path(o), d.path(n)) }
func (d osFS) MkdirAll(name string, p fs.FileMode) error { return os.MkdirAll(d.path(name), p) }
func (d osFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return os.ReadDir(d.path(name))
}

func (d osFS) SyncDir(name string) error {
	f, err := os.Open(d.path(name))
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func (d osFS) Free() (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(string(d), &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// WriteFileAtomic writes data to name through a temporary file, fsyncs it,
// renames it into place and fsyncs the directory: after it returns, name
// holds data even across a power loss, and a crash never leaves it half written.
//
// It takes the same five steps as internal/atomicfile.WriteFile (temp file
// in the same directory, write, fsync, rename, fsync the directory; the
// temp file removed on failure), but through the store's FS so that the
// fault-injection tests (the store's fault_test.go) can fail each step. Files outside
// the store use atomicfile. The temporary name is fixed (name+".tmp"):
// writers of one name are serialised by the store's locks (s.mu, refMu, or
// Open), and a temporary left by a crash is overwritten by the next write
// instead of piling up.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	dir := filepath.ToSlash(filepath.Dir(filepath.FromSlash(name)))
	if err := fsys.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp := name + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		fsys.Remove(tmp)
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(dir)
}

// ReadFile reads a whole (small) file through fsys, refusing files over max
// bytes and anything but a regular file (a named pipe in a file's place
// would block the open, and the store's start, forever: it is opened
// without waiting for a writer).
func ReadFile(fsys FS, name string, max int64) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0) // whatever fsys is
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%v)", errkind.ErrDamaged, name, st.Mode().Type())
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", errkind.ErrDamaged, name, st.Size(), max)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// IsNoSpace reports whether err says the file system is full (or the
// user's disk quota is).
func IsNoSpace(err error) bool { return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) }
