package backup

import (
	"context"
	"os"
	"path"
	"path/filepath"

	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Estimate is what a backup of dir expects to send, from the file cache
// alone: the bytes and the number of regular files that are new or changed
// since the cache saw them. It reads no file content (a walk with an lstat
// per file), so a laptop can tell the server, before it asks to start, how
// big its backup will be. A nil cache counts every file.
func Estimate(ctx context.Context, dir string, cache *Cache, exclude func(rel string, isDir bool) bool) (bytes, files int64, err error) {
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
		for _, de := range ents {
			childRel, childAbs := path.Join(rel, de.Name()), filepath.Join(abs, de.Name())
			fi, err := os.Lstat(childAbs)
			if err != nil || (exclude != nil && exclude(childRel, fi.IsDir())) {
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
		return nil
	}
	err = walk(dir, "", 0)
	return bytes, files, err
}

// unchanged reports whether the cache holds name with this stat, without
// marking it seen by a run.
func (c *Cache) unchanged(name string, st fileStat) bool {
	cf, ok := c.files[name]
	return ok && cf.size == st.size && cf.mtime == st.mtime && cf.ctime == st.ctime && cf.ino == st.ino
}
