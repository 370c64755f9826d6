// Package dircmp compares two directory trees byte for byte (tests, demo, benchmarks).
package dircmp

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Compare returns nil if the trees under a and b hold the same directories,
// files (content and permission bits) and symlinks. skip, if set, leaves out
// paths (slash-separated, relative) of a that were not backed up.
func Compare(a, b string, skip func(rel string, isDir bool) bool) error {
	seen := map[string]bool{}
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		seen[rel] = true
		q := filepath.Join(b, filepath.FromSlash(rel))
		fa, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fb, err := os.Lstat(q)
		if err != nil {
			return fmt.Errorf("%s: missing in copy: %w", rel, err)
		}
		if fa.Mode().Type() != fb.Mode().Type() {
			return fmt.Errorf("%s: type %v vs %v", rel, fa.Mode().Type(), fb.Mode().Type())
		}
		switch {
		case fa.Mode().IsRegular():
			if fa.Mode().Perm() != fb.Mode().Perm() {
				return fmt.Errorf("%s: mode %v vs %v", rel, fa.Mode().Perm(), fb.Mode().Perm())
			}
			ba, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			bb, err := os.ReadFile(q)
			if err != nil {
				return err
			}
			if !bytes.Equal(ba, bb) {
				return fmt.Errorf("%s: content differs (%d vs %d bytes)", rel, len(ba), len(bb))
			}
		case fa.Mode()&fs.ModeSymlink != 0:
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				return fmt.Errorf("%s: symlink %q vs %q", rel, ta, tb)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b, p)
		if rel != "." && !seen[filepath.ToSlash(rel)] {
			return fmt.Errorf("%s: extra in copy", filepath.ToSlash(rel))
		}
		return nil
	})
}
