package xsbackup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// Errors callers may branch on (with errors.Is).
var (
	// ErrNotRegistered: Dial found no registration in the state directory.
	// It is agent.ErrNotRegistered.
	ErrNotRegistered = agent.ErrNotRegistered
	// ErrClosed: the Repo (or a file system opened from it) was used after
	// Close.
	ErrClosed = errors.New("xsbackup: repository is closed")
	// ErrNotFound: no snapshot with that ID.
	ErrNotFound = errors.New("xsbackup: no such snapshot")
	// ErrInvalidPath: a path given to Restore is not a relative path inside
	// the snapshot: names joined by single slashes, none of them "." or
	// ".." or holding a NUL ("." alone is the whole snapshot); a local
	// Repo's Restore target is, holds or lies inside its store's
	// directory; or Backup was given no directory.
	ErrInvalidPath = errors.New("xsbackup: invalid path")
	// ErrBusy: the school server asked this laptop to come back later (it
	// reserved a slot), another backup of this laptop is running, or the
	// backup was skipped (the reason says why: the server did not answer,
	// an empty folder waits for a reflashed laptop's restore).
	ErrBusy = errors.New("xsbackup: busy")
)

// Options configure OpenLocal and Dial. The zero value is a good default.
type Options struct {
	// Exclude, if set, is asked about every path Backup finds (slash
	// separated, relative to the backed-up directory); true leaves it (and
	// a directory's contents) out. Nil backs up everything. Use
	// JournalExclude for a Sugar Journal.
	Exclude func(rel string, isDir bool) bool
	// Host is recorded with every snapshot (default: os.Hostname).
	Host string
	// Progress, if set, is called after each file Backup looks at.
	Progress func(Progress)
	// Reserve (OpenLocal only) is the free disk space, in bytes, the local
	// store keeps: a backup that would go below it fails instead of filling
	// the disk. Default 256 MiB; negative turns the check off.
	Reserve int64
}

// Progress reports a running backup.
type Progress = backup.Progress

// JournalExclude leaves out the disposable parts of a Sugar Journal
// datastore (the Xapian index, its flag files, checksums, temp files).
func JournalExclude(rel string, isDir bool) bool { return backup.JournalExclude(rel, isDir) }

// Snapshot is one backup of a directory. The same type describes snapshots
// in a local store and on a school server.
type Snapshot struct {
	// ID names the snapshot, e.g. "20261122T073000Z-1a2b3c"; IDs sort by time.
	ID string
	// Time is when the snapshot was committed, by the store's clock.
	Time time.Time
	// Files is the number of files, Size their total size in bytes.
	Files int64
	Size  int64
	// Pinned snapshots are kept by retention and quota for ever.
	Pinned bool
}

// backend is what a Repo does on a local store or a school server.
type backend interface {
	backup(ctx context.Context, dir string, o Options) (Snapshot, error)
	snapshots(ctx context.Context) ([]Snapshot, error)
	// find returns the snapshot id and its root tree, or ErrNotFound.
	find(ctx context.Context, id string) (chunk.ID, error)
	source() restore.Source
	restore(ctx context.Context, id, target string, paths []string) error
	close() error
}

// Repo is a place backups go: a local store (OpenLocal) or this laptop's
// school server (Dial). Its methods are safe for concurrent use; Backups
// of one Repo run one at a time.
type Repo struct {
	opts Options
	be   backend

	backupMu sync.Mutex // one Backup at a time: they share the file cache

	// Every call (and every read of a file system from Open) counts itself
	// in flight; Close marks the Repo closed, so that no call starts after
	// it, and waits for those in flight. A call made from inside another
	// (a Progress callback) is one more in flight, not a second hold of a
	// lock Close waits for.
	mu       sync.Mutex
	idle     sync.Cond // signalled when inFlight drops to 0
	inFlight int       // guarded by mu
	closed   bool      // guarded by mu
}

// enter starts a call; the caller must call the returned function.
func (r *Repo) enter() (func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.inFlight++
	return r.leave, nil
}

func (r *Repo) leave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inFlight--; r.inFlight == 0 && r.idle.L != nil {
		r.idle.Broadcast()
	}
}

// Backup backs dir up and returns the new snapshot. Files unchanged since
// the last Backup of dir are not read again (a file cache is kept in the
// store directory, or in the laptop's state directory for a server). If
// the snapshot was committed but the cache could not be saved, Backup
// returns the snapshot and an error saying so.
func (r *Repo) Backup(ctx context.Context, dir string) (Snapshot, error) {
	done, err := r.enter()
	if err != nil {
		return Snapshot{}, err
	}
	defer done()
	if dir == "" {
		return Snapshot{}, fmt.Errorf("%w: no directory to back up", ErrInvalidPath)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Snapshot{}, err
	}
	if fi, err := os.Stat(abs); err != nil {
		return Snapshot{}, fmt.Errorf("xsbackup: backup source: %w", err)
	} else if !fi.IsDir() {
		return Snapshot{}, fmt.Errorf("xsbackup: backup source %s is not a directory", abs)
	}
	o := r.opts
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	r.backupMu.Lock()
	defer r.backupMu.Unlock()
	return r.be.backup(ctx, abs, o)
}

// Snapshots lists the snapshots, oldest first.
func (r *Repo) Snapshots(ctx context.Context) ([]Snapshot, error) {
	done, err := r.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	return r.be.snapshots(ctx)
}

// Open returns the snapshot as a read-only file system (with ReadDir, Stat
// and ReadFile through io/fs's helpers). Trees and file contents are read
// on demand, with ctx, and every chunk is verified before its bytes are
// returned; a damaged chunk makes that file's Read fail with an error
// matching blob.ErrDamaged. Symbolic links are listed but not followed.
// The file system works until the Repo is closed; after that every read
// fails with ErrClosed.
func (r *Repo) Open(ctx context.Context, sn Snapshot) (fs.FS, error) {
	done, err := r.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	root, err := r.be.find(ctx, sn.ID)
	if err != nil {
		return nil, err
	}
	return &guardedFS{r: r, fsys: restore.SnapshotFS(ctx, &guardedSource{r: r, src: r.be.source()}, root)}, nil
}

// Restore writes the snapshot, or only the given paths (files or whole
// directories, slash-separated, relative to the snapshot's root, e.g.
// "notes/poem.txt"), under target, creating target if needed. Nothing is
// ever written outside target, and every chunk is verified first. Existing
// files are not overwritten: restoring onto one is an error. A file whose
// stored data is damaged is left out (never written in part) and the
// error, a *restore.DamagedError matching blob.ErrDamaged, lists it; every
// other file is restored.
//
// Into a directory where Sugar's datastore has run (journal.IsDatastore),
// Restore also asks Sugar to index what it wrote (journal.RequestReindex):
// Sugar's Journal lists only what its index holds, and lists the restored
// entries from Sugar's next start. When it cannot, the error says why
// (joined to the restore's own, if any).
func (r *Repo) Restore(ctx context.Context, sn Snapshot, target string, paths ...string) error {
	done, err := r.enter()
	if err != nil {
		return err
	}
	defer done()
	if target == "" {
		return fmt.Errorf("%w: no restore target", ErrInvalidPath)
	}
	for _, p := range paths {
		if !validPath(p) {
			return fmt.Errorf("%w: %q (want a relative path inside the snapshot, like \"notes/poem.txt\", without \"..\")", ErrInvalidPath, p)
		}
	}
	if _, err := r.be.find(ctx, sn.ID); err != nil {
		return err
	}
	sugar := journal.IsDatastore(target)
	err = r.be.restore(ctx, sn.ID, target, paths)
	if errors.Is(err, fs.ErrExist) {
		// Not restore's advice of an option this package does not offer.
		err = existsError{strings.Replace(err.Error(), restore.ExistsHint, "", 1) +
			" (Restore never replaces a file: restore into an empty folder, or move the file away)"}
	}
	if sugar {
		// Whatever stopped the restore, what it wrote is whole.
		if rerr := journal.RequestReindex(target); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// validPath reports whether p names an entry of a snapshot: "." (all of
// it), or names a snapshot may hold (not "." or "..", no NUL, any bytes
// otherwise, as Open lists them) joined by single slashes.
func validPath(p string) bool {
	if p == "." {
		return true
	}
	for _, el := range strings.Split(p, "/") {
		if manifest.ValidName(el) != nil {
			return false
		}
	}
	return true
}

// existsError is a restore that would have replaced an existing file; it
// matches fs.ErrExist.
type existsError struct{ msg string }

func (e existsError) Error() string { return e.msg }
func (e existsError) Unwrap() error { return fs.ErrExist }

// Close waits for calls in flight and releases the store or the connection.
// Every later call, and every read of a file system from Open, fails with
// ErrClosed. Closing twice is harmless.
func (r *Repo) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.idle.L == nil {
		r.idle.L = &r.mu
	}
	for r.inFlight > 0 {
		r.idle.Wait()
	}
	r.mu.Unlock()
	return r.be.close()
}

// guardedFS is a snapshot's file system that works while the Repo is open:
// every call, and every call on a file or directory it opened, fails with
// ErrClosed after Close (also for what it could answer from memory).
type guardedFS struct {
	r    *Repo
	fsys fs.FS
}

func (g *guardedFS) Open(name string) (fs.File, error) {
	done, err := g.r.enter()
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer done()
	f, err := g.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	if d, ok := f.(fs.ReadDirFile); ok {
		return &guardedDir{guardedFile{g.r, f, name}, d}, nil
	}
	return &guardedFile{g.r, f, name}, nil
}

func (g *guardedFS) Stat(name string) (fs.FileInfo, error) {
	done, err := g.r.enter()
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	defer done()
	return fs.Stat(g.fsys, name)
}

func (g *guardedFS) ReadDir(name string) ([]fs.DirEntry, error) {
	done, err := g.r.enter()
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	defer done()
	return fs.ReadDir(g.fsys, name)
}

type guardedFile struct {
	r    *Repo
	f    fs.File
	name string
}

func (g *guardedFile) Stat() (fs.FileInfo, error) {
	done, err := g.r.enter()
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: g.name, Err: err}
	}
	defer done()
	return g.f.Stat()
}

func (g *guardedFile) Read(p []byte) (int, error) {
	done, err := g.r.enter()
	if err != nil {
		return 0, &fs.PathError{Op: "read", Path: g.name, Err: err}
	}
	defer done()
	return g.f.Read(p)
}

func (g *guardedFile) Close() error { return g.f.Close() }

type guardedDir struct {
	guardedFile
	d fs.ReadDirFile
}

func (g *guardedDir) ReadDir(n int) ([]fs.DirEntry, error) {
	done, err := g.r.enter()
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: g.name, Err: err}
	}
	defer done()
	return g.d.ReadDir(n)
}

// guardedSource reads through the Repo's backend while the Repo is open.
type guardedSource struct {
	r   *Repo
	src restore.Source
}

func (g *guardedSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	done, err := g.r.enter()
	if err != nil {
		return err
	}
	defer done()
	return g.src.Fetch(ctx, refs, fn)
}

// noExclude backs up everything (agent.Run would otherwise apply the
// Journal's exclusions).
func noExclude(string, bool) bool { return false }
