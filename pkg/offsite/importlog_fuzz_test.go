package offsite

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// FuzzLoadImportLog: the mothership's record of the bundles a school's
// USB sticks brought (what stops a bundle from being imported twice),
// damaged on disk. No panic; a record that does not decode is damaged
// (said as such), one that does survives saving and loading again.
func FuzzLoadImportLog(f *testing.F) {
	f.Add([]byte(`{"bundles":{"0123456789abcdef":"2026-12-05T02:00:00Z"},"newest_created":"2026-12-05T01:00:00Z"}`))
	f.Add([]byte(`{"bundles":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := importLogPath(dir, "SCHOOL1")
		os.MkdirAll(filepath.Dir(p), 0o750)
		os.WriteFile(p, b, 0o640)
		l, err := loadImportLog(dir, "SCHOOL1")
		if err != nil {
			if !errors.Is(err, errkind.ErrDamaged) {
				t.Fatalf("a bad import log: %v (want a damaged error)", err)
			}
			return
		}
		if l.Bundles == nil {
			t.Fatal("a loaded import log has no bundle set")
		}
		if err := saveImportLog(dir, "SCHOOL1", l); err != nil {
			t.Fatal(err)
		}
		again, err := loadImportLog(dir, "SCHOOL1")
		if err != nil || len(again.Bundles) != len(l.Bundles) || !again.Newest.Equal(l.Newest) {
			t.Fatalf("saved and loaded: %v, %d vs %d bundles", err, len(again.Bundles), len(l.Bundles))
		}
	})
}
