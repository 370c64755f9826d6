package store_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestLifeAttackQuotaCountsUploadsExpiredInTheSameRun: a laptop's backup was
// cut off days ago (the student took the laptop home and reflashed it) and
// left 300 KiB of uploads no snapshot uses. The nightly lifecycle applies
// the soft quota before it expires abandoned uploads, so it counts those
// uploads as usage, deletes the student's snapshot history to make up for
// them, and a moment later the same run releases the uploads: the user ends
// far under the quota, history gone for nothing. With expiry first the
// user was under the soft quota and nothing had to go.
func TestLifeAttackQuotaCountsUploadsExpiredInTheSameRun(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour, ScrubDays: -1})
	u := addUser(t, s, "SHCQEXP")
	src := t.TempDir()
	for i := 0; i < 5; i++ {
		replaceFile(t, s, u, src, uint64(400+i), 100<<10)
		clk.Add(24 * time.Hour)
	}
	committed, _ := s.Usage(ctx, u.ID)
	// The abandoned upload: three 100 KiB chunks, never committed.
	r := rand.New(rand.NewPCG(77, 77))
	for i := 0; i < 3; i++ {
		if _, err := putChunk(s, u.ID, journalgen.Random(r, 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	// Soft quota above what the snapshots use, below that plus the upload.
	soft := committed.Bytes + 50<<10
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Quota = &store.Quota{Soft: soft}; return nil }); err != nil {
		t.Fatal(err)
	}
	clk.Add(5 * 24 * time.Hour) // the upload is 5 days old: past the 72 h expiry
	// Staff preview the night first (xs-admin lifecycle --dry-run): it must
	// say what the night will do, not delete history in its preview.
	dry, err := s.Lifecycle(ctx, store.LifecycleOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Expired.Holds == 0 || dry.Quota.Deleted > 0 {
		t.Errorf("the dry run says %d upload(s) expire and the quota deletes %d snapshot(s) (%+v): the night itself deletes none", dry.Expired.Holds, dry.Quota.Deleted, dry.Quota.Users)
	}
	rep, err := s.Lifecycle(ctx, store.LifecycleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := s.Usage(ctx, u.ID)
	t.Logf("retention deleted %d, quota %+v, expired %+v; usage %d -> %d, soft %d", rep.Retention.Deleted, rep.Quota.Users, rep.Expired, committed.Bytes, after.Bytes, soft)
	if rep.Expired.Holds == 0 {
		t.Fatalf("the abandoned upload did not expire: %+v", rep.Expired)
	}
	if rep.Quota.Deleted > 0 {
		t.Fatalf("the soft quota deleted %d snapshot(s) to make room for uploads the same run expired; usage is now %d, %d under the soft quota of %d",
			rep.Quota.Deleted, after.Bytes, soft-after.Bytes, soft)
	}
}
