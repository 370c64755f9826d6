package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestLeakAttackLifecycleWhileIdle: the daemon runs its nightly lifecycle
// (retention, quota, expiry, scrub, GC) every night of the year, most of
// them over a store where nothing changed (holidays, weekends); staff also
// run check --read-data, a whole scrub and GC by hand. Each run, on its own
// niced OS thread, leaves nothing behind: goroutines, descriptors (packs
// opened to scrub or compact), OS threads and heap come back to the
// baseline after hundreds of runs.
func TestLeakAttackLifecycleWhileIdle(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	for i, serial := range []string{"LEAKLC01", "LEAKLC02"} {
		l := newLaptop(t, d, serial, uint64(411+i))
		l.run(t)
		l.run(t)
	}
	night := func(i int) {
		var err error
		switch i % 4 {
		case 0, 1:
			_, err = d.RunLifecycle(ctx, store.LifecycleOptions{ScrubDays: 1})
		case 2:
			var rep *store.CheckReport
			if rep, err = d.Store.Check(ctx, store.CheckOptions{ReadData: true}); err == nil && len(rep.Problems) > 0 {
				t.Fatalf("check: %+v", rep.Problems)
			}
		case 3:
			if _, err = d.Store.Scrub(ctx, store.ScrubOptions{All: true}); err == nil {
				_, err = d.Store.GC(ctx, store.GCOptions{})
			}
		}
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	for i := range 8 {
		night(i)
	}
	base := laMeasure(t)
	threads := laThreads()
	diskBefore := dirBytes(d.Config.Data)
	const reps = 200
	took := laRepeat(t, reps, night)
	t.Logf("%d lifecycle/check/scrub/GC runs in %v", reps, took.Round(time.Millisecond))
	laCheck(t, "idle lifecycle", reps, base, 5*time.Second)
	diskAfter := dirBytes(d.Config.Data)
	t.Logf("data directory: %d → %d bytes", diskBefore, diskAfter)
	if diskAfter > diskBefore+4<<20 {
		t.Errorf("the data directory grew from %d to %d bytes over %d runs on an idle store", diskBefore, diskAfter, reps)
	}
	t.Logf("OS threads: %d before, %d after", threads, laThreads())
	if now := laThreads(); now > threads+5 {
		t.Errorf("OS threads %d → %d after %d lifecycle runs", threads, now, reps)
	}
}
