package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestBigAttackFileWithMoreChunksThanATreeHolds: a manifest Tree lists
// every chunk ID of every file inline (32 bytes each) and may be at most
// manifest.MaxTreeSize (16 MiB), so one file of more than ~524 000 chunks
// cannot be described. With the default parameters that is a zero-filled
// (sparse) file of 8 GiB (zeros are cut at every MinSize, 16 KiB) or about
// 40 GiB of ordinary data; this test is the same thing to scale: parameters
// with MinSize 512 and a 258 MiB sparse file (cut at every 512 bytes), next
// to a small document.
//
// Expectation: one oversized file does not fail the whole backup night
// after night. The run completes; the small document is in the snapshot;
// the big file is either backed up whole (it restores to its size) or left
// out and named in Result.Skipped.
func TestBigAttackFileWithMoreChunksThanATreeHolds(t *testing.T) {
	p := chunk.DefaultParams()
	p.MinSize, p.AverageBits, p.MaxSize = 512, 10, 4096
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), t.TempDir(), store.Options{Reserve: -1, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	u := addUser(t, s, "SHCBIG0001")

	src := t.TempDir()
	writeFile(t, filepath.Join(src, "story.txt"), []byte("Once upon a time on an XO.\n"))
	// One chunk ID per 512 zero bytes: more IDs than a 16 MiB tree holds.
	chunks := int64(manifest.MaxTreeSize/32 + 4096)
	size := chunks * int64(p.MinSize)
	f, err := os.Create(filepath.Join(src, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	cache := backup.NewCache()
	res, err := run(s, u, src, backup.Options{Cache: cache})
	if err != nil {
		t.Fatalf("a %d-byte file of %d chunks failed the whole backup: %v", size, chunks, err)
	}
	got := paths(t, s, mustRoot(t, s, u))
	if !slices.Contains(got, "story.txt") {
		t.Fatalf("the small document is not in the snapshot: %v", got)
	}
	if !slices.Contains(got, "disk.img") && !slices.Contains(res.Skipped, "disk.img") {
		t.Fatalf("the big file is neither in the snapshot nor reported as skipped: %v, skipped %v", got, res.Skipped)
	}
	// The next run (its file cache knows the big file) says so again.
	res, err = run(s, u, src, backup.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(t, s, mustRoot(t, s, u)); !slices.Contains(got, "disk.img") && !slices.Contains(res.Skipped, "disk.img") {
		t.Fatalf("the next run left the big file out without saying so: %v, skipped %v", got, res.Skipped)
	}
}

func mustRoot(t *testing.T, s *store.Store, u *store.User) chunk.ID {
	t.Helper()
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	return sn.Root
}

// TestBigAttackLargeDirectoryThatFitsIsWhole: a directory of 150,000
// one-chunk files whose tree (about 12 MiB) fits is backed up whole: only
// what a tree cannot hold is ever left out (a first estimate of the
// entries' sizes left 80,000 of them out).
func TestBigAttackLargeDirectoryThatFitsIsWhole(t *testing.T) {
	tr := &manifest.Tree{}
	for i := 0; i < 150000; i++ {
		tr.Entries = append(tr.Entries, manifest.Entry{Name: fmt.Sprintf("photo-%06d-from-the-school-trip.jpg", i), Type: manifest.File,
			Mode: 0o644, MTime: 1700000000000000000 + int64(i), Size: 100000, Chunks: []chunk.ID{chunk.Sum([]byte(fmt.Sprint(i)))}})
	}
	if left := backup.FitTree(tr); len(left) != 0 || len(tr.Entries) != 150000 {
		t.Fatalf("a tree of %d bytes (under %d) lost %d entries", manifest.EncodedSize(tr), manifest.MaxTreeSize, len(left))
	}
	b, err := manifest.Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tree of %d bytes kept whole", len(b))
	// And one file too many chunks over: only it goes.
	big := manifest.Entry{Name: "disk.img", Type: manifest.File, Mode: 0o644, Size: 1 << 40}
	for i := 0; i < (manifest.MaxTreeSize-len(b))/32+10; i++ {
		big.Chunks = append(big.Chunks, chunk.Sum([]byte(fmt.Sprint("z", i))))
	}
	tr.Entries = append(tr.Entries, big)
	tr.Sort()
	left := backup.FitTree(tr)
	if len(left) != 1 || left[0].Name != "disk.img" || len(tr.Entries) != 150000 {
		t.Fatalf("left out %d entries (want disk.img alone)", len(left))
	}
	if _, err := manifest.Encode(tr); err != nil {
		t.Fatalf("what was kept does not encode: %v", err)
	}
}
