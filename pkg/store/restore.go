package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// WalkFunc is called by Walk for every entry, with its slash-separated path
// relative to the snapshot root.
type WalkFunc func(p string, e *manifest.Entry) error

// SkipDir may be returned by a WalkFunc for a directory to skip its contents.
var SkipDir = fs.SkipDir

// Walk visits every entry of the tree root, depth first, in name order.
func (s *Store) Walk(ctx context.Context, root chunk.ID, fn WalkFunc) error {
	return s.walk(ctx, root, "", 0, fn)
}

func (s *Store) walk(ctx context.Context, id chunk.ID, dir string, depth int, fn WalkFunc) error {
	if depth > manifest.MaxDepth {
		return fmt.Errorf("%w: directories nested deeper than %d", ErrCorrupt, manifest.MaxDepth)
	}
	t, err := s.ReadTree(ctx, id)
	if err != nil {
		return err
	}
	for i := range t.Entries {
		e := &t.Entries[i]
		p := path.Join(dir, e.Name)
		err := fn(p, e)
		if e.Type == manifest.Dir {
			if errors.Is(err, SkipDir) {
				continue
			}
			if err != nil {
				return err
			}
			if err := s.walk(ctx, e.Subtree, p, depth+1, fn); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	return nil
}

// Lookup finds the entry at path p (slash-separated, relative) in the tree root.
func (s *Store) Lookup(ctx context.Context, root chunk.ID, p string) (*manifest.Entry, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	cur := &manifest.Entry{Type: manifest.Dir, Subtree: root, Mode: 0o755}
	if p == "" {
		return cur, nil
	}
	for _, name := range strings.Split(p, "/") {
		if cur.Type != manifest.Dir {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, p)
		}
		t, err := s.ReadTree(ctx, cur.Subtree)
		if err != nil {
			return nil, err
		}
		var next *manifest.Entry
		for i := range t.Entries {
			if t.Entries[i].Name == name {
				next = &t.Entries[i]
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%w: %s is not in this snapshot", ErrNotFound, p)
		}
		cur = next
	}
	return cur, nil
}

// FileReader returns a reader of a file entry's content. Each chunk is
// verified against its ID before any of its bytes are returned.
func (s *Store) FileReader(ctx context.Context, e *manifest.Entry) io.Reader {
	return &fileReader{ctx: ctx, s: s, chunks: e.Chunks}
}

type fileReader struct {
	ctx    context.Context
	s      *Store
	chunks []chunk.ID
	buf    []byte
}

func (r *fileReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if len(r.chunks) == 0 {
			return 0, io.EOF
		}
		b, err := r.s.ReadBlob(r.ctx, blob.Ref{Type: blob.Chunk, ID: r.chunks[0]})
		if err != nil {
			return 0, err
		}
		r.chunks, r.buf = r.chunks[1:], b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// RestoreOptions choose what Restore writes.
type RestoreOptions struct {
	// Paths restricts the restore to these entries (files or whole
	// directories, slash-separated, relative to the snapshot root). Empty
	// restores everything.
	Paths []string
	// Overwrite replaces existing files; without it an existing file is an error.
	Overwrite bool
	// Progress, if set, is called after each file with running totals.
	Progress func(RestoreProgress)
}

// RestoreProgress reports how far a restore is.
type RestoreProgress struct {
	Files, TotalFiles int64
	Bytes, TotalBytes int64
	Path              string
}

// RestoreResult summarises a restore.
type RestoreResult struct {
	Files, Dirs, Symlinks int64
	Bytes                 int64
	// Damaged lists files that could not be restored because stored data
	// failed its check; every other file was restored.
	Damaged []string
}

// Restore writes the snapshot's tree (or the chosen paths) under target,
// creating it if needed. All writes go through an os.Root opened on target,
// so no name, symlink or path in the manifest can make it write outside
// target. Every chunk is verified before its bytes are written; a file with a
// damaged chunk is left out, listed in Damaged, and Restore returns an error
// wrapping ErrCorrupt after restoring everything else.
func (s *Store) Restore(ctx context.Context, snap *Snapshot, target string, opts RestoreOptions) (*RestoreResult, error) {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, fmt.Errorf("create restore target: %w", err)
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("open restore target: %w", err)
	}
	defer root.Close()
	type item struct {
		p string
		e *manifest.Entry
	}
	var todo []item
	paths := opts.Paths
	if len(paths) == 0 {
		paths = []string{""}
	}
	var prog RestoreProgress
	for _, p := range paths {
		e, err := s.Lookup(ctx, snap.Root, p)
		if err != nil {
			return nil, err
		}
		p = strings.Trim(path.Clean("/"+p), "/")
		if p != "" {
			todo = append(todo, item{p, e})
		}
		if e.Type == manifest.Dir {
			err := s.Walk(ctx, e.Subtree, func(sub string, se *manifest.Entry) error {
				todo = append(todo, item{path.Join(p, sub), se})
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	for _, it := range todo {
		if it.e.Type == manifest.File {
			prog.TotalFiles++
			prog.TotalBytes += it.e.Size
		}
	}
	res := &RestoreResult{}
	var dirs []item
	for _, it := range todo {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// Parents of a chosen path must exist.
		if dir := path.Dir(it.p); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
		}
		switch it.e.Type {
		case manifest.Dir:
			if err := root.Mkdir(it.p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
			res.Dirs++
			dirs = append(dirs, it)
		case manifest.Symlink:
			if opts.Overwrite {
				root.Remove(it.p)
			}
			if err := root.Symlink(it.e.Target, it.p); err != nil {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
			res.Symlinks++
		case manifest.File:
			n, err := s.restoreFile(ctx, root, it.p, it.e, opts.Overwrite)
			if errors.Is(err, ErrCorrupt) {
				res.Damaged = append(res.Damaged, it.p)
				root.Remove(it.p)
				continue
			}
			if err != nil {
				return res, err
			}
			res.Files++
			res.Bytes += n
			prog.Files++
			prog.Bytes += n
			prog.Path = it.p
			if opts.Progress != nil {
				opts.Progress(prog)
			}
		}
	}
	// Directory modes and times last, deepest first, once their contents exist.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		root.Chmod(d.p, d.e.Mode.Perm()|0o700)
		mt := time.Unix(0, d.e.MTime)
		root.Chtimes(d.p, mt, mt)
	}
	if len(res.Damaged) > 0 {
		return res, fmt.Errorf("%w: %d file(s) could not be restored (%s); run xs-admin check --read-data",
			ErrCorrupt, len(res.Damaged), strings.Join(res.Damaged[:min(5, len(res.Damaged))], ", "))
	}
	return res, nil
}

func (s *Store) restoreFile(ctx context.Context, root *os.Root, p string, e *manifest.Entry, overwrite bool) (int64, error) {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := root.OpenFile(p, flag, 0o600)
	if err != nil {
		return 0, fmt.Errorf("restore %s: %w", p, err)
	}
	n, err := io.Copy(f, s.FileReader(ctx, e))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("restore %s: %w", p, err)
	}
	if err := root.Chmod(p, e.Mode.Perm()); err != nil {
		return n, fmt.Errorf("restore %s: %w", p, err)
	}
	mt := time.Unix(0, e.MTime)
	if err := root.Chtimes(p, mt, mt); err != nil {
		return n, fmt.Errorf("restore %s: %w", p, err)
	}
	return n, nil
}
