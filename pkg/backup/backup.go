// Package backup is the laptop side of a backup: it walks a directory, cuts
// changed files into chunks with the server's parameters, asks the server
// which chunks it needs, uploads only those, builds the manifest trees and
// commits the snapshot. The server is anything that implements Target: the
// store itself (store.Store.Target) or a network client (proto.Client).
//
// Memory stays flat however big the directory is: files are streamed, and
// at most BatchBytes of chunk data is held before it is sent.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Target is where a backup goes.
type Target interface {
	// Need reports for each ref whether the target needs it uploaded.
	Need(ctx context.Context, refs []blob.Ref) ([]bool, error)
	// Put uploads blobs. It must not keep their Data once it returns: Run
	// reuses that memory for the next batch.
	Put(ctx context.Context, blobs []blob.Blob) error
	// Commit records a snapshot of the tree root and returns its ID. It
	// fails with an error wrapping blob.ErrNotHeld if a referenced blob is
	// not on the target for this user.
	Commit(ctx context.Context, root chunk.ID) (string, error)
}

// DamageReporter is an optional Target interface: a target that knows which
// of this laptop's blobs it holds only damaged copies of (bit rot found by
// its scrub or a read) names them, and Run reads the files they came from
// again, even when unchanged, so that they are sent again and heal.
type DamageReporter interface {
	// Damaged lists those blobs; all reports that there are more than the
	// list holds (Run then reads every file).
	Damaged(ctx context.Context) (refs []blob.Ref, all bool, err error)
}

// Options configure Run.
type Options struct {
	// Params are the target's chunker parameters (required).
	Params chunk.Params
	// Codec compresses chunks; nil creates one for the run.
	Codec *chunk.Codec
	// Cache lets unchanged files go unread; nil reads every file.
	Cache *Cache
	// Exclude, if set, is asked about every path (slash-separated, relative
	// to the backed-up directory); true leaves it (and a directory's
	// contents) out of the snapshot.
	Exclude func(rel string, isDir bool) bool
	// Progress, if set, is called after each file.
	Progress func(Progress)
	// BatchBytes is how much chunk data is collected before asking the
	// target what it needs. Default 4 MiB.
	BatchBytes int
	// Workers hash and compress in parallel; 0 means one per CPU.
	Workers int
	// Scan, if set, is the walk EstimateScan just made of the same
	// directory: Run takes directory listings and lstats from it instead
	// of walking again. A file changed since that the run does not read
	// is picked up by the next run (its stat then differs from what the
	// cache recorded); one it reads, found changed or gone since the scan,
	// makes Run walk again before it commits: the snapshot never holds a
	// file as it is now beside one as it was at the scan (a Journal
	// entry's new title over its old document). If the scan
	// found the whole tree as Cache recorded it for the last committed
	// snapshot, and Cache has not changed since, Run takes that snapshot's
	// root without walking at all.
	Scan *Scan
}

// Progress reports a running backup.
type Progress struct {
	Files        int64
	BytesScanned int64
	BytesRead    int64
	BytesSent    int64
	Path         string
}

// Result summarises a backup. JSON names are those xo-backup --json prints.
type Result struct {
	Snapshot     string        `json:"snapshot"`
	Root         chunk.ID      `json:"root"`
	Files        int64         `json:"files"`
	Dirs         int64         `json:"dirs"`          // directories below the root, excluded ones left out
	BytesScanned int64         `json:"bytes_scanned"` // size of all files
	BytesRead    int64         `json:"bytes_read"`    // file content actually read
	BytesSent    int64         `json:"bytes_sent"`    // blob bytes uploaded
	ChunksNew    int64         `json:"chunks_new"`    // chunks uploaded
	ChunksTotal  int64         `json:"chunks_total"`  // chunks in the snapshot
	TreesNew     int64         `json:"trees_new"`
	Duration     time.Duration `json:"-"`
	DurationMS   int64         `json:"duration_ms"`
	// Skipped lists files that vanished or could not be read during the run.
	Skipped []string `json:"skipped,omitempty"`
}

// JournalExclude leaves out the disposable parts of a Sugar Journal
// datastore: the Xapian index, its flag files, checksums and temp files.
func JournalExclude(rel string, isDir bool) bool {
	top, _, _ := strings.Cut(rel, "/")
	switch top {
	case "index", "index_updated", "ds_clean", "checksums":
		return top == rel || isDir || strings.HasPrefix(rel, top+"/")
	}
	base := path.Base(rel)
	return strings.HasSuffix(base, ".tmp") || strings.HasPrefix(base, ".tmp") || strings.HasSuffix(base, "~") ||
		strings.HasPrefix(base, ".xs-restore-") // a file a killed restore was writing (pkg/restore)
}

type runner struct {
	ctx   context.Context
	t     Target
	opts  Options
	codec *chunk.Codec
	cache *Cache
	res   Result
	root  string // the directory backed up, as given to Run
	start time.Time

	batch      []blob.Blob
	batchBytes int
	arena      []byte                // the queued chunks' bytes (see keep)
	queued     map[blob.Ref]struct{} // asked about or sent in this run

	// stale: a file the scan (Options.Scan) listed was gone or had
	// changed when it was read: the scan is older than the Journal.
	stale bool
	// rec, while a Journal entry is backed up, holds the lstat each of
	// its files and directories was taken at (see entry); fresh makes
	// dir list directories again instead of taking the scan's listing.
	rec, recBuf map[string]fileStat // by path relative to root
	fresh       bool
}

// errStaleScan: the Journal changed between the scan this run used and its
// reading of the files; the run is not committed.
var errStaleScan = errors.New("the Journal changed since it was scanned")

// Run backs up dir to t and returns what it did. If the target refuses the
// commit because it lacks, or holds only damaged copies of, blobs the file
// cache said it had (its pending uploads expired, the store was repaired or
// rebuilt, bit rot), Run forgets the cache and runs once more, reading every
// file and sending whatever the target needs.
func Run(ctx context.Context, dir string, t Target, opts Options) (*Result, error) {
	res, err := run(ctx, dir, t, opts)
	if errors.Is(err, errStaleScan) {
		// Sugar saved an entry after the scan: a snapshot from the scan's
		// listing and lstats would hold its new metadata over its old
		// document. A walk of the Journal as it is now, instead.
		opts.Scan = nil
		res, err = run(ctx, dir, t, opts)
	}
	if (errors.Is(err, blob.ErrNotHeld) || errors.Is(err, blob.ErrDamaged)) && opts.Cache != nil && (opts.Cache.Len() > 0 || len(opts.Cache.trees) > 0) {
		opts.Cache.Reset()
		res, err = run(ctx, dir, t, opts)
	}
	return res, err
}

func run(ctx context.Context, dir string, t Target, opts Options) (*Result, error) {
	start := time.Now()
	if err := opts.Params.Validate(); err != nil {
		return nil, fmt.Errorf("chunker parameters from the server: %w", err)
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	r := &runner{ctx: ctx, t: t, opts: opts, codec: opts.Codec, cache: opts.Cache, root: dir, start: start, queued: map[blob.Ref]struct{}{}}
	if r.codec == nil {
		c, err := chunk.NewCodec()
		if err != nil {
			return nil, err
		}
		defer c.Close()
		r.codec = c
	}
	if r.cache == nil {
		r.cache = NewCache()
	}
	if d, ok := t.(DamageReporter); ok {
		refs, all, err := d.Damaged(ctx)
		if err != nil {
			return nil, fmt.Errorf("ask which stored blobs are damaged: %w", err)
		}
		if all {
			r.cache.Reset()
		} else {
			r.cache.Forget(refs)
		}
	}
	r.cache.startRun()
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("backup source: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("backup source %s is not a directory", dir)
	}
	rootSt := statOf(st)
	if _, ok := opts.Scan.entries(dir, ""); ok {
		rootSt = opts.Scan.rootSt // the stat that goes with the scan's listing
	}
	var root chunk.ID
	if s := opts.Scan; s.sameAsCache(dir, r.cache) {
		// Nothing changed since the last snapshot: it is this one's too.
		// (A walk of the scan would find each directory clean and reach
		// the same root, looking every file up again.)
		root = r.cache.dirs[""].tree
		r.cache.seenAll(s.sameTrees)
		r.res.Files, r.res.Dirs, r.res.BytesScanned, r.res.ChunksTotal = s.sameRes.Files, s.sameRes.Dirs, s.sameRes.BytesScanned, s.sameRes.ChunksTotal
		if r.opts.Progress != nil {
			r.opts.Progress(Progress{Files: r.res.Files, BytesScanned: r.res.BytesScanned})
		}
	} else if root, _, err = r.dir(filepath.Clean(dir), "", rootSt, 0); err != nil {
		return nil, err
	}
	if err := r.flush(); err != nil {
		return nil, err
	}
	if r.stale {
		// What was read is sent (the cache now lists it); the snapshot
		// is not committed.
		return nil, errStaleScan
	}
	r.res.Root = root
	id, err := t.Commit(ctx, root)
	if err != nil {
		return &r.res, err
	}
	r.cache.committed()
	r.res.Snapshot = id
	r.res.Duration = time.Since(start)
	r.res.DurationMS = r.res.Duration.Milliseconds()
	return &r.res, nil
}

type fileStat struct {
	size, mtime, ctime int64
	ino                uint64
}

func statOf(fi fs.FileInfo) fileStat {
	if si, ok := fi.(*scanInfo); ok {
		return si.st
	}
	st := fileStat{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ctime = nanos(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec))
		st.ino = uint64(sys.Ino)
	}
	return st
}

func statOfSys(sys *syscall.Stat_t) fileStat {
	return fileStat{size: int64(sys.Size), mtime: nanos(int64(sys.Mtim.Sec), int64(sys.Mtim.Nsec)),
		ctime: nanos(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec)), ino: uint64(sys.Ino)}
}

// dir backs up one directory, whose lstat is st, and returns its tree's
// ID, and whether the directory is as the cache recorded it: its lstat
// and entries the same, every file in it unchanged and every directory
// below it the same (then its tree is the cached one, not encoded again).
func (r *runner) dir(abs, rel string, st fileStat, depth int) (chunk.ID, bool, error) {
	if err := r.ctx.Err(); err != nil {
		return chunk.ID{}, false, err
	}
	if depth >= manifest.MaxDepth {
		return chunk.ID{}, false, fmt.Errorf("%s: %w", abs, errTooDeep)
	}
	cd, same := r.cache.dir(rel, st)
	if r.rec != nil {
		r.rec[rel] = st
	}
	var ents []scanEnt
	fromScan := false
	if !r.fresh {
		ents, fromScan = r.opts.Scan.entries(r.root, rel)
	}
	if !fromScan {
		names, err := readDirNames(abs)
		if err != nil {
			return chunk.ID{}, false, err
		}
		ents = make([]scanEnt, len(names))
		for i, name := range names {
			ents[i].name = name
		}
	}
	slices.SortFunc(ents, func(a, b scanEnt) int { return strings.Compare(a.name, b.name) })
	names := make([]string, len(ents))
	for i := range ents {
		names[i] = ents[i].name
	}
	clean := same && slices.Equal(names, cd.names)
	// Before the first file of this directory is read: the directory is
	// still the one listed (not replaced, nor one above it, by a symlink
	// since: its files are opened by path).
	verified := false
	dirOK := func() error {
		if verified {
			return nil
		}
		var sys syscall.Stat_t
		var err error
		if depth == 0 {
			err = syscall.Stat(abs, &sys) // the source itself may be a symlink
		} else {
			err = syscall.Lstat(abs, &sys)
		}
		if err != nil {
			return &fs.PathError{Op: "lstat", Path: abs, Err: err}
		}
		if sys.Mode&syscall.S_IFMT != syscall.S_IFDIR || uint64(sys.Ino) != st.ino {
			return fmt.Errorf("%s: %w", abs, errChanged)
		}
		verified = true
		return nil
	}
	var excluded []string
	t := &manifest.Tree{Entries: make([]manifest.Entry, 0, len(ents))}
	for _, se := range ents {
		name := se.name
		if manifest.ValidName(name) != nil {
			clean = false
			continue
		}
		var childRel string
		if se.info != nil && se.info.rel != "" {
			childRel = se.info.rel // the scan joined it already
		} else {
			childRel = joinRel(rel, name)
		}
		// The path is joined only where it is used: a file the cache
		// knows is not opened.
		childAbs := func() string { return abs + "/" + name }
		var fi fs.FileInfo = se.info
		var err error
		if se.info == nil {
			fi, err = lstat(childAbs(), name)
		}
		if errors.Is(err, fs.ErrNotExist) {
			clean = false
			continue // vanished since it was listed
		}
		if err != nil {
			r.res.Skipped = append(r.res.Skipped, childRel)
			clean = false
			continue
		}
		if r.opts.Exclude != nil && r.opts.Exclude(childRel, fi.IsDir()) {
			excluded = append(excluded, name)
			continue
		}
		e := manifest.Entry{Name: name, Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), MTime: unixNano(fi.ModTime())}
		switch {
		case fi.Mode().IsRegular():
			e.Type = manifest.File
			scanned := fromScan && se.info != nil // fi is the scan's lstat
			ids, size, hit, err := r.file(childAbs, childRel, fi, scanned, dirOK)
			if scanned && r.rec == nil && errors.Is(err, fs.ErrNotExist) {
				r.stale = true // listed by the scan, gone since (an entry checks itself)
			}
			if errors.Is(err, errChanged) {
				// Cut short or rewritten while it was read: once more,
				// as it is now (an activity saving it is done by then).
				if again, lerr := os.Lstat(childAbs()); lerr == nil && again.Mode().IsRegular() {
					e.Mode, e.MTime = again.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), unixNano(again.ModTime())
					ids, size, hit, err = r.file(childAbs, childRel, again, false, dirOK)
				}
			}
			if err != nil {
				if leaveOut(err) {
					r.res.Skipped = append(r.res.Skipped, childRel)
					clean = false
					continue
				}
				return chunk.ID{}, false, err
			}
			clean = clean && hit
			e.Chunks, e.Size = ids, size
			r.res.Files++
		case fi.IsDir():
			e.Type = manifest.Dir
			var sub chunk.ID
			var subClean bool
			if depth == 1 && r.rec == nil && strings.HasPrefix(name, path.Base(rel)) && len(path.Base(rel)) == 2 {
				var mtime int64
				sub, subClean, mtime, err = r.entry(childAbs(), childRel, fi, depth+1)
				e.MTime = mtime // backed up again after a save: as it is now
			} else {
				sub, subClean, err = r.dir(childAbs(), childRel, statOf(fi), depth+1)
			}
			if leaveOut(err) {
				r.res.Skipped = append(r.res.Skipped, childRel)
				clean = false
				continue
			}
			if err != nil {
				return chunk.ID{}, false, err
			}
			clean = clean && subClean
			e.Subtree = sub
			r.res.Dirs++
		case fi.Mode()&fs.ModeSymlink != 0:
			clean = false
			target, err := os.Readlink(childAbs())
			if err != nil || target == "" || len(target) > manifest.MaxTargetLen {
				r.res.Skipped = append(r.res.Skipped, childRel)
				continue
			}
			e.Type, e.Target = manifest.Symlink, target
		default:
			clean = false
			continue // sockets, devices, fifos are not backed up
		}
		t.Entries = append(t.Entries, e)
	}
	clean = clean && slices.Equal(excluded, cd.excluded) && r.cache.knownTree(cd.tree)
	id := cd.tree
	leftOut := false
	if !clean {
		for _, e := range fitTree(t) {
			leftOut = true
			// A file of more chunks than a tree holds (an 8 GiB disk
			// image of zeros is 500,000 chunks) is left out and listed,
			// not the whole backup failed every night.
			r.res.Skipped = append(r.res.Skipped, joinRel(rel, e.Name))
			r.res.Files--
		}
		data, err := manifest.Encode(t)
		if err != nil {
			return chunk.ID{}, false, fmt.Errorf("%s: %w", abs, err)
		}
		id = chunk.Sum(data)
		if !r.cache.knownTree(id) {
			stored, compressed := r.codec.Compress(nil, data)
			if err := r.add(blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: id}, Data: stored, Compressed: compressed, RawLen: len(data)}); err != nil {
				return chunk.ID{}, false, err
			}
		}
	}
	r.cache.newTrees[id] = struct{}{}
	if r.racy(st) || leftOut {
		// (A directory with a file left out is walked again next time,
		// so that the file is listed as left out every run.)
		r.cache.dropDir(rel)
	} else {
		r.cache.storeDir(rel, cachedDir{st: st, tree: id, names: names, excluded: excluded})
	}
	return id, clean, nil
}

// fitTree leaves out of t, only if its encoding would be over
// manifest.MaxTreeSize, the files with the most chunks until it fits, and
// returns them.
func fitTree(t *manifest.Tree) []manifest.Entry {
	size := manifest.EncodedSize(t)
	if size <= manifest.MaxTreeSize {
		return nil
	}
	order := make([]int, 0, len(t.Entries))
	for i, e := range t.Entries {
		if e.Type == manifest.File {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return len(t.Entries[b].Chunks) - len(t.Entries[a].Chunks) })
	drop := map[int]bool{}
	for _, i := range order {
		if size <= manifest.MaxTreeSize {
			break
		}
		drop[i] = true
		size -= manifest.EntrySize(&t.Entries[i])
	}
	var left []manifest.Entry
	kept := t.Entries[:0]
	for i, e := range t.Entries {
		if drop[i] {
			left = append(left, e)
		} else {
			kept = append(kept, e)
		}
	}
	t.Entries = kept
	return left
}

// Why a walk leaves an entry out of the snapshot (Result.Skipped) rather
// than fail: it changed into something else since it was listed, or it
// lies deeper than a snapshot may go.
var (
	errChanged = errors.New("changed since it was listed (the next backup takes it)")
	errTooDeep = fmt.Errorf("directories nested deeper than %d (left out)", manifest.MaxDepth)
)

// leaveOut reports whether err means leaving the entry out of this
// snapshot: it vanished, cannot be read, changed into something else, or
// lies too deep.
func leaveOut(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, errChanged) || errors.Is(err, errTooDeep)
}

// racyWindow: a directory whose mtime or ctime is this close to the start
// of the walk that saw it may change again with the same timestamps (a
// filesystem's clock ticks every few milliseconds, some every second or
// two), so its entries are not cached.
var racyWindow = 2 * time.Second // a variable for the tests

func (r *runner) racy(st fileStat) bool {
	at := r.start
	if r.opts.Scan != nil && r.opts.Scan.root == r.root {
		at = r.opts.Scan.at
	}
	return racy(at, st)
}

// racy reports whether a directory seen by a walk started at at is in the
// racy window: changed so close to the walk that a change after it may
// leave the same times. A time far ahead of the walk (a clock set back
// since, as on a laptop whose clock battery died) is not racy: a change
// now gives the directory the time now, which differs from it. "Close" is
// from the walk's start to now (a walk may take a while: a directory
// changed during it is racy too).
func racy(at time.Time, st fileStat) bool {
	lo, hi := at.Add(-racyWindow).UnixNano(), time.Now().Add(racyWindow).UnixNano()
	return (st.mtime >= lo && st.mtime <= hi) || (st.ctime >= lo && st.ctime <= hi)
}

// fineRacyWindow is racyWindow for a file whose mtime is not a whole
// second: its filesystem keeps timestamps finer than a second, which
// Linux advances at least every clock tick (10 ms at HZ=100).
var fineRacyWindow = 25 * time.Millisecond // a variable for the tests

// racyFile reports whether a file read at at may change again without a
// change of its lstat: its mtime or ctime is within a tick of the
// filesystem's clock of the read, where a write now could give it the
// same one (a time far ahead, from a clock set back since, cannot). A
// whole-second mtime means a filesystem that keeps seconds (jffs2 on an
// XO-1, ext3, FAT: two seconds), or one chance in a billion: racyWindow
// then.
func racyFile(at time.Time, st fileStat) bool {
	w := fineRacyWindow
	if st.mtime%1e9 == 0 {
		w = racyWindow
	}
	lo, hi := at.Add(-w).UnixNano(), at.Add(w).UnixNano()
	return (st.mtime >= lo && st.mtime <= hi) || (st.ctime >= lo && st.ctime <= hi)
}

// entry backs up a Journal entry's directory (XX/<uid>) as one: Sugar
// saves an entry's metadata files and its document one after the other,
// and a save between the backup's look at one and at another would put
// one save's title over another's document, or a document cut short
// while Sugar copied it in. When anything in the entry was read (an
// unchanged entry is only looked up), every file and directory in it is
// lstat'ed again afterwards; if one changed, the entry is backed up again
// as it is now, up to three times.
func (r *runner) entry(abs, rel string, fi fs.FileInfo, depth int) (chunk.ID, bool, int64, error) {
	st := statOf(fi)
	defer func() { r.fresh = false }()
	for try := 1; ; try++ {
		before := r.res
		if r.recBuf == nil {
			r.recBuf = map[string]fileStat{}
		}
		clear(r.recBuf)
		r.rec = r.recBuf
		id, clean, err := r.dir(abs, rel, st, depth)
		r.rec = nil
		if err != nil || (clean && r.res.BytesRead == before.BytesRead) || try == 3 || r.entrySame() {
			return id, clean, st.mtime, err
		}
		// Changed while it was backed up: the work done stays counted,
		// the files and directories are counted once.
		after := r.res
		r.res = before
		r.res.BytesRead, r.res.BytesSent, r.res.ChunksNew, r.res.TreesNew = after.BytesRead, after.BytesSent, after.ChunksNew, after.TreesNew
		r.res.Skipped = after.Skipped[:len(before.Skipped)]
		var sys syscall.Stat_t
		if err := syscall.Lstat(abs, &sys); err != nil {
			// Gone since (deleted while it was read): left out and
			// listed, not committed half read.
			return chunk.ID{}, false, 0, &fs.PathError{Op: "lstat", Path: abs, Err: err}
		}
		if sys.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return chunk.ID{}, false, 0, fmt.Errorf("%s: %w", abs, errChanged)
		}
		// Again, as it is now.
		st = statOfSys(&sys)
		r.fresh = true
	}
}

// entrySame reports whether every path recorded while an entry was
// backed up still has the lstat recorded.
func (r *runner) entrySame() bool {
	for rel, want := range r.recBuf {
		var sys syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(r.root, rel), &sys); err != nil || statOfSys(&sys) != want {
			return false
		}
	}
	return true
}

// file returns a file's chunks, from the cache if the file is unchanged
// (hit). fromScan says fi is the scan's lstat (Options.Scan).
func (r *runner) file(absPath func() string, rel string, fi fs.FileInfo, fromScan bool, dirOK func() error) (ids []chunk.ID, size int64, hit bool, err error) {
	st := statOf(fi)
	if r.rec != nil {
		r.rec[rel] = st
	}
	r.res.BytesScanned += st.size
	if ids, ok := r.cache.lookup(rel, st); ok {
		r.res.ChunksTotal += int64(len(ids))
		r.progress(rel)
		return ids, st.size, true, nil
	}
	if err := dirOK(); err != nil {
		return nil, 0, false, err
	}
	abs := absPath()
	f, err := openRegular(abs)
	if err != nil {
		return nil, 0, false, err
	}
	defer f.Close()
	err = chunk.Split(r.ctx, f, r.opts.Params, r.codec, chunk.SplitOptions{Workers: r.opts.Workers}, func(b chunk.Block) error {
		ids = append(ids, b.ID)
		size += int64(b.Length)
		r.res.BytesRead += int64(b.Length)
		r.res.ChunksTotal++
		ref := blob.Ref{Type: blob.Chunk, ID: b.ID}
		if _, ok := r.queued[ref]; ok {
			return nil
		}
		return r.add(blob.Blob{Ref: ref, Data: r.keep(b.Data), Compressed: b.Compressed, RawLen: b.Length})
	})
	if err != nil {
		return nil, 0, false, fmt.Errorf("read %s: %w", abs, err)
	}
	after, aerr := f.stat()
	if aerr == nil && after != st && fromScan && r.rec == nil {
		// Changed since the scan's lstat. (In a Journal entry, the
		// entry's own check sees it and backs the entry up again.)
		r.stale = true
	}
	if size < st.size || (aerr == nil && after.size < st.size) {
		// It shrank while it was read (cut short, or rewritten from the
		// start): what was read is part of a version that is gone, not
		// a file to restore.
		return nil, 0, false, fmt.Errorf("%s shrank from %d bytes while it was read: %w", rel, st.size, errChanged)
	}
	// Cache the file only if it did not change while we read it (what was
	// read, whatever its name is now: a file renamed over this name has
	// another inode, which the next run's lstat sees), and only if it was
	// not written within a tick of the filesystem's clock of the read: a
	// write in the same tick would leave its size, times and inode as
	// cached, and every later backup would take the old content (git's
	// "racily clean" files). Such a file is read again next time.
	if aerr == nil && after == st && size == st.size && !racyFile(time.Now(), st) {
		r.cache.store(rel, st, ids)
	}
	r.progress(rel)
	return ids, size, false, nil
}

func (r *runner) progress(rel string) {
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Files: r.res.Files + 1, BytesScanned: r.res.BytesScanned, BytesRead: r.res.BytesRead, BytesSent: r.res.BytesSent, Path: rel})
	}
}

// keep copies a chunk's bytes, which Split lends only for its callback,
// into the batch's memory. That memory is used again once the batch is sent
// (Target.Put keeps none of it), so a first backup does not take fresh heap
// pages, each faulted in and zeroed by the kernel, for every chunk it reads.
func (r *runner) keep(p []byte) []byte {
	if cap(r.arena)-len(r.arena) < len(p) {
		// The blobs already queued keep the old array. A batch is sent
		// once it holds BatchBytes, so room for that and one more chunk
		// of the largest size is never outgrown.
		r.arena = make([]byte, 0, max(r.opts.BatchBytes+int(r.opts.Params.MaxSize), 2*len(p)))
	}
	n := len(r.arena)
	r.arena = append(r.arena, p...)
	return r.arena[n:len(r.arena):len(r.arena)]
}

// add queues a blob; the batch is flushed when it is full.
func (r *runner) add(b blob.Blob) error {
	if _, ok := r.queued[b.Ref]; ok {
		return nil
	}
	r.queued[b.Ref] = struct{}{}
	r.batch = append(r.batch, b)
	r.batchBytes += len(b.Data)
	if r.batchBytes >= r.opts.BatchBytes || len(r.batch) >= 1024 {
		return r.flush()
	}
	return nil
}

// flush asks the target which queued blobs it needs and uploads those.
func (r *runner) flush() error {
	if len(r.batch) == 0 {
		return nil
	}
	refs := make([]blob.Ref, len(r.batch))
	for i := range r.batch {
		refs[i] = r.batch[i].Ref
	}
	need, err := r.t.Need(r.ctx, refs)
	if err != nil {
		return err
	}
	if len(need) != len(refs) {
		return fmt.Errorf("server answered %d of %d questions; try again later", len(need), len(refs))
	}
	var send []blob.Blob
	for i, n := range need {
		if n {
			b := r.batch[i]
			send = append(send, b)
			r.res.BytesSent += int64(len(b.Data))
			if b.Type == blob.Chunk {
				r.res.ChunksNew++
			} else {
				r.res.TreesNew++
			}
		}
	}
	if len(send) > 0 {
		if err := r.t.Put(r.ctx, send); err != nil {
			return err
		}
	}
	clear(r.batch)
	r.batch, r.batchBytes, r.arena = r.batch[:0], 0, r.arena[:0]
	return nil
}

// nanos is a stat's seconds and nanoseconds as Unix nanoseconds, held to
// the range an int64 can say (see unixNano).
func nanos(sec, nsec int64) int64 {
	const limit = math.MaxInt64 / int64(time.Second)
	switch {
	case sec >= limit:
		return math.MaxInt64
	case sec <= -limit:
		return math.MinInt64
	}
	return sec*1e9 + nsec
}

// unixNano is t.UnixNano, held to the range an int64 of nanoseconds can
// say (years 1678 to 2262) instead of wrapping around: a file dated 2300 by
// a wrong clock keeps the latest time a snapshot can hold, not one in 1715.
func unixNano(t time.Time) int64 {
	switch {
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	}
	return t.UnixNano()
}
