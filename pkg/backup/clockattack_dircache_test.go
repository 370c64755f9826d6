package backup_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestClockAttackDirCacheFutureMtimes: an XO whose RTC battery is dead
// boots at 2000-01-01 after its battery ran flat, so every Journal entry
// written while its clock was right now has an mtime years "in the
// future". The README promises that a directory whose lstat did not change
// is not listed or encoded again; files with such mtimes are cached
// (racyFile: "a time far ahead, from a clock set back since, cannot" be
// given again), but directories are not: every backup lists every
// directory again, and an unchanged Journal is never taken whole.
func TestClockAttackDirCacheFutureMtimes(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "CLOCKDIR1")
	src := t.TempDir()
	for _, d := range []string{"", "a", "a/b", "c"} {
		for j := range 2 {
			writeFile(t, filepath.Join(src, d, fmt.Sprintf("f%d", j)), []byte(d+fmt.Sprint(j)))
		}
	}
	// Written when the clock said 2026; the clock now says a year earlier
	// (or 2000): the tree's times are ahead of the clock.
	future := time.Now().AddDate(1, 0, 0)
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chtimes(p, future, future)
		}
		return nil
	})
	settle()
	cache := backup.NewCache()
	cachedRun(t, s, u, src, cache, nil)
	settle()
	got, scan := cachedRun(t, s, u, src, cache, nil)
	if scan.Listed() != 0 {
		t.Errorf("nothing changed since the last backup, but %d of %d directories were listed again (their mtimes are ahead of a clock set back)", scan.Listed(), countDirs(t, src))
	}
	if !scan.SameAsCache(src, cache) {
		t.Errorf("an unchanged Journal whose times are ahead of the clock is not taken whole from the last snapshot")
	}
	if got.BytesRead != 0 {
		t.Errorf("unchanged files read again: %d bytes", got.BytesRead)
	}
}
