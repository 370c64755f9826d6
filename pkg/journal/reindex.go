package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

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
// "version" file, and at start a datastore without one takes the
// directory for an old layout: it migrates Sugar 0.82's store/ directory
// if there is one (nothing else moves) and rebuilds its index from every
// entry. RequestReindex removes both files; a datastore running meanwhile
// keeps listing what it listed until Sugar restarts (log out, or restart
// the laptop).
//
// A file already missing is no error; dir must be a directory.
func RequestReindex(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a Journal directory", dir)
	}
	for _, name := range []string{"index_updated", "version"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			// Not Sugar's flag: leave a directory of that name alone.
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("asking Sugar to index the restored entries: %w", err)
		}
	}
	return nil
}

// IsDatastore reports whether dir is a datastore that Sugar has run in:
// it holds Sugar's index directory ("index"), which backups leave out and
// only Sugar writes.
func IsDatastore(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, "index"))
	return err == nil && fi.IsDir()
}
