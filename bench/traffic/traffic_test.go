package traffic

import (
	"context"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/bench/netem"
	"github.com/xs-backup/xs-backup/internal/journalgen"
)

// TestSchoolMorningScaled is the school morning at the scale of one
// building: 150 laptops whose timers fire within 3 s (a crowd: they queue), through a 10 Mbit/s
// link with 10 ms round trips and 0.5% loss, against a server with the
// default configuration. Every laptop must back up, none may fail a run or
// lose its place in the queue. It asserts no times (bench/cmd/morning
// measures them).
func TestSchoolMorningScaled(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("150 laptops through an emulated link (not under -short or -race; make unit runs it)")
	}
	j := journalgen.Options{Entries: 8, MediaBytes: 48 << 10, DocBytes: 8 << 10, SharedBooks: 2, BookSeed: 42, BookBytes: 128 << 10}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{
		Laptops:  150,
		Spread:   3 * time.Second,
		Link:     netem.LinkConfig{Rate: 10e6, Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.005},
		Deadline: 150 * time.Second,
		Journal:  &j,
		WorkDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d done in %v (physical %v, %d wire bytes); link %.0f%% busy over the %d s with laptops waiting; small p95 wait %v",
		r.Completed, r.Wall, r.Physical, r.WireBytes, 100*r.LinkUseWaiting, r.SecondsWaiting, pctl(r.Waits[SmallDelta], 0.95))
	if r.Completed != 150 || r.Failed != 0 || len(r.FailedBy) > 0 {
		t.Fatalf("%d of 150 completed, %d failed: %v", r.Completed, r.Failed, r.FailedBy)
	}
	for _, c := range []Class{SmallDelta, Unchanged, First} {
		if r.ByClass[c] == 0 {
			t.Errorf("no %s in the mix", c)
		}
	}
	if r.Expired != 0 {
		t.Fatalf("%v laptops lost their place in the queue", r.Expired)
	}
}
