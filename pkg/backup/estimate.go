package backup

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Scan is a recorded walk of a backup source: every directory's entries
// and their lstat, as a scan saw them moments before the backup. Given to
// Run (Options.Scan), it spares the backup a second walk of the same tree:
// a nightly run of an unchanged Journal walks it once. It holds a few dozen
// bytes per file.
type Scan struct {
	root string
	// at is when the walk started: a directory changed less than
	// racyWindow before it is listed again next time.
	at   time.Time
	dirs map[string][]scanEnt // by slash-separated path relative to root ("" is root)
	// rootSt is the root's stat as the walk saw it, before it listed the
	// root: the backup records the root's entries with it, not with a
	// later stat that may already show a change the listing missed.
	rootSt fileStat
	// listed counts the directories the walk listed (the others' entries
	// came from the cache).
	listed int
	// same is set when the walk found the whole tree as cache (at
	// generation gen) recorded it for the last committed snapshot: every
	// directory's lstat, entries and exclusions, every file's lstat, no
	// entry the backup would skip, and every directory's tree among the
	// snapshot's. Run then takes the cached root tree as this backup's
	// without walking the scan again. sameTrees are the trees it found,
	// and sameRes the counts Run's walk would have made.
	same      bool
	cache     *Cache
	gen       uint64
	sameTrees map[chunk.ID]struct{}
	sameRes   Result
	sameDirs  int // directories walked, the root among them
}

type scanEnt struct {
	name string
	info *scanInfo // nil: the lstat failed (Run tries again and reports it)
}

// scanInfo is the part of an lstat a backup uses.
type scanInfo struct {
	name string
	rel  string // the path relative to the root, once the walk made it
	mode fs.FileMode
	st   fileStat
}

func (i *scanInfo) Name() string       { return i.name }
func (i *scanInfo) Size() int64        { return i.st.size }
func (i *scanInfo) Mode() fs.FileMode  { return i.mode }
func (i *scanInfo) ModTime() time.Time { return time.Unix(0, i.st.mtime) }
func (i *scanInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *scanInfo) Sys() any           { return nil }

// Files and Dirs count the regular files and directories the scan found
// below its root, those excluded left out.
func (s *Scan) Files() int64 { return s.sameRes.Files }

// Dirs: see Files.
func (s *Scan) Dirs() int64 { return s.sameRes.Dirs }

// entries returns the recorded entries of the directory rel under root, or
// false if the scan did not record it (another root, or not walked).
func (s *Scan) entries(root, rel string) ([]scanEnt, bool) {
	if s == nil || s.root != root {
		return nil, false
	}
	e, ok := s.dirs[rel]
	return e, ok
}

// Estimate is what a backup of dir expects to send, from the file cache
// alone: the bytes and the number of regular files that are new or changed
// since the cache saw them. It reads no file content (a walk with an lstat
// per file), so a laptop can tell the server, before it asks to start, how
// big its backup will be. A nil cache counts every file.
func Estimate(ctx context.Context, dir string, cache *Cache, exclude func(rel string, isDir bool) bool) (bytes, files int64, err error) {
	bytes, files, _, err = EstimateScan(ctx, dir, cache, exclude)
	return bytes, files, err
}

// EstimateScan is Estimate that also returns the walk it made, for Run to
// use instead of walking again (Options.Scan). A directory whose lstat is
// what the cache recorded (and was not changed within a second or two of
// that record) is not listed again: its entries are the cached ones (a
// directory's mtime and ctime change whenever an entry is created, removed
// or renamed in it). Every entry is still lstat'ed: a file written in place
// changes only its own times.
func EstimateScan(ctx context.Context, dir string, cache *Cache, exclude func(rel string, isDir bool) bool) (bytes, files int64, scan *Scan, err error) {
	scan = &Scan{root: dir, at: time.Now(), dirs: map[string][]scanEnt{}}
	if cache != nil {
		scan.cache, scan.gen, scan.sameTrees = cache, cache.gen, map[chunk.ID]struct{}{}
	}
	// walk records the directory rel and what is below it, and reports
	// whether all of it is as the cache recorded it (see Scan.same; the
	// conditions are those under which Run's walk would find it so).
	var walk func(abs, rel string, st fileStat, depth int) (bool, error)
	walk = func(abs, rel string, st fileStat, depth int) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if depth >= manifest.MaxDepth {
			return false, nil
		}
		var cd cachedDir
		listed := false
		if cache != nil {
			cd, listed = cache.dir(rel, st)
		}
		same := listed && !racy(scan.at, st) && cache.knownTree(cd.tree)
		names := cd.names
		if !listed {
			if names, err = readDirNames(abs); err != nil {
				return false, nil // the backup itself says what it could not read
			}
			scan.listed++
		}
		rec, gone := lstatAll(abs, names)
		if listed && gone {
			// A cached name is not there although the directory's lstat
			// did not change: the cache is wrong (a damaged file). Taken
			// as it is, the real entry would be missing from the backup,
			// this night and every night after.
			if names, err = readDirNames(abs); err != nil {
				return false, nil
			}
			scan.listed++
			rec, _ = lstatAll(abs, names)
			same = false
		}
		nex := 0 // entries excluded so far
		for _, se := range rec {
			info := se.info
			if info == nil || (same && manifest.ValidName(se.name) != nil) {
				same = false
				continue
			}
			childRel := joinRel(rel, se.name)
			info.rel = childRel // the backup's walk looks the file up by it too
			if exclude != nil && exclude(childRel, info.IsDir()) {
				same = same && nex < len(cd.excluded) && cd.excluded[nex] == se.name
				nex++
				continue
			}
			switch {
			case info.IsDir():
				sub, err := walk(abs+"/"+se.name, childRel, info.st, depth+1)
				if err != nil {
					return false, err
				}
				same = same && sub
				scan.sameRes.Dirs++
			case info.mode.IsRegular():
				scan.sameRes.Files++
				scan.sameRes.BytesScanned += info.st.size
				if cache != nil {
					if cf, ok := cache.unchangedFile(childRel, info.st); ok {
						scan.sameRes.ChunksTotal += int64(len(cf.chunks))
						continue
					}
				}
				same = false
				bytes += info.st.size
				files++
			default:
				same = false // Run's walk reads symlinks again and skips the rest
			}
		}
		same = same && nex == len(cd.excluded)
		if same {
			scan.sameTrees[cd.tree] = struct{}{}
		}
		scan.sameDirs++
		scan.dirs[rel] = rec
		return same, nil
	}
	root, err := os.Stat(dir)
	if err != nil {
		return 0, 0, scan, nil // the backup itself says what it could not read
	}
	scan.rootSt = statOf(root)
	scan.same, err = walk(filepath.Clean(dir), "", scan.rootSt, 0)
	return bytes, files, scan, err
}

// sameAsCache reports whether the scan found the tree under root as cache
// recorded it, and the cache has changed neither since nor in what it
// holds beyond that tree: every file and directory it knows was found.
// Then the backup is the cached root tree, whole.
//
// Some conditions overlap: every change Forget and Reset make today also
// changes a count, a changed Exclude also changes which files and
// directories are found, and the trees found are among the cache's. The
// generation, the excluded names and the tree count are checked anyway,
// so that the path stays exact if one of those stops being so.
func (s *Scan) sameAsCache(root string, cache *Cache) bool {
	return s != nil && s.same && s.root == root && s.cache == cache && s.gen == cache.gen &&
		int(s.sameRes.Files) == len(cache.files) && s.sameDirs == len(cache.dirs) && len(s.sameTrees) == len(cache.trees)
}

// lstatAll lstats the entries of the directory abs; gone reports that one
// of them does not exist.
func lstatAll(abs string, names []string) (rec []scanEnt, gone bool) {
	rec = make([]scanEnt, len(names))
	infos := make([]scanInfo, len(names)) // one allocation for the directory
	var buf [256]byte                     // the paths, NUL-terminated
	path := append(append(buf[:0], abs...), '/')
	dir := len(path)
	for i, name := range names {
		rec[i].name = name
		path = append(append(path[:dir], name...), 0)
		if err := lstatBuf(&infos[i], path, name); err != nil {
			gone = gone || errors.Is(err, fs.ErrNotExist)
			continue
		}
		rec[i].info = &infos[i]
	}
	return rec, gone
}

// readDirNames lists a directory's entries, unsorted.
func readDirNames(abs string) ([]string, error) {
	f, err := openRead(abs, syscall.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// openRead opens abs for reading as os.Open does, without what os.Open
// adds for a descriptor the runtime might poll, which a file or directory
// never is: fcntl twice to set O_NONBLOCK, an epoll_ctl that fails, fcntl
// twice to clear it again. One fcntl is left (os.NewFile's). On the XO-1's
// 386 build those calls were 5% of a first backup's CPU.
func openRead(abs string, flags int) (*os.File, error) {
	fd, err := sysOpen(abs, flags)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: abs, Err: err}
	}
	return os.NewFile(uintptr(fd), abs), nil
}

// sysOpen opens abs read-only with flags, again when interrupted.
func sysOpen(abs string, flags int) (int, error) {
	for {
		fd, err := syscall.Open(abs, syscall.O_RDONLY|syscall.O_CLOEXEC|flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// regularFile is an open regular file, read through its descriptor (no
// os.File: its poller set-up costs system calls a regular file never
// needs).
type regularFile struct {
	fd   int
	name string
}

// openRegular opens the regular file at abs for reading. Whatever is at abs
// now may not be what the walk listed: a symlink is not followed, and a
// named pipe, device or directory is refused (errChanged) before anything
// is read from it (O_NONBLOCK: opening a pipe does not wait for a writer;
// it changes nothing for a regular file).
func openRegular(abs string) (*regularFile, error) {
	fd, err := sysOpen(abs, syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY)
	if err == syscall.ELOOP { // a symlink now
		err = errChanged
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: abs, Err: err}
	}
	f := &regularFile{fd: fd, name: abs}
	var sys syscall.Stat_t
	if err := fstat(fd, &sys); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "fstat", Path: abs, Err: err}
	}
	if sys.Mode&syscall.S_IFMT != syscall.S_IFREG {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: abs, Err: errChanged}
	}
	return f, nil
}

func fstat(fd int, sys *syscall.Stat_t) error {
	for {
		err := syscall.Fstat(fd, sys)
		if err != syscall.EINTR {
			return err
		}
	}
}

// Read reads from the file (io.Reader).
func (f *regularFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := syscall.Read(f.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// stat is the open file's lstat fields.
func (f *regularFile) stat() (fileStat, error) {
	var sys syscall.Stat_t
	if err := fstat(f.fd, &sys); err != nil {
		return fileStat{}, err
	}
	return statOfSys(&sys), nil
}

// Close closes the file.
func (f *regularFile) Close() error { return syscall.Close(f.fd) }

// lstat is os.Lstat without its allocations beyond the result.
func lstat(abs, name string) (*scanInfo, error) {
	info := new(scanInfo)
	if err := lstatInto(info, abs, name); err != nil {
		return nil, err
	}
	return info, nil
}

// lstatInto is lstat into info.
func lstatInto(info *scanInfo, abs, name string) error {
	var sys syscall.Stat_t
	for {
		err := syscall.Lstat(abs, &sys)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "lstat", Path: abs, Err: err}
		}
		break
	}
	setInfo(info, name, &sys)
	return nil
}

// setInfo fills info from an lstat of name.
func setInfo(info *scanInfo, name string, sys *syscall.Stat_t) {
	*info = scanInfo{name: name, mode: modeOf(uint32(sys.Mode)), st: statOfSys(sys)}
}

// modeOf is the fs.FileMode of a stat's st_mode, as os.Lstat gives it.
func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & syscall.S_IFMT {
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		mode |= fs.ModeSocket
	case syscall.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// unchangedFile returns what the cache holds of name if it has this stat,
// without marking it seen by a run.
func (c *Cache) unchangedFile(name string, st fileStat) (cachedFile, bool) {
	cf, ok := c.files[name]
	return cf, ok && cf.size == st.size && cf.mtime == st.mtime && cf.ctime == st.ctime && cf.ino == st.ino
}
