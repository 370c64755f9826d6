package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// TarStats counts what WriteTar or ExtractTar handled.
type TarStats struct {
	Files, Dirs, Symlinks int64
	Bytes                 int64
}

// WriteTar writes the given paths of fsys (files or whole directories; all
// of fsys if none) to w as a tar stream, with their modes and times. Reading
// a file from a SnapshotFS verifies each chunk: a damaged file ends the
// stream with an error, never with wrong bytes.
func WriteTar(w io.Writer, fsys fs.FS, paths []string) (TarStats, error) {
	var st TarStats
	tw := tar.NewWriter(w)
	if len(paths) == 0 {
		paths = []string{"."}
	}
	seen := map[string]bool{}
	for _, root := range paths {
		err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == "." || seen[p] {
				return nil
			}
			seen[p] = true
			fi, err := d.Info()
			if err != nil {
				return err
			}
			// Parents of a chosen path, so that the archive extracts alone.
			if p == root {
				if err := writeParents(tw, fsys, p, seen); err != nil {
					return err
				}
			}
			return writeTarEntry(tw, fsys, p, fi, &st)
		})
		if err != nil {
			return st, err
		}
	}
	return st, tw.Close()
}

func writeParents(tw *tar.Writer, fsys fs.FS, p string, seen map[string]bool) error {
	var st TarStats
	dir := path.Dir(p)
	var chain []string
	for dir != "." && !seen[dir] {
		chain = append(chain, dir)
		dir = path.Dir(dir)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		fi, err := fs.Stat(fsys, chain[i])
		if err != nil {
			return err
		}
		seen[chain[i]] = true
		if err := writeTarEntry(tw, fsys, chain[i], fi, &st); err != nil {
			return err
		}
	}
	return nil
}

func writeTarEntry(tw *tar.Writer, fsys fs.FS, p string, fi fs.FileInfo, st *TarStats) error {
	h := &tar.Header{Name: p, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
	switch {
	case fi.IsDir():
		h.Typeflag, h.Name = tar.TypeDir, p+"/"
		st.Dirs++
		return tw.WriteHeader(h)
	case fi.Mode()&fs.ModeSymlink != 0:
		e, ok := fi.Sys().(*manifest.Entry)
		if !ok {
			return nil // not from a snapshot: left out
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Target
		st.Symlinks++
		return tw.WriteHeader(h)
	case !fi.Mode().IsRegular():
		return nil
	}
	h.Typeflag, h.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	f, err := fsys.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("%s: read %d bytes, expected %d", p, n, fi.Size())
	}
	st.Files++
	st.Bytes += n
	return nil
}

// ExtractTar unpacks a tar stream under target (created if needed) through
// an os.Root, so that no name in the archive can write outside target.
// Symbolic links and special files are skipped; an existing file is an
// error unless overwrite is set. progress, if set, is called after each file
// with the bytes written so far.
func ExtractTar(r io.Reader, target string, overwrite bool, progress func(bytes int64, name string)) (TarStats, error) {
	var st TarStats
	if err := os.MkdirAll(target, 0o755); err != nil {
		return st, fmt.Errorf("create %s: %w", target, err)
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return st, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read archive: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !fs.ValidPath(name) || name == "." || len(name) > 4096 {
			return st, fmt.Errorf("archive entry %q: not a relative path inside the target", h.Name)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, fs.FileMode(h.Mode).Perm()|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
			st.Dirs++
		case tar.TypeReg:
			flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if overwrite {
				flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := root.OpenFile(name, flag, fs.FileMode(h.Mode).Perm()|0o400)
			if err != nil {
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				root.Remove(name)
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
			root.Chtimes(name, h.ModTime, h.ModTime)
			st.Files++
			st.Bytes += n
			if progress != nil {
				progress(st.Bytes, name)
			}
		default:
			st.Symlinks++ // skipped
		}
	}
}
