// Package atomicfile writes small files whose loss matters (keys, pinned
// server keys, registration and slot state, the laptop's file cache) so that
// after a crash or a power cut the file holds either its old content or its
// new content, never nothing and never a mix.
//
// WriteFile takes the classic five steps:
//
//  1. create a temporary file in the same directory (a rename is atomic
//     only within one file system);
//  2. write the data;
//  3. fsync the temporary file, so its data is on disk before any name
//     points at it (without this, ext4 and others can commit the rename
//     first and leave an empty file after a power cut);
//  4. rename it over the final name;
//  5. fsync the directory, so the rename itself is on disk before
//     WriteFile returns (the caller may then tell someone about it: a
//     laptop pins a key, a run records that it finished).
//
// If any step fails the temporary file is removed and the error returned.
//
// There are two such helpers in this repository on purpose. pkg/store has
// its own writeFileAtomic over its store.FS abstraction, because the store's
// fault-injection tests fail every write, fsync, rename and directory sync
// of the store through that FS; it takes the same five steps. Everything
// outside the store writes through this package. Both are proved by
// simulated power cuts that drop whatever was not synced (this package's
// powercut_test.go; pkg/store's fault and crash tests).
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is the file system operations WriteFileFS uses. The real one is OS;
// tests pass one that records the calls and simulates a power cut.
type FS interface {
	// CreateTemp creates a new file in dir like os.CreateTemp.
	CreateTemp(dir, pattern string) (File, error)
	// Rename atomically replaces newpath with oldpath.
	Rename(oldpath, newpath string) error
	// Remove removes a file.
	Remove(name string) error
	// SyncDir makes the directory's entries (creates, renames) durable.
	SyncDir(dir string) error
}

// File is an open temporary file of an FS; *os.File is one.
type File interface {
	Name() string
	Write(p []byte) (int, error)
	Chmod(mode fs.FileMode) error
	Sync() error
	Close() error
}

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// defaultFS is what WriteFile uses: OS, except in this package's power-cut
// tests (export_test.go), which observe the calls made by the packages
// that use WriteFile.
var defaultFS = OS

// WriteFile writes data to path with permissions perm, atomically and
// durably: when it returns nil, path holds data even across a power cut;
// whatever happens before that, path holds its old content (or does not
// exist, if it did not before). The directory must exist.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteFileFS(defaultFS, path, data, perm)
}

// WriteFileFS is WriteFile through fsys.
func WriteFileFS(fsys FS, path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := fsys.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp, closed, renamed := f.Name(), false, false
	defer func() {
		if err != nil && !closed {
			f.Close()
		}
		if err != nil && !renamed {
			fsys.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	n, err := f.Write(data)
	if err != nil {
		return err
	}
	if n != len(data) {
		return errors.New("atomicfile: short write")
	}
	if err := f.Sync(); err != nil {
		return err
	}
	closed = true
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return err
	}
	renamed = true
	// From here on path holds data; only its durability is in doubt, and
	// there is no temporary file left to remove.
	if err := fsys.SyncDir(dir); err != nil {
		return &fs.PathError{Op: "sync directory", Path: dir, Err: err}
	}
	return nil
}
