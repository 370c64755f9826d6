package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrOldLayout: the directory holds Sugar 0.82's layout (store/), which
// RequestReindex leaves as it is.
var ErrOldLayout = errors.New("the Journal holds Sugar 0.82's layout (store/)")

// RequestReindex makes Sugar's datastore in dir list every entry in it
// from its next start, entries written there behind its back included
// (a whole Journal restored after a reflash, or a few entries).
//
// Sugar's Journal lists only what the datastore's index holds, and a
// datastore indexes an entry when Sugar saves it. Entries put back by
// copying files are on disk and in no index: the Journal stays empty. The
// datastore rebuilds its index at start when its "index_updated" flag is
// missing, but a running datastore writes that flag again at each flush
// and when it stops. What it never writes while it runs is its layout's
// "version" file, and at start a datastore without one rebuilds its index
// from every entry (after migrating an old layout, see below).
// RequestReindex removes both files; a datastore running meanwhile keeps
// listing what it listed until Sugar restarts (log out, or restart the
// laptop).
//
// Sugar deletes, with its document, an entry whose metadata it cannot read
// while it rebuilds its index: an entry directory with no metadata
// directory (its metadata left out of a restore as damaged, say) is given
// an empty one first, and is listed untitled with its document.
//
// Sugar's optimizer keeps, under checksums/<md5>/, the entries whose
// document had that checksum, and links a new document of that checksum
// to the first one's file. A restored entry's document may no longer be
// what the checksum it is listed under says (a spoiled version restored
// over), and the child's next document of that content would become the
// restored one: RequestReindex removes those lists (not the optimizer's
// queue). Sugar only shares fewer identical documents.
//
// A directory holding Sugar 0.82's layout (store/) is left as it is and
// the error is ErrOldLayout: without a version file a newer Sugar migrates
// that layout, and Sugar 0.120's migration loses entries (their metadata
// written as Python's text of bytes; entries without a timestamp deleted,
// or moved without their documents). Sugar 0.82 itself needs nothing.
//
// A flag already missing is no error; dir must be a directory.
func RequestReindex(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a Journal directory", dir)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "store")); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: %s: a newer Sugar does not list its entries, and its migration of them loses some", ErrOldLayout, dir)
	}
	if err := keepMetadataless(dir); err != nil {
		return err
	}
	if err := forgetChecksums(filepath.Join(dir, "checksums")); err != nil {
		return err
	}
	for _, name := range []string{"index_updated", "version"} {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && fi.IsDir() {
			return fmt.Errorf("asking Sugar to index the restored entries: %s is a directory, not Sugar's file", p)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("asking Sugar to index the restored entries: %w", err)
		}
	}
	return nil
}

// keepMetadataless gives each entry directory (XX/<uid> with XX ==
// uid[:2]) that has no metadata directory an empty one.
func keepMetadataless(dir string) error {
	tops, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, top := range tops {
		if !top.IsDir() || len(top.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, top.Name()))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.IsDir() || len(e.Name()) < 2 || e.Name()[:2] != top.Name() {
				continue
			}
			md := filepath.Join(dir, top.Name(), e.Name(), "metadata")
			if _, err := os.Lstat(md); errors.Is(err, fs.ErrNotExist) {
				if err := os.Mkdir(md, 0o755); err != nil {
					return fmt.Errorf("keeping entry %s from Sugar's index rebuild: %w", e.Name(), err)
				}
			}
		}
	}
	return nil
}

// forgetChecksums removes the optimizer's lists of entries by checksum.
func forgetChecksums(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == "queue" || !e.IsDir() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clearing Sugar's checksum lists: %w", err)
		}
	}
	return nil
}

// IsDatastore reports whether dir is a datastore that Sugar has run in:
// it holds Sugar's checksums directory (made at every start) and its index
// directory or layout version file, none of which a Journal's backups
// hold.
func IsDatastore(dir string) bool {
	isDir := func(name string) bool {
		fi, err := os.Stat(filepath.Join(dir, name))
		return err == nil && fi.IsDir()
	}
	if !isDir("checksums") {
		return false
	}
	if isDir("index") {
		return true
	}
	fi, err := os.Lstat(filepath.Join(dir, "version"))
	return err == nil && fi.Mode().IsRegular()
}
