package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestEstimate: before a first backup every file counts; after it, only
// what changed, from the file cache, without reading a file.
func TestEstimate(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SHC0002")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(2)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache := backup.NewCache()
	all, files, err := backup.Estimate(ctx, src, cache, backup.JournalExclude)
	if err != nil || all == 0 || files == 0 {
		t.Fatalf("before a first backup: %d bytes in %d files, %v", all, files, err)
	}
	res := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})
	if all != res.BytesScanned || files != res.Files {
		t.Fatalf("estimated %d bytes in %d files; the backup scanned %d in %d", all, files, res.BytesScanned, res.Files)
	}
	if b, n, _ := backup.Estimate(ctx, src, cache, backup.JournalExclude); b != 0 || n != 0 {
		t.Fatalf("unchanged: %d bytes in %d files", b, n)
	}
	os.WriteFile(filepath.Join(src, "new-file"), make([]byte, 1000), 0o644)
	if b, n, _ := backup.Estimate(ctx, src, cache, backup.JournalExclude); b != 1000 || n != 1 {
		t.Fatalf("one new file of 1000 bytes: %d bytes in %d files", b, n)
	}
}
