package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// a3nDiamonds returns depth+1 trees: a leaf with one empty file, then each
// level a directory holding the level below twice ("a" and "b"). Stored,
// they are depth+1 small blobs; walked as paths, 2^depth directories.
func a3nDiamonds(depth int, leafName string) (root chunk.ID, blobs []blob.Blob) {
	leaf, _ := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: leafName, Type: manifest.File, Mode: 0o644}}})
	root = chunk.Sum(leaf)
	blobs = append(blobs, blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: leaf, RawLen: len(leaf)})
	for i := 0; i < depth; i++ {
		enc, _ := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{
			{Name: "a", Type: manifest.Dir, Mode: 0o755, Subtree: root},
			{Name: "b", Type: manifest.Dir, Mode: 0o755, Subtree: root},
		}})
		root = chunk.Sum(enc)
		blobs = append(blobs, blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)})
	}
	return root, blobs
}

// TestRepeatedSubtreeCommitIsLinear: a laptop uploads 19 small trees,
// each holding the one below twice, and commits the top one. Validating it
// should cost the 19 distinct trees (the restore side already refuses such a
// snapshot by its path count), not its 2^18 paths: a commit holds the
// store's reference lock, so while it walks no other laptop's commit is
// acknowledged. Each level doubles the walk (here ~17 µs a path: 18 levels
// take seconds, 40 levels, still 41 blobs of a few hundred bytes, would take
// months, and nothing stops the walk when the laptop hangs up). An honest
// laptop backs up meanwhile.
func TestRepeatedSubtreeCommitIsLinear(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "HONEST3C", 51)
	evil := newLaptop(t, d, "EVIL3C", 52)
	c := dialLaptop(t, d, evil) // a granted backup session
	root, blobs := a3nDiamonds(18, "f")
	ctx := context.Background()
	if err := c.Put(ctx, blobs); err != nil {
		t.Fatal(err)
	}
	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := c.Commit(ctx, root)
		done <- result{time.Since(start), err}
	}()
	time.Sleep(300 * time.Millisecond)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	res, err := agent.Run(hctx, honest.st, agent.RunOptions{Source: honest.src, Force: true, MaxSlotWait: 5 * time.Second})
	honestTook := time.Since(start)
	ev := <-done
	t.Logf("commit of %d trees: %v (%v); the honest laptop's run meanwhile: %v (%v)", len(blobs), ev.took.Round(time.Millisecond), ev.err, honestTook.Round(time.Millisecond), err)
	if err != nil || res.Outcome != agent.Done {
		t.Fatalf("honest run: %v %+v", err, res)
	}
	if ev.took > 2*time.Second {
		t.Errorf("a commit of %d stored trees took %v: its validation walks every path of the repeated subtrees", len(blobs), ev.took.Round(time.Millisecond))
	}
	if honestTook > 4*time.Second {
		t.Errorf("an honest laptop's backup took %v while that commit ran (its commit waits for the walk)", honestTook.Round(time.Millisecond))
	}
}
