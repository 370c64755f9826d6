package atomicfile_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
)

// crashFS is an atomicfile.FS that does every operation on the real disk
// (so the code under test runs normally) and records it, so that a test
// can ask what the disk could hold after a power cut at any point.
//
// Its model of a disk is the one POSIX promises and ext4 (data=ordered,
// delayed allocation) shows in practice:
//   - a file's data is on disk only up to its last fsync; a file never
//     synced is empty after the cut;
//   - metadata changes (create, rename, remove) reach the disk in order,
//     and any number of those not yet forced by a directory fsync may or
//     may not have reached it: a rename can survive while the data it
//     points at does not, which is exactly how a key file ends up empty.
type crashFS struct {
	mu   sync.Mutex
	log  []op
	ino  int
	init map[string][]byte // content of files that existed before they were first touched
	name map[string]int    // current name -> inode, to know which names the model owns
}

type opKind int

const (
	opCreate opKind = iota
	opWrite
	opSync
	opRename
	opRemove
	opSyncDir
)

type op struct {
	kind opKind
	a, b string
	ino  int
	data []byte
}

func newCrashFS() *crashFS {
	return &crashFS{init: map[string][]byte{}, name: map[string]int{}}
}

// learn records the content of path as durable if the model does not know it yet.
func (c *crashFS) learn(path string) {
	if _, ok := c.name[path]; ok {
		return
	}
	if _, ok := c.init[path]; ok {
		return
	}
	if b, err := os.ReadFile(path); err == nil {
		c.init[path] = b
	}
}

func (c *crashFS) CreateTemp(dir, pattern string) (atomicfile.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ino++
	c.name[f.Name()] = c.ino
	c.log = append(c.log, op{kind: opCreate, a: f.Name(), ino: c.ino})
	return &crashFile{File: f, c: c, ino: c.ino}, nil
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.learn(newpath)
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	c.name[newpath] = c.name[oldpath]
	delete(c.name, oldpath)
	c.log = append(c.log, op{kind: opRename, a: oldpath, b: newpath})
	return nil
}

func (c *crashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.learn(name)
	if err := os.Remove(name); err != nil {
		return err
	}
	delete(c.name, name)
	c.log = append(c.log, op{kind: opRemove, a: name})
	return nil
}

func (c *crashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := atomicfile.OS.SyncDir(dir); err != nil {
		return err
	}
	c.log = append(c.log, op{kind: opSyncDir, a: dir})
	return nil
}

type crashFile struct {
	*os.File
	c   *crashFS
	ino int
}

func (f *crashFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.c.mu.Lock()
	f.c.log = append(f.c.log, op{kind: opWrite, ino: f.ino, data: bytes.Clone(p[:n])})
	f.c.mu.Unlock()
	return n, err
}

func (f *crashFile) Sync() error {
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.c.mu.Lock()
	f.c.log = append(f.c.log, op{kind: opSync, ino: f.ino})
	f.c.mu.Unlock()
	return nil
}

// owns reports whether path was written through the model.
func (c *crashFS) owns(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.name[path]
	return ok
}

// ops returns how many operations have been recorded so far.
func (c *crashFS) ops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.log)
}

// diskState is what the model's files hold after a power cut: path ->
// content; a path not in the map does not exist.
type diskState map[string][]byte

// afterCut returns every state the disk may be in after a power cut that
// came after the first n recorded operations.
func (c *crashFS) afterCut(n int) []diskState {
	c.mu.Lock()
	defer c.mu.Unlock()
	type inode struct{ data, synced []byte }
	inodes := map[int]*inode{}
	initial := map[string]int{}
	id := 0
	for p, b := range c.init {
		id--
		inodes[id] = &inode{data: b, synced: b}
		initial[p] = id
	}
	var meta []op
	committed := 0
	for _, o := range c.log[:n] {
		switch o.kind {
		case opCreate:
			inodes[o.ino] = &inode{}
			meta = append(meta, o)
		case opWrite:
			inodes[o.ino].data = append(inodes[o.ino].data, o.data...)
		case opSync:
			inodes[o.ino].synced = bytes.Clone(inodes[o.ino].data)
		case opRename, opRemove:
			meta = append(meta, o)
		case opSyncDir:
			// jbd2 commits the whole journal: every earlier metadata change.
			committed = len(meta)
		}
	}
	var out []diskState
	for k := committed; k <= len(meta); k++ {
		names := map[string]int{}
		for p, i := range initial {
			names[p] = i
		}
		for _, o := range meta[:k] {
			switch o.kind {
			case opCreate:
				names[o.a] = o.ino
			case opRename:
				names[o.b] = names[o.a]
				delete(names, o.a)
			case opRemove:
				delete(names, o.a)
			}
		}
		st := diskState{}
		for p, i := range names {
			st[p] = bytes.Clone(inodes[i].synced)
		}
		out = append(out, st)
	}
	return out
}

// materialize makes dir (a copy of the original directory orig, from a
// real run) hold the state of every file the model knows under orig.
func (st diskState) materialize(orig, dir string) error {
	for p, b := range st {
		rel, err := filepath.Rel(orig, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, rel), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// restartDir returns a fresh directory holding orig as a power cut after
// the first n operations may have left it (state number k of afterCut):
// files the model does not know are copied as they are (the lock, the
// store's own files, which have their own tests).
func (c *crashFS) restartDir(orig, fresh string, st diskState) error {
	err := filepath.WalkDir(orig, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(orig, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(fresh, rel), 0o700)
		}
		c.mu.Lock()
		_, known := c.name[p]
		_, knownInit := c.init[p]
		c.mu.Unlock()
		if known || knownInit || strings.Contains(d.Name(), ".tmp-") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(fresh, rel), b, 0o600)
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", orig, err)
	}
	return st.materialize(orig, fresh)
}
