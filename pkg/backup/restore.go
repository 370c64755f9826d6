package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Source is where a restore reads blobs from: the store itself, or a server
// over the network.
type Source interface {
	// Fetch calls fn with the uncompressed bytes of each ref, in order. An
	// error wrapping blob.ErrDamaged means that blob is damaged.
	Fetch(ctx context.Context, refs []blob.Ref, fn func(r blob.Ref, raw []byte) error) error
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
	// Damaged lists files left out because stored data failed its check;
	// every other file was restored.
	Damaged []string
}

// ReadTree fetches and decodes one tree from src.
func ReadTree(ctx context.Context, src Source, id chunk.ID) (*manifest.Tree, error) {
	var t *manifest.Tree
	err := src.Fetch(ctx, []blob.Ref{{Type: blob.Tree, ID: id}}, func(r blob.Ref, raw []byte) error {
		if chunk.Sum(raw) != id {
			return fmt.Errorf("%w: tree %s fails its hash check", blob.ErrDamaged, id.Short())
		}
		var err error
		t, err = manifest.Decode(raw)
		return err
	})
	return t, err
}

// Walk visits every entry under the tree root, depth first in name order,
// with slash-separated paths relative to root.
func Walk(ctx context.Context, src Source, root chunk.ID, fn func(p string, e *manifest.Entry) error) error {
	return walk(ctx, src, root, "", 0, fn)
}

func walk(ctx context.Context, src Source, id chunk.ID, dir string, depth int, fn func(string, *manifest.Entry) error) error {
	if depth > manifest.MaxDepth {
		return fmt.Errorf("%w: directories nested deeper than %d", blob.ErrDamaged, manifest.MaxDepth)
	}
	t, err := ReadTree(ctx, src, id)
	if err != nil {
		return err
	}
	for i := range t.Entries {
		e := &t.Entries[i]
		p := path.Join(dir, e.Name)
		err := fn(p, e)
		if errors.Is(err, fs.SkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if e.Type == manifest.Dir {
			if err := walk(ctx, src, e.Subtree, p, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

type item struct {
	p string
	e *manifest.Entry
}

// collect lists every entry under the tree id, like walk, fetching
// subtrees in parallel (at most cap(sem) fetches at once): over the network
// each tree is a round trip.
func collect(ctx context.Context, src Source, id chunk.ID, dir string, depth int, sem chan struct{}) ([]item, error) {
	if depth > manifest.MaxDepth {
		return nil, fmt.Errorf("%w: directories nested deeper than %d", blob.ErrDamaged, manifest.MaxDepth)
	}
	sem <- struct{}{}
	t, err := ReadTree(ctx, src, id)
	<-sem
	if err != nil {
		return nil, err
	}
	subs := make([][]item, len(t.Entries))
	g, gctx := errgroup.WithContext(ctx)
	for i := range t.Entries {
		e := &t.Entries[i]
		if e.Type == manifest.Dir {
			g.Go(func() error {
				var err error
				subs[i], err = collect(gctx, src, e.Subtree, path.Join(dir, e.Name), depth+1, sem)
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []item
	for i := range t.Entries {
		e := &t.Entries[i]
		out = append(out, item{path.Join(dir, e.Name), e})
		out = append(out, subs[i]...)
	}
	return out, nil
}

// Lookup finds the entry at path p in the tree root ("" is the root itself).
func Lookup(ctx context.Context, src Source, root chunk.ID, p string) (*manifest.Entry, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	cur := &manifest.Entry{Type: manifest.Dir, Subtree: root, Mode: 0o755}
	if p == "" {
		return cur, nil
	}
	for _, name := range strings.Split(p, "/") {
		if cur.Type != manifest.Dir {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		t, err := ReadTree(ctx, src, cur.Subtree)
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
			return nil, fmt.Errorf("%s is not in this snapshot: %w", p, fs.ErrNotExist)
		}
		cur = next
	}
	return cur, nil
}

// Restore writes the tree root (or the chosen paths) under target, creating
// it if needed. Every write goes through an os.Root opened on target, so no
// name, symlink or path can make it write outside target. Each chunk is
// re-hashed before its bytes are written; a file with a damaged chunk is
// left out and listed in Damaged, and Restore then returns an error wrapping
// blob.ErrDamaged after restoring everything else.
func Restore(ctx context.Context, src Source, root chunk.ID, target string, opts RestoreOptions) (*RestoreResult, error) {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, fmt.Errorf("create restore target: %w", err)
	}
	r, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("open restore target: %w", err)
	}
	defer r.Close()
	var todo []item
	paths := opts.Paths
	if len(paths) == 0 {
		paths = []string{""}
	}
	for _, p := range paths {
		e, err := Lookup(ctx, src, root, p)
		if err != nil {
			return nil, err
		}
		p = strings.Trim(path.Clean("/"+p), "/")
		if p != "" {
			todo = append(todo, item{p, e})
		}
		if e.Type == manifest.Dir {
			sub, err := collect(ctx, src, e.Subtree, p, 0, make(chan struct{}, restoreWorkers))
			if err != nil {
				return nil, err
			}
			todo = append(todo, sub...)
		}
	}
	var prog RestoreProgress
	for _, it := range todo {
		if it.e.Type == manifest.File {
			prog.TotalFiles++
			prog.TotalBytes += it.e.Size
		}
	}
	res := &RestoreResult{}
	var dirs, files []item
	for _, it := range todo {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if dir := path.Dir(it.p); dir != "." {
			if err := r.MkdirAll(dir, 0o755); err != nil {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
		}
		switch it.e.Type {
		case manifest.Dir:
			if err := r.Mkdir(it.p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
			res.Dirs++
			dirs = append(dirs, it)
		case manifest.Symlink:
			if opts.Overwrite {
				r.Remove(it.p)
			}
			if err := r.Symlink(it.e.Target, it.p); err != nil {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
			res.Symlinks++
		case manifest.File:
			files = append(files, it)
		}
	}
	// Files in parallel: a Journal is many small files, and over the
	// network each costs a round trip.
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(restoreWorkers)
	for _, it := range files {
		g.Go(func() error {
			n, err := restoreFile(gctx, src, r, it.p, it.e, opts.Overwrite)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, blob.ErrDamaged) {
				res.Damaged = append(res.Damaged, it.p)
				r.Remove(it.p)
				return nil
			}
			if err != nil {
				return err
			}
			res.Files++
			res.Bytes += n
			prog.Files++
			prog.Bytes += n
			prog.Path = it.p
			if opts.Progress != nil {
				opts.Progress(prog)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	slices.Sort(res.Damaged)
	// Directory modes and times last, deepest first, once their contents exist.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		r.Chmod(d.p, d.e.Mode.Perm()|0o700)
		mt := time.Unix(0, d.e.MTime)
		r.Chtimes(d.p, mt, mt)
	}
	if len(res.Damaged) > 0 {
		return res, fmt.Errorf("%w: %d file(s) could not be restored (%s); the rest were",
			blob.ErrDamaged, len(res.Damaged), strings.Join(res.Damaged[:min(5, len(res.Damaged))], ", "))
	}
	return res, nil
}

// restoreWorkers is how many files are restored at once.
const restoreWorkers = 8

// fetchBatch is how many chunks are requested at once.
const fetchBatch = 64

func restoreFile(ctx context.Context, src Source, root *os.Root, p string, e *manifest.Entry, overwrite bool) (int64, error) {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := root.OpenFile(p, flag, 0o600)
	if err != nil {
		return 0, fmt.Errorf("restore %s: %w (use the overwrite option to replace it)", p, err)
	}
	var n int64
	for i := 0; i < len(e.Chunks) && err == nil; i += fetchBatch {
		refs := make([]blob.Ref, 0, fetchBatch)
		for _, id := range e.Chunks[i:min(len(e.Chunks), i+fetchBatch)] {
			refs = append(refs, blob.Ref{Type: blob.Chunk, ID: id})
		}
		err = src.Fetch(ctx, refs, func(r blob.Ref, raw []byte) error {
			if chunk.Sum(raw) != r.ID {
				return fmt.Errorf("%w: chunk %s fails its hash check", blob.ErrDamaged, r.ID.Short())
			}
			m, err := f.Write(raw)
			n += int64(m)
			return err
		})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != e.Size {
		err = fmt.Errorf("%w: restored %d bytes, the manifest says %d", blob.ErrDamaged, n, e.Size)
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
