package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
)

// TestLeakAttackOffsiteSync: a school replicates to its mothership every
// night (and staff run xs-admin sync by hand): most nights there is one new
// snapshot of each laptop, or nothing. Hundreds of syncs leave neither the
// school's daemon nor the mothership's (here in one process) holding more
// than before: connections to the mothership are closed, nothing per sync
// stays behind.
func TestLeakAttackOffsiteSync(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	school := startSchool(t, ms, "leak-school")
	l := newLaptop(t, school, "LEAKOS01", 415)
	l.run(t)
	if _, _, err := school.Sync(ctx, false); err == nil {
		t.Fatal("a sync before the mothership's staff approved the school succeeded")
	}
	if _, err := (&admin.Service{S: ms.Store}).Approve(ctx, admin.ApproveRequest{Serial: "leak-school"}); err != nil {
		t.Fatal(err)
	}
	night := func(i int) {
		if i%2 == 0 {
			l.run(t) // a new snapshot (same Journal) to send
		}
		rep, lag, err := school.Sync(ctx, false)
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if lag.Snapshots != 0 || i%2 == 0 && rep.Snapshots < 1 {
			t.Fatalf("sync %d: %+v, lag %+v", i, rep, lag)
		}
	}
	for i := range 6 {
		night(i)
	}
	base := laMeasure(t)
	const reps = 200
	took := laRepeat(t, reps, night)
	t.Logf("%d syncs in %v", reps, took.Round(time.Millisecond))
	laCheck(t, "off-site sync", reps, base, 5*time.Second)
}
