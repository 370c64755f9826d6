package store_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestDedupSideChannel: for user B, a chunk only user A has and a chunk
// nobody has must look the same — in Need's answer, in the usage change of
// uploading it, and in how long the upload takes. The timing part measures
// interleaved uploads of both kinds and checks that the best single
// threshold on the duration cannot tell them apart much better than chance.
func TestDedupSideChannel(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{})
	a, b := addUser(t, s, "PRIVA"), addUser(t, s, "PRIVB")
	r := rand.New(rand.NewPCG(4, 4))
	const trials, size = 120, 64 << 10
	var shared, fresh []time.Duration
	for i := 0; i < 2*trials; i++ {
		data := journalgen.Random(r, size)
		id := chunk.Sum(data)
		ref := blob.Ref{Type: blob.Chunk, ID: id}
		isShared := i%2 == 0
		if isShared {
			if _, err := putChunk(s, a.ID, data); err != nil {
				t.Fatal(err)
			}
		}
		need, err := s.Need(ctx, b.ID, []blob.Ref{ref})
		if err != nil || !need[0] {
			t.Fatalf("Need told B it has a chunk (shared=%v): %v %v", isShared, need, err)
		}
		before, _ := s.Usage(ctx, b.ID)
		t0 := time.Now()
		if _, err := putChunk(s, b.ID, data); err != nil {
			t.Fatal(err)
		}
		el := time.Since(t0)
		after, _ := s.Usage(ctx, b.ID)
		if after.Bytes-before.Bytes != size || after.Blobs-before.Blobs != 1 {
			t.Fatalf("B's usage grew by %d bytes, %d blobs for a %d-byte chunk (shared=%v)", after.Bytes-before.Bytes, after.Blobs-before.Blobs, size, isShared)
		}
		if isShared {
			shared = append(shared, el)
		} else {
			fresh = append(fresh, el)
		}
	}
	acc := bestThresholdAccuracy(shared, fresh)
	ms, mf := median(shared), median(fresh)
	t.Logf("upload of a chunk only another user has: median %v; of a new chunk: %v; best threshold tells them apart %.0f%% of the time", ms, mf, acc*100)
	if acc > 0.75 {
		t.Fatalf("upload time reveals whether another user has the chunk (%.0f%% accuracy; medians %v vs %v)", acc*100, ms, mf)
	}
}

func median(d []time.Duration) time.Duration {
	c := slices.Clone(d)
	slices.Sort(c)
	return c[len(c)/2]
}

// bestThresholdAccuracy is how well "shorter than x means shared" (or the
// reverse) classifies the two samples, at the best x.
func bestThresholdAccuracy(a, b []time.Duration) float64 {
	all := append(slices.Clone(a), b...)
	best := 0.5
	for _, x := range all {
		right := 0
		for _, d := range a {
			if d <= x {
				right++
			}
		}
		for _, d := range b {
			if d > x {
				right++
			}
		}
		acc := float64(right) / float64(len(all))
		best = max(best, acc, 1-acc)
	}
	return best
}
