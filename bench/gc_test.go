package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// benchClock is a settable clock.
type benchClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *benchClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func fileBlob(data []byte) blob.Blob {
	return blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
}

// commitDay uploads the day's new files and the tree, and commits.
func commitDay(ctx context.Context, s *store.Store, u store.UserID, files map[string][]byte, fresh []string) error {
	t := &manifest.Tree{}
	var blobs []blob.Blob
	for name, data := range files {
		id := chunk.Sum(data)
		t.Entries = append(t.Entries, manifest.Entry{Name: name, Type: manifest.File, Mode: 0o644, Size: int64(len(data)), Chunks: []chunk.ID{id}})
	}
	for _, name := range fresh {
		blobs = append(blobs, fileBlob(files[name]))
	}
	t.Sort()
	enc, err := manifest.Encode(t)
	if err != nil {
		return err
	}
	tree := blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(enc)}, Data: enc, RawLen: len(enc)}
	if err := s.Put(ctx, u, append(blobs, tree)); err != nil {
		return err
	}
	_, err = s.Commit(ctx, u, tree.ID, store.CommitInfo{})
	return err
}

// BenchmarkGC builds a school's store (XS_BENCH_USERS users, default 200,
// each with XS_BENCH_DAYS daily snapshots, default 30), applies the default
// retention 45 days after the last backup, then times garbage collection
// and pack compaction.
func BenchmarkGC(b *testing.B) {
	users, days := envInt("XS_BENCH_USERS", 200), envInt("XS_BENCH_DAYS", 30)
	const fileSize, base, daily, books = 32 << 10, 20, 3, 5
	for i := 0; i < b.N; i++ {
		ctx := context.Background()
		dir := b.TempDir()
		clk := &benchClock{t: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
		s, err := store.Open(ctx, dir, store.Options{Now: clk.now, Reserve: -1})
		if err != nil {
			b.Fatal(err)
		}
		journals := make([]map[string][]byte, users)
		ids := make([]store.UserID, users)
		for u := range users {
			usr, err := s.AddUser(ctx, store.NewUser{Serial: fmt.Sprintf("SHC%04d", u), Approved: true})
			if err != nil {
				b.Fatal(err)
			}
			ids[u] = usr.ID
			journals[u] = map[string][]byte{}
			r := randFor(uint64(u))
			for f := range base {
				journals[u][fmt.Sprintf("doc%03d", f)] = journalgen.Random(r, fileSize)
			}
			for k := range books {
				bk := (u + k*7) % 20
				journals[u][fmt.Sprintf("book%02d.pdf", bk)] = journalgen.Book(42, bk, 2*fileSize)
			}
		}
		setup := time.Now()
		var logical int64
		for d := range days {
			var wg sync.WaitGroup
			errs := make(chan error, users)
			sem := make(chan struct{}, 8)
			for u := range users {
				var fresh []string
				if d == 0 {
					for name := range journals[u] {
						fresh = append(fresh, name)
					}
				} else {
					r := randFor(uint64(u*1000 + d))
					for k := range daily {
						name := fmt.Sprintf("doc%03d", (d*daily+k)%base)
						journals[u][name] = journalgen.Random(r, fileSize)
						fresh = append(fresh, name)
					}
				}
				files := make(map[string][]byte, len(journals[u]))
				for k, v := range journals[u] {
					files[k] = v
					logical += int64(len(v))
				}
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if err := commitDay(ctx, s, ids[u], files, fresh); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			clk.mu.Lock()
			clk.t = clk.t.Add(24 * time.Hour)
			clk.mu.Unlock()
		}
		packs := dirBytes(filepath.Join(dir, "packs"))
		b.Logf("built %d users x %d snapshots (%.0f MB logical, %.0f MB of packs) in %v",
			users, days, float64(logical)/1e6, float64(packs)/1e6, time.Since(setup).Round(time.Second))

		t0 := time.Now()
		ret, err := s.Retention(ctx, store.RetentionOptions{Now: clk.now().AddDate(0, 0, 45)})
		if err != nil {
			b.Fatal(err)
		}
		retention := time.Since(t0)
		t1 := time.Now()
		gc, err := s.GC(ctx, store.GCOptions{})
		if err != nil {
			b.Fatal(err)
		}
		gcTime := time.Since(t1)
		after := dirBytes(filepath.Join(dir, "packs"))
		b.Logf("retention deleted %d snapshots in %v; gc: %+v in %v; packs %.0f -> %.0f MB",
			ret.Deleted, retention.Round(time.Millisecond), *gc, gcTime.Round(time.Millisecond), float64(packs)/1e6, float64(after)/1e6)
		b.ReportMetric(float64(ret.Deleted)/retention.Seconds(), "retention-snapshots/s")
		b.ReportMetric(gcTime.Seconds(), "gc-s")
		b.ReportMetric(float64(gc.BlobsDeleted)/gcTime.Seconds(), "swept-blobs/s")
		b.ReportMetric(float64(gc.BytesCopied)/1e6, "copied-MB")
		b.ReportMetric(float64(gc.BytesReclaimed)/1e6, "reclaimed-MB")
		b.ReportMetric(float64(gc.BytesReclaimed+gc.BytesCopied)/1e6/gcTime.Seconds(), "packs-processed-MB/s")
		b.ReportMetric(float64(gc.PacksRewritten), "packs-rewritten")

		// Then rewrite every pack that still holds any garbage: the copy
		// throughput of compaction.
		t2 := time.Now()
		all, err := s.GC(ctx, store.GCOptions{CompactBelow: 1})
		if err != nil {
			b.Fatal(err)
		}
		allTime := time.Since(t2)
		b.Logf("gc --compact-below 1: %+v in %v; packs now %.0f MB", *all, allTime.Round(time.Millisecond), float64(dirBytes(filepath.Join(dir, "packs")))/1e6)
		b.ReportMetric(float64(all.BytesCopied)/1e6/allTime.Seconds(), "compact-copy-MB/s")
		if err := checkStore(ctx, s); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// checkStore fails if the store's check finds any problem.
func checkStore(ctx context.Context, s *store.Store) error {
	rep, err := s.Check(ctx, store.CheckOptions{})
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("check after gc: %+v", rep.Problems[0])
	}
	return nil
}

// BenchmarkCompaction measures the copy throughput of pack compaction: 512 MB
// of 64 KiB chunks from two snapshots, interleaved in the packs; deleting the
// older snapshot leaves every pack half live, and GC rewrites them all.
func BenchmarkCompaction(b *testing.B) {
	const chunkSize, chunks = 64 << 10, 8192
	for i := 0; i < b.N; i++ {
		ctx := context.Background()
		dir := b.TempDir()
		s, err := store.Open(ctx, dir, store.Options{Reserve: -1})
		if err != nil {
			b.Fatal(err)
		}
		u, _ := s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
		r := randFor(1)
		files := [2]manifest.Entry{{Name: "a.ogg", Type: manifest.File, Mode: 0o644}, {Name: "b.ogg", Type: manifest.File, Mode: 0o644}}
		var batch []blob.Blob
		for c := range chunks {
			bl := fileBlob(journalgen.Random(r, chunkSize))
			f := &files[c%2]
			f.Chunks, f.Size = append(f.Chunks, bl.ID), f.Size+chunkSize
			if batch = append(batch, bl); len(batch) == 64 {
				if err := s.Put(ctx, u.ID, batch); err != nil {
					b.Fatal(err)
				}
				batch = nil
			}
		}
		var snaps []*store.Snapshot
		for _, f := range files {
			enc, _ := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{f}})
			tree := blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(enc)}, Data: enc, RawLen: len(enc)}
			if err := s.Put(ctx, u.ID, []blob.Blob{tree}); err != nil {
				b.Fatal(err)
			}
			sn, err := s.Commit(ctx, u.ID, tree.ID, store.CommitInfo{})
			if err != nil {
				b.Fatal(err)
			}
			snaps = append(snaps, sn)
		}
		if err := s.DeleteSnapshot(ctx, u.ID, snaps[0].ID); err != nil {
			b.Fatal(err)
		}
		before := dirBytes(filepath.Join(dir, "packs"))
		t0 := time.Now()
		gc, err := s.GC(ctx, store.GCOptions{CompactBelow: 0.6})
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(t0)
		b.Logf("gc: %+v in %v; packs %.0f -> %.0f MB", *gc, el.Round(time.Millisecond), float64(before)/1e6, float64(dirBytes(filepath.Join(dir, "packs")))/1e6)
		b.ReportMetric(float64(gc.BytesCopied)/1e6/el.Seconds(), "copy-MB/s")
		b.ReportMetric(float64(gc.BytesCopied+gc.BytesReclaimed)/1e6/el.Seconds(), "packs-processed-MB/s")
		b.ReportMetric(float64(gc.BytesReclaimed)/1e6, "reclaimed-MB")
		if err := checkStore(ctx, s); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
