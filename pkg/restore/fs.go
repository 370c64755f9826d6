package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// SnapshotFS presents the tree root as a read-only fs.FS (with ReadDir and
// Stat), reading trees and chunks from src on demand. File contents are
// verified chunk by chunk before they are returned. Symbolic links are listed
// but not followed: opening one fails. Decoded trees are cached (a few
// thousand at most), so listing a Journal reads each directory once.
func SnapshotFS(ctx context.Context, src Source, root chunk.ID) fs.FS {
	return &snapFS{ctx: ctx, src: src, root: root, trees: map[chunk.ID]*manifest.Tree{}}
}

type snapFS struct {
	ctx  context.Context
	src  Source
	root chunk.ID

	mu    sync.Mutex
	trees map[chunk.ID]*manifest.Tree
}

const maxCachedTrees = 4096

func (f *snapFS) tree(id chunk.ID) (*manifest.Tree, error) {
	f.mu.Lock()
	t, ok := f.trees[id]
	f.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := ReadTree(f.ctx, f.src, id)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if len(f.trees) >= maxCachedTrees {
		clear(f.trees)
	}
	f.trees[id] = t
	f.mu.Unlock()
	return t, nil
}

// validName is fs.ValidPath without its demand for UTF-8: a snapshot keeps
// a name's bytes as the laptop's filesystem gave them (a Latin-1 name from
// an old USB stick), and an export must not fail on one.
func validName(name string) bool {
	if name == "." {
		return true
	}
	if name == "" {
		return false
	}
	for part := range strings.SplitSeq(name, "/") {
		if manifest.ValidName(part) != nil {
			return false
		}
	}
	return true
}

// lookup resolves a valid fs.FS name (validName) to its entry.
func (f *snapFS) lookup(op, name string) (*manifest.Entry, error) {
	if !validName(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	cur := &manifest.Entry{Name: ".", Type: manifest.Dir, Subtree: f.root, Mode: 0o755}
	if name == "." {
		return cur, nil
	}
	for _, part := range strings.Split(name, "/") {
		if cur.Type != manifest.Dir {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		t, err := f.tree(cur.Subtree)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		i := sort.Search(len(t.Entries), func(i int) bool { return t.Entries[i].Name >= part })
		if i == len(t.Entries) || t.Entries[i].Name != part {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		cur = &t.Entries[i]
	}
	return cur, nil
}

func (f *snapFS) Open(name string) (fs.File, error) {
	e, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	switch e.Type {
	case manifest.File:
		return &snapFile{fs: f, e: e, name: name}, nil
	case manifest.Dir:
		return &snapDir{fs: f, e: e, name: name}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("symbolic links are not followed")}
}

func (f *snapFS) Stat(name string) (fs.FileInfo, error) {
	e, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return entryInfo{e}, nil
}

func (f *snapFS) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if e.Type != manifest.Dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	t, err := f.tree(e.Subtree)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(t.Entries))
	for i := range t.Entries {
		out[i] = fs.FileInfoToDirEntry(entryInfo{&t.Entries[i]})
	}
	return out, nil
}

// entryInfo is a manifest entry as an fs.FileInfo.
type entryInfo struct{ e *manifest.Entry }

func (i entryInfo) Name() string       { return path.Base(i.e.Name) }
func (i entryInfo) Size() int64        { return i.e.Size }
func (i entryInfo) ModTime() time.Time { return time.Unix(0, i.e.MTime) }
func (i entryInfo) IsDir() bool        { return i.e.Type == manifest.Dir }
func (i entryInfo) Sys() any           { return i.e }
func (i entryInfo) Mode() fs.FileMode {
	m := i.e.Mode & fs.ModePerm
	switch i.e.Type {
	case manifest.Dir:
		m |= fs.ModeDir
	case manifest.Symlink:
		m |= fs.ModeSymlink
	}
	return m
}

// snapFile reads a file's chunks in order, one at a time.
type snapFile struct {
	fs     *snapFS
	e      *manifest.Entry
	name   string
	next   int
	buf    []byte
	closed bool
}

func (f *snapFile) Stat() (fs.FileInfo, error) { return entryInfo{f.e}, nil }
func (f *snapFile) Close() error               { f.closed = true; return nil }

func (f *snapFile) Read(p []byte) (int, error) {
	if f.closed {
		return 0, fs.ErrClosed
	}
	for len(f.buf) == 0 {
		if f.next >= len(f.e.Chunks) {
			return 0, io.EOF
		}
		id := f.e.Chunks[f.next]
		err := f.fs.src.Fetch(f.fs.ctx, []blob.Ref{{Type: blob.Chunk, ID: id}}, func(_ blob.Ref, raw []byte) error {
			if chunk.Sum(raw) != id {
				return fmt.Errorf("%w: chunk %s of %s fails its hash check", blob.ErrDamaged, id.Short(), f.name)
			}
			f.buf = raw
			return nil
		})
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
		}
		f.next++
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// snapDir is an open directory.
type snapDir struct {
	fs   *snapFS
	e    *manifest.Entry
	name string
	ents []fs.DirEntry
	read bool
}

func (d *snapDir) Stat() (fs.FileInfo, error) { return entryInfo{d.e}, nil }
func (d *snapDir) Close() error               { return nil }
func (d *snapDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}

func (d *snapDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		ents, err := d.fs.ReadDir(d.name)
		if err != nil {
			return nil, err
		}
		d.ents, d.read = ents, true
	}
	if n <= 0 {
		out := d.ents
		d.ents = nil
		return out, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.ents))
	out := d.ents[:k]
	d.ents = d.ents[k:]
	return out, nil
}
