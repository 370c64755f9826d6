package backup_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// BenchmarkUnchangedScan is the laptop's side of a nightly run with nothing
// to send, before it connects: the cache loaded from its file and the scan
// of a 1000-entry Journal (about 12,000 files) that finds it unchanged.
// What it allocates is faulted in fresh (xo-backup runs no collection).
func BenchmarkUnchangedScan(b *testing.B) {
	defer backup.SetRacyWindow(0)()
	src := b.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Options{Seed: 7, Entries: 1000, MediaBytes: 1 << 10, DocBytes: 1 << 10}); err != nil {
		b.Fatal(err)
	}
	s := openStore(b)
	u := addUser(b, s, "SCANB1")
	settle()
	cache := backup.NewCache()
	mustRun(b, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})
	path := filepath.Join(b.TempDir(), "cache")
	if err := cache.Save(path); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := backup.LoadCache(path)
		if err != nil {
			b.Fatal(err)
		}
		_, files, scan, err := backup.EstimateScan(context.Background(), src, c, backup.JournalExclude)
		if err != nil || files != 0 || !scan.SameAsCache(src, c) {
			b.Fatalf("the scan of an unchanged Journal: %d files to send, %v", files, err)
		}
	}
}
