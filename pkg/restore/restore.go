package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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

// Options choose what Restore writes.
type Options struct {
	// Older are the user's snapshots older than the one restored, newest
	// first. For each file left out as damaged, Restore names the first
	// of them that holds the same path with every chunk intact (fetched
	// and verified through the same Source).
	Older []OlderSnapshot
	// Paths restricts the restore to these entries (files or whole
	// directories, slash-separated, relative to the snapshot root). Empty
	// restores everything.
	Paths []string
	// Overwrite replaces existing files; without it an existing file is an error.
	Overwrite bool
	// Progress, if set, is called after each file with running totals.
	Progress func(Progress)
	// ResumeFile, if set, is a file (outside the target) where the restore
	// lists each file it writes whole. Run again with the same snapshot
	// and target after an interruption, the restore does not fetch and
	// write again a file still exactly as it was left (same inode, size,
	// times and mode, and the change time the kernel set then: a file
	// changed since in any way is restored again). A restore that writes
	// everything removes the file. The list is written a few hundred
	// files at a time, and whole when the restore ends or is cut off: a
	// process killed outright fetches those few hundred again.
	ResumeFile string
}

// Progress reports how far a restore is.
type Progress struct {
	Files, TotalFiles int64
	Bytes, TotalBytes int64
	Path              string
}

// Result summarises a restore.
type Result struct {
	Files, Dirs, Symlinks int64
	Bytes                 int64
	// Kept counts the files (among Files) that an interrupted run of the
	// same restore had written whole and were not fetched again (see
	// Options.ResumeFile).
	Kept int64
	// Damaged lists, in path order, the files (and directories) left out
	// because stored data is damaged or missing; every other file was
	// restored.
	Damaged []DamagedFile
}

// OlderSnapshot is a snapshot a restore may name as holding an intact copy.
type OlderSnapshot struct {
	ID   string
	Root chunk.ID
}

// DamagedFile is a file or directory a restore left out.
type DamagedFile struct {
	// Path is where it would have been written (relative to the target,
	// or its name in an archive).
	Path string `json:"path"`
	// Dir is set when a directory could not be read: all its contents are
	// left out.
	Dir bool `json:"dir,omitempty"`
	// OlderSnapshot is the newest older snapshot holding the same path
	// with every chunk intact; empty if there is none.
	OlderSnapshot string `json:"older_snapshot,omitempty"`
	// Err says what was wrong with it.
	Err string `json:"error,omitempty"`
}

// DamagedError is returned, together with everything that could be
// restored, when some files were left out; it matches blob.ErrDamaged.
type DamagedError struct {
	Files []DamagedFile
}

func (e *DamagedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %d file(s) could not be restored (", blob.ErrDamaged, len(e.Files))
	for i, f := range e.Files[:min(5, len(e.Files))] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Path)
		if f.Dir {
			b.WriteString("/")
		}
	}
	if len(e.Files) > 5 {
		b.WriteString(", ...")
	}
	b.WriteString("); the rest were")
	return b.String()
}

// Is makes errors.Is(err, blob.ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == blob.ErrDamaged }

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

// collect lists every entry under the tree id in walk's order (depth
// first, by name). It fetches the trees level by level, up to fetchBatch in
// one request and restoreWorkers requests at once: over the network a
// request is a round trip, and a Journal has two directories per entry. A
// directory whose tree is damaged or missing is listed in bad (its
// contents are not), and the rest goes on; the error is for the tree id
// itself or for a failure of the source.
func collect(ctx context.Context, src Source, id chunk.ID, dir string) (out []item, bad []item, err error) {
	trees := map[chunk.ID]*manifest.Tree{}
	broken := map[chunk.ID]error{}
	frontier := []chunk.ID{id}
	for depth := 0; len(frontier) > 0; depth++ {
		if depth > manifest.MaxDepth {
			return nil, nil, fmt.Errorf("%w: directories nested deeper than %d", blob.ErrDamaged, manifest.MaxDepth)
		}
		if err := fetchTrees(ctx, src, frontier, trees, broken); err != nil {
			return nil, nil, err
		}
		if err := broken[id]; err != nil {
			return nil, nil, err
		}
		var next []chunk.ID
		queued := map[chunk.ID]bool{}
		for _, id := range frontier {
			t := trees[id]
			if t == nil {
				continue
			}
			for _, e := range t.Entries {
				if e.Type == manifest.Dir && trees[e.Subtree] == nil && broken[e.Subtree] == nil && !queued[e.Subtree] {
					queued[e.Subtree] = true
					next = append(next, e.Subtree)
				}
			}
		}
		frontier = next
	}
	var list func(id chunk.ID, dir string)
	list = func(id chunk.ID, dir string) {
		t := trees[id]
		for i := range t.Entries {
			if len(out)+len(bad) >= MaxItems {
				err = ErrTooManyItems
				return
			}
			e := &t.Entries[i]
			p := path.Join(dir, e.Name)
			if e.Type == manifest.Dir && trees[e.Subtree] == nil {
				bad = append(bad, item{p, e})
				continue
			}
			out = append(out, item{p, e})
			if e.Type == manifest.Dir {
				list(e.Subtree, p)
			}
		}
	}
	list(id, dir)
	if err != nil {
		return nil, nil, err
	}
	return out, bad, nil
}

// MaxItems caps the files and directories one restore takes: a tree may
// name the same subtree many times, stored once, so a snapshot of a few
// kilobytes can list billions of paths. A Journal holds tens of thousands.
const MaxItems = 1 << 20

// ErrTooManyItems: a restore would take more than MaxItems files and
// directories.
var ErrTooManyItems = fmt.Errorf("restore: the snapshot lists more than %d files and directories (a tree that repeats its subtrees?); restore fewer paths", MaxItems)

// fetchTrees fetches, checks and decodes the trees ids into trees. A tree
// that is damaged or missing goes into broken with its error; if one tree
// of a batch is, the rest of that batch is fetched one by one.
func fetchTrees(ctx context.Context, src Source, ids []chunk.ID, trees map[chunk.ID]*manifest.Tree, broken map[chunk.ID]error) error {
	var mu sync.Mutex
	fetch := func(ctx context.Context, refs []blob.Ref) error {
		return src.Fetch(ctx, refs, func(r blob.Ref, raw []byte) error {
			if chunk.Sum(raw) != r.ID {
				return fmt.Errorf("%w: tree %s fails its hash check", blob.ErrDamaged, r.ID.Short())
			}
			t, err := manifest.Decode(raw)
			if err != nil {
				return fmt.Errorf("%w: tree %s: %v", blob.ErrDamaged, r.ID.Short(), err)
			}
			mu.Lock()
			trees[r.ID] = t
			mu.Unlock()
			return nil
		})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(restoreWorkers)
	for i := 0; i < len(ids); i += fetchBatch {
		refs := make([]blob.Ref, 0, fetchBatch)
		for _, id := range ids[i:min(len(ids), i+fetchBatch)] {
			refs = append(refs, blob.Ref{Type: blob.Tree, ID: id})
		}
		g.Go(func() error {
			err := fetch(gctx, refs)
			if !errors.Is(err, blob.ErrDamaged) {
				return err
			}
			for _, r := range refs {
				mu.Lock()
				done := trees[r.ID] != nil
				mu.Unlock()
				if done {
					continue
				}
				if err := fetch(gctx, []blob.Ref{r}); errors.Is(err, blob.ErrDamaged) {
					mu.Lock()
					broken[r.ID] = err
					mu.Unlock()
				} else if err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
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
// re-hashed before its bytes are written, and each file is written under a
// temporary name in its directory and renamed into place only once whole:
// a file with a damaged or missing chunk (or a directory whose tree is) is
// left out, never written in part, and listed in Damaged; Restore then
// returns a *DamagedError (matching blob.ErrDamaged) after restoring
// everything else.
func Restore(ctx context.Context, src Source, root chunk.ID, target string, opts Options) (*Result, error) {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, fmt.Errorf("create restore target: %w", err)
	}
	if opts.ResumeFile != "" {
		// Run again after an interruption: what the killed run was
		// writing is no file of the snapshot.
		sweepTemps(target, time.Now())
	}
	r, err := os.OpenRoot(target)
	if err != nil {
		return nil, fmt.Errorf("open restore target: %w", err)
	}
	defer r.Close()
	res := &Result{}
	var todo []item
	paths := requested(opts.Paths)
	for _, p := range paths {
		e, err := Lookup(ctx, src, root, p)
		p = strings.Trim(path.Clean("/"+p), "/")
		if errors.Is(err, blob.ErrDamaged) && p != "" {
			res.Damaged = append(res.Damaged, DamagedFile{Path: p, Err: err.Error()})
			continue
		}
		if err != nil {
			return nil, err
		}
		if p != "" {
			todo = append(todo, item{p, e})
		}
		if e.Type == manifest.Dir {
			sub, bad, err := collect(ctx, src, e.Subtree, p)
			if errors.Is(err, blob.ErrDamaged) && p != "" {
				todo = todo[:len(todo)-1]
				res.Damaged = append(res.Damaged, DamagedFile{Path: p, Dir: true, Err: err.Error()})
				continue
			}
			if err != nil {
				return nil, err
			}
			todo = append(todo, sub...)
			for _, it := range bad {
				res.Damaged = append(res.Damaged, DamagedFile{Path: it.p, Dir: true, Err: "its directory listing is damaged or missing"})
			}
		}
	}
	var prog Progress
	for _, it := range todo {
		if it.e.Type == manifest.File {
			prog.TotalFiles++
			prog.TotalBytes += it.e.Size
		}
	}
	var dirs, files []item
	made := map[string]bool{".": true} // directories known to exist
	for _, it := range todo {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if dir := path.Dir(it.p); !made[dir] {
			if err := r.MkdirAll(dir, 0o755); err != nil {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
			made[dir] = true
		}
		switch it.e.Type {
		case manifest.Dir:
			if err := r.Mkdir(it.p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return res, fmt.Errorf("restore %s: %w", it.p, err)
			}
			made[it.p] = true
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
	var resume *resumeLog
	if opts.ResumeFile != "" {
		if resume, err = openResume(opts.ResumeFile, root, target); err != nil {
			return res, err
		}
	}
	// Files in parallel: a Journal is many small files, and over the
	// network each request costs a round trip, so runs of small files are
	// fetched together.
	var mu sync.Mutex
	finish := func(it item, n int64, err error) error {
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, blob.ErrDamaged) {
			res.Damaged = append(res.Damaged, DamagedFile{Path: it.p, Err: err.Error()})
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
	}
	if resume != nil {
		left := files[:0]
		for _, it := range files {
			if !resume.same(r, it.p, it.e) {
				left = append(left, it)
				continue
			}
			res.Kept++
			finish(it, it.e.Size, nil)
		}
		files = left
	}
	w := writing{overwrite: opts.Overwrite, resume: resume}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(restoreWorkers)
	for _, group := range groupFiles(files) {
		g.Go(func() error {
			if len(group) == 1 {
				n, err := restoreFile(gctx, src, r, group[0].p, group[0].e, w)
				return finish(group[0], n, err)
			}
			return restoreGroup(gctx, src, r, group, w, finish)
		})
	}
	err = g.Wait()
	resume.close(err == nil && len(res.Damaged) == 0)
	if err != nil {
		return res, err
	}
	// Directory modes and times last, deepest first, once their contents exist.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		r.Chmod(d.p, d.e.Mode.Perm()|0o700)
		mt := time.Unix(0, d.e.MTime)
		r.Chtimes(d.p, mt, mt)
	}
	if len(res.Damaged) == 0 {
		return res, nil
	}
	slices.SortFunc(res.Damaged, func(a, b DamagedFile) int { return strings.Compare(a.Path, b.Path) })
	if len(opts.Older) > 0 {
		ic := NewIntactChecker(src)
		for i := range res.Damaged {
			d := &res.Damaged[i]
			if d.OlderSnapshot, err = ic.FindOlder(ctx, opts.Older, []string{d.Path}); err != nil {
				return res, err
			}
		}
	}
	return res, &DamagedError{Files: res.Damaged}
}

// restoreWorkers is how many files are restored at once.
const restoreWorkers = 8

// fetchBatch is how many chunks are requested at once.
const fetchBatch = 64

// groupFiles splits files into the units a restore worker fetches in one
// request: runs of small files with at most fetchBatch chunks between them,
// and every larger file alone.
func groupFiles(files []item) [][]item {
	var groups [][]item
	var cur []item
	chunks := 0
	for _, it := range files {
		n := len(it.e.Chunks)
		if len(cur) > 0 && (chunks+n > fetchBatch || len(cur) == fetchBatch) {
			groups = append(groups, cur)
			cur, chunks = nil, 0
		}
		cur = append(cur, it)
		chunks += n
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// restoreGroup restores a run of small files with one Fetch of all their
// chunks, calling finish for each file. If a chunk is damaged, the files from
// the one it belongs to on are restored one by one, so only files with
// damaged chunks are left out.
func restoreGroup(ctx context.Context, src Source, root *os.Root, group []item, w writing, finish func(item, int64, error) error) error {
	d := &dirRoot{top: root}
	defer d.close()
	var refs []blob.Ref
	for _, it := range group {
		for _, id := range it.e.Chunks {
			refs = append(refs, blob.Ref{Type: blob.Chunk, ID: id})
		}
	}
	var (
		i int       // the file being written
		f *tempFile // group[i], open
		n int64     // bytes written to it
		k int       // chunks written to it
	)
	// settle closes the files that have all their chunks (and creates
	// empty ones) up to the next file that still needs some.
	settle := func() error {
		for i < len(group) {
			it := group[i]
			if f == nil {
				var err error
				if f, err = createFile(d, it.p, w); err != nil {
					return err
				}
				n, k = 0, 0
			}
			if k < len(it.e.Chunks) {
				return nil
			}
			err := f.commit(it.e, n)
			f = nil
			i++
			if err := finish(it, n, err); err != nil {
				return err
			}
		}
		return nil
	}
	err := settle()
	if err == nil {
		err = src.Fetch(ctx, refs, func(r blob.Ref, raw []byte) error {
			if f == nil {
				return fmt.Errorf("the server sent more chunks than asked for")
			}
			if chunk.Sum(raw) != r.ID {
				return fmt.Errorf("%w: chunk %s fails its hash check", blob.ErrDamaged, r.ID.Short())
			}
			m, err := f.f.Write(raw)
			n += int64(m)
			k++
			if err != nil {
				return fmt.Errorf("restore %s: %w", group[i].p, err)
			}
			return settle()
		})
	}
	if f != nil {
		f.abort()
	}
	if errors.Is(err, blob.ErrDamaged) && i < len(group) {
		for _, it := range group[i:] {
			n, err := restoreFile(ctx, src, root, it.p, it.e, w)
			if err := finish(it, n, err); err != nil {
				return err
			}
		}
		return nil
	}
	if err == nil && i < len(group) {
		err = fmt.Errorf("%w: the server sent fewer chunks than asked for", blob.ErrDamaged)
	}
	return err
}

// dirRoot keeps the os.Root of the directory a worker writes in, so that
// creating a file and setting its times resolve one name, not every
// component of the path again (the files of a group share directories).
type dirRoot struct {
	top *os.Root
	dir string
	cur *os.Root
}

// at returns the root to use for p and p's name in it.
func (d *dirRoot) at(p string) (*os.Root, string, error) {
	dir, name := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return d.top, name, nil
	}
	if d.cur == nil || d.dir != dir {
		d.close()
		sub, err := d.top.OpenRoot(dir)
		if err != nil {
			return nil, "", err
		}
		d.cur, d.dir = sub, dir
	}
	return d.cur, name, nil
}

func (d *dirRoot) close() {
	if d.cur != nil {
		d.cur.Close()
		d.cur = nil
	}
}

// tempFile is a file being restored: written under a temporary name in its
// directory, renamed to its real name by commit, removed by abort.
type tempFile struct {
	f         *os.File
	root      *os.Root // of its directory
	tmp, name string
	p         string // its path in the restore, for errors
	writing
}

// writing is how a restore writes its files: whether it replaces those
// that exist, and the progress file that lists each one written whole
// (nil: none).
type writing struct {
	overwrite bool
	resume    *resumeLog
}

// tempPrefix starts the names of files being restored; a restore that is
// killed may leave one behind, never a file under its real name.
const tempPrefix = ".xs-restore-"

// sweepTemps removes, below target, the temporary files of restores that
// were cut off (regular files named tempPrefix..., last written before
// start: a restore running beside this one is writing its own now).
// Symbolic links are not followed.
func sweepTemps(target string, start time.Time) {
	filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(start) {
			os.Remove(p)
		}
		return nil
	})
}

func createFile(d *dirRoot, p string, w writing) (*tempFile, error) {
	root, name, err := d.at(p)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", p, err)
	}
	if !w.overwrite {
		if _, err := root.Lstat(name); err == nil {
			return nil, fmt.Errorf("restore %s: %w"+ExistsHint, p, fs.ErrExist)
		}
	}
	for try := 0; ; try++ {
		tmp := fmt.Sprintf("%s%s-%08x", tempPrefix, name[:min(len(name), 100)], rand.Uint32())
		f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return &tempFile{f: f, root: root, tmp: tmp, name: name, p: p, writing: w}, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 9 {
			return nil, fmt.Errorf("restore %s: %w", p, err)
		}
	}
}

// ExistsHint ends the error of a restore that found a file where it would
// write one: programs whose option has another name replace it with
// their own advice.
const ExistsHint = " (use the overwrite option to replace it)"

// abort closes and removes the temporary file.
func (t *tempFile) abort() {
	t.f.Close()
	t.root.Remove(t.tmp)
}

// commit checks the size, sets the mode, closes the file and moves it to
// its real name (never replacing one unless overwriting), then sets its
// times, and lists it in the progress file. On any error the temporary
// file is removed.
func (t *tempFile) commit(e *manifest.Entry, n int64) error {
	var err error
	if n != e.Size {
		err = fmt.Errorf("%w: restored %d bytes, the manifest says %d", blob.ErrDamaged, n, e.Size)
	}
	if err == nil {
		err = t.f.Chmod(e.Mode.Perm()) // on the open file: no second path lookup
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		mt := time.Unix(0, e.MTime)
		err = t.root.Chtimes(t.tmp, mt, mt)
	}
	if err == nil {
		if t.overwrite {
			err = t.root.Rename(t.tmp, t.name)
		} else if err = t.root.Link(t.tmp, t.name); err == nil {
			t.root.Remove(t.tmp)
		} else if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%w"+ExistsHint, err)
		} else if noHardLinks(err) {
			// FAT or exFAT (a USB stick): no hard links, so no "create if
			// absent" in one step; the name is checked, then taken.
			if _, lerr := t.root.Lstat(t.name); lerr == nil {
				err = fmt.Errorf("%w"+ExistsHint, fs.ErrExist)
			} else {
				err = t.root.Rename(t.tmp, t.name)
			}
		}
	}
	if err != nil {
		t.root.Remove(t.tmp)
		return fmt.Errorf("restore %s: %w", t.p, err)
	}
	t.resume.record(t.root, t.name, t.p)
	return nil
}

func restoreFile(ctx context.Context, src Source, root *os.Root, p string, e *manifest.Entry, w writing) (int64, error) {
	d := &dirRoot{top: root}
	defer d.close()
	f, err := createFile(d, p, w)
	if err != nil {
		return 0, err
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
			m, err := f.f.Write(raw)
			n += int64(m)
			return err
		})
	}
	if err != nil {
		f.abort()
		return n, fmt.Errorf("restore %s: %w", p, err)
	}
	return n, f.commit(e, n)
}

// requested cleans the paths asked for and drops repeats and paths inside
// another one asked for ("d" and "d/f": d's restore writes d/f): each file
// is restored once. No paths is the whole snapshot ("").
func requested(paths []string) []string {
	clean := make([]string, 0, max(len(paths), 1))
	for _, p := range paths {
		clean = append(clean, strings.Trim(path.Clean("/"+p), "/"))
	}
	if len(clean) == 0 || slices.Contains(clean, "") {
		return []string{""}
	}
	// Shorter first, so that a directory comes before what is inside it.
	slices.SortStableFunc(clean, func(a, b string) int { return len(a) - len(b) })
	kept := map[string]bool{}
	out := clean[:0]
next:
	for _, p := range clean {
		for a := p; ; {
			if kept[a] {
				continue next
			}
			i := strings.LastIndexByte(a, '/')
			if i < 0 {
				break
			}
			a = a[:i]
		}
		kept[p] = true
		out = append(out, p)
	}
	return out
}

// noHardLinks reports whether a link failed because the filesystem has no
// hard links (FAT and exFAT answer EPERM, others EOPNOTSUPP).
func noHardLinks(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EXDEV)
}
