package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestEstimate: before a first backup every file counts; after it, only
// what changed, from the file cache, without reading a file.
func TestEstimate(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
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

// TestScanLongPaths: paths longer than the scan's path buffer, names of
// 255 bytes, and entries that vanish between the listing and their lstat
// are counted as a walk without the scan counts them.
func TestScanLongPaths(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "SCANL1")
	src := t.TempDir()
	long := func(c byte) string { return strings.Repeat(string(c), 255) }
	deep := filepath.Join(src, long('a'), long('b'), long('c'))
	var want int64
	for i, size := range []int{0, 1, 4096} {
		writeFile(t, filepath.Join(deep, fmt.Sprintf("%s%d", long('f')[:250], i)), make([]byte, size))
		want += int64(size)
	}
	writeFile(t, filepath.Join(src, "short"), []byte("x"))
	want++
	settle()
	cache := backup.NewCache()
	b, n, err := backup.Estimate(context.Background(), src, cache, nil)
	if err != nil || b != want || n != 4 {
		t.Fatalf("estimate: %d bytes in %d files (%v), want %d in 4", b, n, err, want)
	}
	got, _ := cachedRun(t, s, u, src, cache, nil)
	sameAsFresh(t, s, u, src, got, nil, "long paths")
	// A file that vanishes after its directory was cached with it: the
	// scan lists the directory again and finds the rest.
	settle()
	if err := os.Remove(filepath.Join(deep, long('f')[:250]+"1")); err != nil {
		t.Fatal(err)
	}
	d, _ := os.Stat(deep)
	os.Chtimes(deep, d.ModTime(), d.ModTime()) // ctime still moves
	got, _ = cachedRun(t, s, u, src, cache, nil)
	sameAsFresh(t, s, u, src, got, nil, "a file gone")
	if got.Files != 3 {
		t.Fatalf("after a file vanished: %d files, want 3", got.Files)
	}
}
