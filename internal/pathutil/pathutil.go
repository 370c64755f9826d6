// Package pathutil answers questions about paths that several programs ask
// before they write: whether a destination lies inside, or holds, a
// directory that is not theirs to write into.
package pathutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Inside reports whether p is dir or lies below it. Both are resolved as
// the kernel would (symbolic links first, then "..": "link/.." is the
// link's target's parent, not the link's), a destination not made yet is
// judged by its existing part, and the comparison is by file identity,
// so case-insensitive file systems and bind mounts do not hide dir. A
// dir that does not exist holds nothing.
func Inside(dir, p string) bool {
	d, err := resolve(dir)
	if err != nil {
		return false
	}
	dst, err := os.Stat(d)
	if err != nil {
		return false
	}
	t, err := resolve(p)
	if err != nil {
		return false
	}
	for a := t; ; a = filepath.Dir(a) {
		if st, err := os.Stat(a); err == nil && os.SameFile(st, dst) {
			return true
		}
		if filepath.Dir(a) == a {
			return false
		}
	}
}

// Overlap reports whether a and b are one directory or one holds the
// other: a restore into either would write into both.
func Overlap(a, b string) bool { return Inside(a, b) || Inside(b, a) }

// maxPath is Linux's PATH_MAX: no longer path names a file.
const maxPath = 4096

var errBadPath = errors.New("not a path a file may have")

// resolve is p made absolute and free of symbolic links as far as it
// exists, without cleaning it as text first (which would take "link/.."
// for the link's own directory); what does not exist yet is appended.
func resolve(p string) (string, error) {
	if len(p) > maxPath || strings.IndexByte(p, 0) >= 0 {
		return "", errBadPath // no file has such a name (and walking it would take long)
	}
	if !filepath.IsAbs(p) {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		p = wd + string(filepath.Separator) + p
	}
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest), nil
		}
		i := strings.LastIndexByte(p, filepath.Separator)
		if i <= 0 {
			return filepath.Join(string(filepath.Separator), p, rest), nil
		}
		rest = filepath.Join(p[i+1:], rest)
		p = p[:i]
	}
}
