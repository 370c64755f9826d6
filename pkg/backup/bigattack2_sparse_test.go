package backup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestBigAttack2SevenGiBSparseVideoBacksUpWhole: a desktop's Journal holds
// a 7 GiB file (a sparse file: zeros, with four 1 MiB stretches of random
// data at scattered offsets), next to a small document, backed up into a
// real store with the default chunker parameters. Its chunk list (about
// 459,000 IDs, 14 MiB) fits a tree, so it must not be left out.
//
// Expectation: the backup completes (the zeros are one
// repeated chunk: a handful of chunks are sent), the laptop's Go heap stays
// under 200 MiB, the snapshot holds the file at its full size with the
// same bytes (random stretches and a zero stretch compared), an unchanged
// second backup reads nothing and makes the same root, and the store
// checks clean.
func TestBigAttack2SevenGiBSparseVideoBacksUpWhole(t *testing.T) {
	if raceEnabled {
		t.Skip("a test of scale, not of races: make unit runs it without the race detector")
	}
	bigAttack2NeedDisk(t)
	s := openStore(t)
	u := addUser(t, s, "SHCBIG2001")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "story.txt"), []byte("A film of the school play.\n"))
	const size = 7 << 30
	offs := []int64{0, 1<<30 + 12345, 3<<30 + 777, size - 1<<20}
	big := filepath.Join(src, "play.webm")
	bigAttack2Sparse(t, big, size, 1, 1<<20, offs...)
	time.Sleep(30 * time.Millisecond) // out of the racy window of the file cache

	cache := backup.NewCache()
	stop := bigAttack2Mem()
	start := time.Now()
	res, err := run(s, u, src, backup.Options{Cache: cache})
	took := time.Since(start)
	heap, hwm := stop()
	t.Logf("7 GiB sparse: %v, heap peak %d MiB, VmHWM %d MiB, read %d MiB, sent %d KiB, %d chunks (%d new)",
		took.Round(time.Millisecond), heap>>20, hwm>>20, res.BytesRead>>20, res.BytesSent>>10, res.ChunksTotal, res.ChunksNew)
	if err != nil {
		t.Fatalf("backup of a 7 GiB file failed: %v", err)
	}
	if heap > 200<<20 {
		t.Errorf("laptop heap peaked at %d MiB during the backup (want under 200 MiB)", heap>>20)
	}
	if slices.Contains(res.Skipped, "play.webm") {
		t.Fatalf("the 7 GiB file, whose chunk list fits a tree, was left out: %v", res.Skipped)
	}
	// 4 MiB of random data, one zero chunk, and the tree (14 MiB of chunk
	// IDs, sent uncompressed above 8 MiB).
	if res.BytesSent > 5<<20+manifest.MaxTreeSize {
		t.Errorf("sent %d MiB for 4 MiB of random data, zeros and a tree", res.BytesSent>>20)
	}
	var e *manifest.Entry
	if err := s.Walk(context.Background(), res.Root, func(p string, en *manifest.Entry) error {
		if p == "play.webm" {
			c := *en
			e = &c
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if e == nil || e.Size != size {
		t.Fatalf("snapshot entry for the 7 GiB file: %+v", e)
	}
	// The snapshot's bytes: its chunks laid end to end (each distinct
	// chunk fetched once) make the file's size, and the random stretches
	// and a zero stretch hash the same as the file's.
	for _, off := range append(offs, 5<<30) {
		n := int64(1 << 20)
		if got, want := bigAttack2EntryRegion(t, s, e, off, n), bigAttack2Region(t, big, off, n); got != want {
			t.Errorf("snapshot bytes at %d differ from the file's", off)
		}
	}

	// Unchanged: nothing read, same root.
	start = time.Now()
	res2, err := run(s, u, src, backup.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unchanged second backup: %v, read %d bytes", time.Since(start).Round(time.Millisecond), res2.BytesRead)
	if res2.BytesRead != 0 || res2.Root != res.Root {
		t.Errorf("unchanged second backup read %d bytes, root %v (first %v)", res2.BytesRead, res2.Root, res.Root)
	}
	rep, err := s.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("store check: %+v", rep.Problems)
	}
}

// bigAttack2EntryRegion hashes n bytes at off of the file entry e as the
// store holds it; it fails the test if its chunks do not add up to e.Size.
func bigAttack2EntryRegion(t *testing.T, src restore.Source, e *manifest.Entry, off, n int64) [32]byte {
	t.Helper()
	seen := map[chunk.ID][]byte{}
	var refs []blob.Ref
	for _, id := range e.Chunks {
		if _, ok := seen[id]; !ok {
			seen[id] = nil
			refs = append(refs, blob.Ref{Type: blob.Chunk, ID: id})
		}
	}
	for i := 0; i < len(refs); i += 256 {
		if err := src.Fetch(context.Background(), refs[i:min(i+256, len(refs))], func(r blob.Ref, raw []byte) error {
			seen[r.ID] = bytes.Clone(raw)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	h := sha256.New()
	var pos int64
	for _, id := range e.Chunks {
		d := seen[id]
		lo, hi := max(off, pos), min(off+n, pos+int64(len(d)))
		if lo < hi {
			h.Write(d[lo-pos : hi-pos])
		}
		pos += int64(len(d))
	}
	if pos != e.Size {
		t.Fatalf("%s: chunks add up to %d bytes, entry says %d", e.Name, pos, e.Size)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
