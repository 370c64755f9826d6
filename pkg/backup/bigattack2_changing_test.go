package backup_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// bigAttack2Hook is a store target that calls hook once, at the first
// upload, while the backup is in the middle of reading a big file.
type bigAttack2Hook struct {
	backup.Target
	once sync.Once
	hook func()
}

func (h *bigAttack2Hook) Put(ctx context.Context, blobs []blob.Blob) error {
	h.once.Do(h.hook)
	return h.Target.Put(ctx, blobs)
}

func bigAttack2Random(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 3))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	writeFile(t, path, b)
}

func bigAttack2Entry(t *testing.T, s *store.Store, root [32]byte, rel string) *manifest.Entry {
	t.Helper()
	var e *manifest.Entry
	if err := s.Walk(context.Background(), root, func(p string, en *manifest.Entry) error {
		if p == rel {
			c := *en
			e = &c
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestBigAttack2FileTruncatedMidBackup: a 64 MiB video is emptied
// (truncated to 0, as an editor saving over it does) while the backup is
// reading it, a few MiB in.
//
// Expectation: the snapshot holds a version the file really had (all 64
// MiB as before, or empty), or leaves it out and names it in Skipped;
// never the first few MiB of the old video presented as the whole file. The
// next backup holds the file as it is now (empty).
func TestBigAttack2FileTruncatedMidBackup(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SHCBIG2003")
	src := t.TempDir()
	const size = 64 << 20
	big := filepath.Join(src, "film.ogv")
	bigAttack2Random(t, big, size, 3)
	old := bigAttack2Region(t, big, 0, size)
	time.Sleep(30 * time.Millisecond)

	cache := backup.NewCache()
	tg := &bigAttack2Hook{Target: s.Target(u.ID, store.CommitInfo{Source: src}), hook: func() {
		if err := os.Truncate(big, 0); err != nil {
			t.Error(err)
		}
	}}
	res, err := backup.Run(context.Background(), src, tg, backup.Options{Params: s.Params(), Cache: cache})
	if err != nil {
		t.Fatalf("backup with a file emptied mid-read failed: %v", err)
	}
	e := bigAttack2Entry(t, s, res.Root, "film.ogv")
	switch {
	case e == nil:
		if !slices.Contains(res.Skipped, "film.ogv") {
			t.Errorf("the file is neither in the snapshot nor named in Skipped %v", res.Skipped)
		}
	case e.Size == 0 && len(e.Chunks) == 0:
	case e.Size == size && bigAttack2EntryRegion(t, s, e, 0, size) == old:
	default:
		t.Errorf("snapshot holds %d bytes of a file that was %d bytes, then 0: a version it never had (read %d bytes, skipped %v)",
			e.Size, size, res.BytesRead, res.Skipped)
	}

	time.Sleep(30 * time.Millisecond)
	res2, err := backup.Run(context.Background(), src, s.Target(u.ID, store.CommitInfo{Source: src}), backup.Options{Params: s.Params(), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if e := bigAttack2Entry(t, s, res2.Root, "film.ogv"); e == nil || e.Size != 0 || len(e.Chunks) != 0 {
		t.Errorf("the next backup did not catch up with the emptied file: %+v", e)
	}
}

// TestBigAttack2FileGrowingMidBackup: a 32 MiB recording keeps growing
// (1 MiB appended at a time, 16 MiB in all, from another goroutine, as a
// recorder writes) while the backup reads it.
//
// Expectation: the snapshot holds a prefix the file really had: its
// entry's size equals its bytes, at least the 32 MiB there were when the
// walk saw it, and they are the file's first bytes (or the file is left
// out and named). The next backup, once the recording stopped, holds the
// whole 48 MiB.
func TestBigAttack2FileGrowingMidBackup(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SHCBIG2004")
	src := t.TempDir()
	const size, grow = 32 << 20, 16 << 20
	big := filepath.Join(src, "recording.ogg")
	bigAttack2Random(t, big, size, 4)
	time.Sleep(30 * time.Millisecond)

	var wg sync.WaitGroup
	cache := backup.NewCache()
	tg := &bigAttack2Hook{Target: s.Target(u.ID, store.CommitInfo{Source: src}), hook: func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(big, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(5, 5))
			b := make([]byte, 1<<20)
			for n := 0; n < grow; n += len(b) {
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				if _, err := f.Write(b); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}}
	res, err := backup.Run(context.Background(), src, tg, backup.Options{Params: s.Params(), Cache: cache})
	wg.Wait()
	if err != nil {
		t.Fatalf("backup with a growing file failed: %v", err)
	}
	e := bigAttack2Entry(t, s, res.Root, "recording.ogg")
	if e == nil {
		if !slices.Contains(res.Skipped, "recording.ogg") {
			t.Errorf("the file is neither in the snapshot nor named in Skipped %v", res.Skipped)
		}
	} else {
		t.Logf("snapshot holds %d MiB of the growing file", e.Size>>20)
		if e.Size < size || e.Size > size+grow {
			t.Errorf("snapshot entry size %d, file grew from %d to %d", e.Size, size, size+grow)
		} else if bigAttack2EntryRegion(t, s, e, 0, e.Size) != bigAttack2Region(t, big, 0, e.Size) {
			t.Errorf("the snapshot's %d bytes are not the file's first bytes", e.Size)
		}
	}

	time.Sleep(30 * time.Millisecond)
	res2, err := backup.Run(context.Background(), src, s.Target(u.ID, store.CommitInfo{Source: src}), backup.Options{Params: s.Params(), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	e = bigAttack2Entry(t, s, res2.Root, "recording.ogg")
	if e == nil || e.Size != size+grow || bigAttack2EntryRegion(t, s, e, 0, e.Size) != bigAttack2Region(t, big, 0, size+grow) {
		t.Errorf("the next backup did not catch up with the whole recording: %+v", e)
	}
}
