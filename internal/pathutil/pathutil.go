// Package pathutil answers questions about paths that several programs ask
// before they write: whether a destination lies inside a directory that
// is not theirs to write into.
package pathutil

import (
	"path/filepath"
	"strings"
)

// Inside reports whether p is dir or lies below it, after both are made
// absolute and their symbolic links resolved as far as they exist (a
// destination not made yet is judged by its existing parent). A path that
// cannot be made absolute is not inside.
func Inside(dir, p string) bool {
	d, err1 := resolve(dir)
	t, err2 := resolve(p)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, t)
	return err == nil && (rel == "." || rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}

// resolve is p made absolute with symbolic links resolved as far as the
// path exists.
func resolve(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...), nil
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}
