package agent

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

type rstCountingSource struct {
	src           restore.Source
	calls, chunks atomic.Int64
	trees         atomic.Int64
}

func (c *rstCountingSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	c.calls.Add(1)
	for _, r := range refs {
		if r.Type == blob.Tree {
			c.trees.Add(1)
		} else {
			c.chunks.Add(1)
		}
	}
	return c.src.Fetch(ctx, refs, fn)
}

// TestRstAttackHugeJournalRestoreAll: a Journal of 1500 entries (16 500
// files) restored whole over QUIC: progress is reported once per file with
// running totals that end at the totals, every tree and chunk is fetched
// once, and in batches (a request per few dozen files, not per file).
func TestRstAttackHugeJournalRestoreAll(t *testing.T) {
	ctx := context.Background()
	o := journalgen.Options{Seed: 11, Entries: 1500, MediaBytes: 2 << 10, DocBytes: 1 << 10}
	_, src, st, jr := rstReflash(t, "RST-HUGE", o)
	var calls, last int64
	var monotone = true
	var lastP restore.Progress
	res, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Progress: func(p restore.Progress) {
		calls++
		if p.Files != last+1 || p.Bytes < lastP.Bytes || p.TotalFiles != lastP.TotalFiles && lastP.TotalFiles != 0 {
			monotone = false
		}
		last, lastP = p.Files, p
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}
	if calls != res.Files || !monotone || lastP.Files != lastP.TotalFiles || lastP.Bytes != lastP.TotalBytes {
		t.Fatalf("progress: %d calls for %d files, monotone %v, last %+v", calls, res.Files, monotone, lastP)
	}
	// The same through a counting source, into another directory.
	c, _, err := Dial(ctx, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g, err := c.Hello(ctx, "restore"); err != nil || !g.Granted {
		t.Fatalf("hello: %+v %v", g, err)
	}
	sns, err := c.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := chunk.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	cs := &rstCountingSource{src: NewSource(c, codec)}
	res2, err := restore.Restore(ctx, cs, sns[len(sns)-1].Root, t.TempDir(), restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d dirs: %d requests, %d tree and %d chunk refs", res2.Files, res2.Dirs, cs.calls.Load(), cs.trees.Load(), cs.chunks.Load())
	if cs.trees.Load() > res2.Dirs+1 || cs.calls.Load() > res2.Files/16+res2.Dirs/16+64 {
		t.Fatalf("%d requests (%d tree refs) for %d files in %d directories", cs.calls.Load(), cs.trees.Load(), res2.Files, res2.Dirs)
	}
}
