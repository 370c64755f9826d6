package restore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// TarStats counts what WriteTar or ExtractTar handled.
type TarStats struct {
	Files, Dirs, Symlinks int64
	Bytes                 int64
	// Damaged lists what WriteTar left out (OlderSnapshot not filled in).
	Damaged []DamagedFile
}

// tarBuffer is the largest file WriteTar reads into memory before writing
// its header; a larger one is read twice (verified, then written).
const tarBuffer = 8 << 20

// WriteTar writes the given paths of fsys (files or whole directories; all
// of fsys if none) to w as a tar stream, with their modes and times. Reading
// a file from a SnapshotFS verifies each chunk. Every file is read and
// verified before its header is written, so a damaged or missing file (or
// a directory that cannot be listed) is left out, listed in Damaged, and
// the archive stays complete and well-formed: WriteTar then returns a
// *DamagedError after closing it. Any other error ends the stream.
func WriteTar(w io.Writer, fsys fs.FS, paths []string) (TarStats, error) {
	var st TarStats
	tw := tar.NewWriter(w)
	if len(paths) == 0 {
		paths = []string{"."}
	}
	seen := map[string]bool{}
	// skip records a damaged path and says whether the walk goes on.
	skip := func(p string, dir bool, err error) bool {
		var se *skipError
		if !errors.Is(err, blob.ErrDamaged) || (!errors.As(err, &se) && !isReadErr(err)) {
			return false
		}
		st.Damaged = append(st.Damaged, DamagedFile{Path: p, Dir: dir, Err: err.Error()})
		return true
	}
	for _, root := range paths {
		err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if skip(p, d == nil || d.IsDir(), err) {
					if d != nil && d.IsDir() {
						return fs.SkipDir
					}
					return nil
				}
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
			err = writeTarEntry(tw, fsys, p, fi, &st)
			if err != nil && skip(p, false, err) {
				return nil
			}
			return err
		})
		if err != nil {
			return st, err
		}
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if len(st.Damaged) > 0 {
		return st, &DamagedError{Files: st.Damaged}
	}
	return st, nil
}

// skipError is a damaged file found before its header was written.
type skipError struct{ err error }

func (e *skipError) Error() string { return e.err.Error() }
func (e *skipError) Unwrap() error { return e.err }

// isReadErr reports whether err comes from reading fsys (a walk error), not
// from writing the archive.
func isReadErr(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
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
	// Read (and so verify) the whole file before its header: a header
	// promises a size that a damaged file could not keep.
	var buf []byte
	read := func() (int64, error) {
		f, err := fsys.Open(p)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if fi.Size() <= tarBuffer {
			buf, err = io.ReadAll(io.LimitReader(f, fi.Size()+1))
			return int64(len(buf)), err
		}
		return io.Copy(io.Discard, f)
	}
	n, err := read()
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("%w: read %d bytes, expected %d", blob.ErrDamaged, n, fi.Size())
	}
	if err != nil {
		return &skipError{fmt.Errorf("%s: %w", p, err)}
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if buf != nil || fi.Size() == 0 {
		if _, err := tw.Write(buf); err != nil {
			return err
		}
	} else {
		f, err := fsys.Open(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		defer f.Close()
		if n, err = io.Copy(tw, f); err == nil && n != fi.Size() {
			err = fmt.Errorf("read %d bytes, expected %d", n, fi.Size())
		}
		if err != nil {
			// The header is written: the archive cannot be completed.
			return fmt.Errorf("%s changed between two reads: %v", p, err)
		}
	}
	st.Files++
	st.Bytes += n
	return nil
}

// ExtractTar unpacks a tar stream under target (created if needed) through
// an os.Root, so that no name in the archive can write outside target.
// Symbolic links and special files are skipped; an existing file is an
// error unless overwrite is set. Each file is written under a temporary
// name beside its own and renamed into place once whole: an existing file
// is replaced only by a whole one (never cut short by a broken stream, and
// a link in its place is replaced, not written through). Files and
// directories get the archive's modes (the owner may always read a file
// and enter a directory) and times. progress, if set, is called after each
// file with the bytes written so far.
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
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime // set last: extracting into a directory changes its time
	defer func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			root.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t)
		}
	}()
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
		if !validName(name) || name == "." || len(name) > 4096 {
			return st, fmt.Errorf("archive entry %q: not a relative path inside the target", h.Name)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			mode := fs.FileMode(h.Mode).Perm() | 0o700
			if err := root.Mkdir(name, mode); err != nil && !errors.Is(err, fs.ErrExist) {
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
			root.Chmod(name, mode) // the umask trimmed it
			dirs = append(dirs, dirTime{name, h.ModTime})
			st.Dirs++
		case tar.TypeReg:
			if !overwrite {
				if _, err := root.Lstat(name); err == nil {
					return st, fmt.Errorf("extract %s: %w"+ExistsHint, name, fs.ErrExist)
				}
			}
			n, err := extractFile(root, name, tr, fs.FileMode(h.Mode).Perm()|0o400, h.ModTime)
			if err != nil {
				return st, fmt.Errorf("extract %s: %w", name, err)
			}
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

// CountTar reads a tar archive's headers and counts its entries as
// ExtractTar would: regular files and their bytes, directories, and links
// or special files (which ExtractTar skips). It skips each file's data,
// by seeking when r can. What a tar file written by `xs-admin restore
// --tar` holds is said with it.
func CountTar(r io.Reader) (TarStats, error) {
	var st TarStats
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("read archive: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			st.Dirs++
		case tar.TypeReg:
			st.Files++
			st.Bytes += h.Size
		default:
			st.Symlinks++
		}
	}
}

// extractFile writes r to a temporary name beside name, sets its mode and
// time, and renames it to name.
func extractFile(root *os.Root, name string, r io.Reader, mode fs.FileMode, mtime time.Time) (int64, error) {
	dir, base := path.Split(name)
	var tmp string
	var f *os.File
	for i := 0; ; i++ {
		tmp = fmt.Sprintf("%s.%s.xs-restore-%d-%d", dir, base, os.Getpid(), i)
		if len(path.Base(tmp)) > 255 {
			tmp = fmt.Sprintf("%s.xs-restore-%d-%d", dir, os.Getpid(), i)
		}
		var err error
		f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return 0, err
		}
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chmod(tmp, mode)
	}
	if err == nil {
		err = root.Chtimes(tmp, mtime, mtime)
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return n, err
	}
	return n, nil
}
