package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// countingRemote counts the requests and bytes that go to a Remote.
type countingRemote struct {
	store.Remote
	puts, gets, stats, lists, deletes atomic.Int64
	written, read                     atomic.Int64
}

func (c *countingRemote) Put(ctx context.Context, name string, r io.Reader, size int64, sum string) error {
	c.puts.Add(1)
	c.written.Add(size)
	return c.Remote.Put(ctx, name, r, size, sum)
}

func (c *countingRemote) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	c.gets.Add(1)
	n, err := c.Remote.ReadAt(ctx, name, p, off)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingRemote) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	c.stats.Add(1)
	return c.Remote.Stat(ctx, name)
}

func (c *countingRemote) List(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	c.lists.Add(1)
	return c.Remote.List(ctx, prefix)
}

func (c *countingRemote) Delete(ctx context.Context, name string) error {
	c.deletes.Add(1)
	return c.Remote.Delete(ctx, name)
}

func (c *countingRemote) total() int64 {
	return c.puts.Load() + c.gets.Load() + c.stats.Load() + c.lists.Load() + c.deletes.Load()
}

// s3Round is one backend's figures.
type s3Round struct {
	first, nightly, restore, gc time.Duration
	journal                     int64
}

func runS3Round(b *testing.B, src string, remote store.Remote) s3Round {
	ctx := context.Background()
	var r s3Round
	s, err := store.Open(ctx, b.TempDir(), store.Options{Reserve: -1, Remote: remote})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
	if err != nil {
		b.Fatal(err)
	}
	cache := backup.NewCache()
	run := func() *store.Snapshot {
		tg := s.Target(u.ID, store.CommitInfo{})
		res, err := backup.Run(ctx, src, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude})
		if err != nil {
			b.Fatal(err)
		}
		r.journal = res.BytesScanned
		return tg.Last()
	}
	t0 := time.Now()
	first := run()
	r.first = time.Since(t0)

	if err := journalgen.Mutate(src, 7, 1); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	last := run()
	if _, err := s.Lifecycle(ctx, store.LifecycleOptions{ScrubDays: -1}); err != nil {
		b.Fatal(err)
	}
	r.nightly = time.Since(t0)

	t0 = time.Now()
	if _, err := s.Restore(ctx, last, filepath.Join(b.TempDir(), "out"), store.RestoreOptions{}); err != nil {
		b.Fatal(err)
	}
	r.restore = time.Since(t0)

	if err := s.DeleteSnapshot(ctx, u.ID, first.ID); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	if _, err := s.GC(ctx, store.GCOptions{CompactBelow: 1}); err != nil {
		b.Fatal(err)
	}
	r.gc = time.Since(t0)
	return r
}

// BenchmarkS3 runs a first backup of one Journal (XS_BENCH_ENTRIES
// entries, default 100: about 100 MB, mostly incompressible media), a
// nightly round (a day of changes, then the lifecycle), a restore of the
// whole Journal and a GC, on the local directory and on S3 (versitygw on
// loopback) in the same run, and reports S3's throughput as a fraction
// of local and the requests it sent per GB written and read.
func BenchmarkS3(b *testing.B) {
	srv := s3test.Start(b)
	entries := envInt("XS_BENCH_ENTRIES", 100)
	for i := 0; i < b.N; i++ {
		gen := func() string {
			src := b.TempDir()
			if _, err := journalgen.Generate(src, journalgen.Options{Seed: 5, Entries: entries, MediaBytes: 1536 << 10,
				DocBytes: 48 << 10, SharedBooks: 4, BookSeed: 42, BookBytes: 1 << 20}); err != nil {
				b.Fatal(err)
			}
			return src
		}
		local := runS3Round(b, gen(), nil)
		cr := &countingRemote{Remote: srv.Remote(b, fmt.Sprintf("bench%d", i))}
		onS3 := runS3Round(b, gen(), cr)
		mb := float64(local.journal) / 1e6
		b.ReportMetric(mb, "journal_MB")
		b.ReportMetric(mb/local.first.Seconds(), "local_first_MB/s")
		b.ReportMetric(mb/onS3.first.Seconds(), "s3_first_MB/s")
		b.ReportMetric(local.first.Seconds()/onS3.first.Seconds(), "first_ratio")
		b.ReportMetric(mb/local.restore.Seconds(), "local_restore_MB/s")
		b.ReportMetric(mb/onS3.restore.Seconds(), "s3_restore_MB/s")
		b.ReportMetric(local.restore.Seconds()/onS3.restore.Seconds(), "restore_ratio")
		b.ReportMetric(float64(local.nightly.Milliseconds()), "local_nightly_ms")
		b.ReportMetric(float64(onS3.nightly.Milliseconds()), "s3_nightly_ms")
		b.ReportMetric(float64(local.gc.Milliseconds()), "local_gc_ms")
		b.ReportMetric(float64(onS3.gc.Milliseconds()), "s3_gc_ms")
		gbW, gbR := float64(cr.written.Load())/1e9, float64(cr.read.Load())/1e9
		b.ReportMetric(float64(cr.puts.Load())/max(gbW, 1e-9), "puts/GB_written")
		b.ReportMetric(float64(cr.gets.Load())/max(gbR, 1e-9), "gets/GB_read")
		b.ReportMetric(float64(cr.total()), "s3_requests")
		b.Logf("journal %.0f MB; local: first %v nightly %v restore %v gc %v; s3: first %v nightly %v restore %v gc %v; requests: %d put (%.0f MB), %d get (%.0f MB), %d stat, %d list, %d delete",
			mb, local.first, local.nightly, local.restore, local.gc, onS3.first, onS3.nightly, onS3.restore, onS3.gc,
			cr.puts.Load(), float64(cr.written.Load())/1e6, cr.gets.Load(), float64(cr.read.Load())/1e6, cr.stats.Load(), cr.lists.Load(), cr.deletes.Load())
	}
}
