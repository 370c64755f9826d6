package backup

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Scan is a recorded walk of a backup source: every directory's entries
// and their lstat, as EstimateScan saw them moments before the backup.
// Given to Run (Options.Scan), it spares the backup a second walk of the
// same tree: a nightly run of an unchanged Journal walks it once. It holds
// a few dozen bytes per file.
type Scan struct {
	root string
	dirs map[string][]scanEnt // by slash-separated path relative to root ("" is root)
}

type scanEnt struct {
	name string
	info *scanInfo // nil: the lstat failed (Run tries again and reports it)
}

// scanInfo is the part of an lstat a backup uses.
type scanInfo struct {
	name string
	mode fs.FileMode
	st   fileStat
}

func (i *scanInfo) Name() string       { return i.name }
func (i *scanInfo) Size() int64        { return i.st.size }
func (i *scanInfo) Mode() fs.FileMode  { return i.mode }
func (i *scanInfo) ModTime() time.Time { return time.Unix(0, i.st.mtime) }
func (i *scanInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *scanInfo) Sys() any           { return nil }

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
// use instead of walking again (Options.Scan).
func EstimateScan(ctx context.Context, dir string, cache *Cache, exclude func(rel string, isDir bool) bool) (bytes, files int64, scan *Scan, err error) {
	scan = &Scan{root: dir, dirs: map[string][]scanEnt{}}
	var walk func(abs, rel string, depth int) error
	walk = func(abs, rel string, depth int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if depth >= manifest.MaxDepth {
			return nil
		}
		ents, err := os.ReadDir(abs)
		if err != nil {
			return nil // the backup itself says what it could not read
		}
		rec := make([]scanEnt, 0, len(ents))
		for _, de := range ents {
			childRel, childAbs := path.Join(rel, de.Name()), filepath.Join(abs, de.Name())
			fi, err := os.Lstat(childAbs)
			if err != nil {
				rec = append(rec, scanEnt{name: de.Name()})
				continue
			}
			rec = append(rec, scanEnt{name: de.Name(), info: &scanInfo{name: de.Name(), mode: fi.Mode(), st: statOf(fi)}})
			if exclude != nil && exclude(childRel, fi.IsDir()) {
				continue
			}
			switch {
			case fi.IsDir():
				if err := walk(childAbs, childRel, depth+1); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				if cache != nil && cache.unchanged(childRel, statOf(fi)) {
					continue
				}
				bytes += fi.Size()
				files++
			}
		}
		scan.dirs[rel] = rec
		return nil
	}
	err = walk(dir, "", 0)
	return bytes, files, scan, err
}

// unchanged reports whether the cache holds name with this stat, without
// marking it seen by a run.
func (c *Cache) unchanged(name string, st fileStat) bool {
	cf, ok := c.files[name]
	return ok && cf.size == st.size && cf.mtime == st.mtime && cf.ctime == st.ctime && cf.ino == st.ino
}
