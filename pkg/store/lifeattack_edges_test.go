package store_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestLifeAttackHugeKeepWithinDaysKeepsEverything: staff who want a laptop's
// history kept "for ever" type a very large keep-within-days. The policy
// validates (only negative values are refused), but now.AddDate(0, 0, -N)
// overflows into the far future, so no snapshot is "within N days" and
// retention deletes every snapshot but the latest: the opposite of what was
// asked.
func TestLifeAttackHugeKeepWithinDaysKeepsEverything(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now})
	u := addUser(t, s, "SHCHUGE")
	src := t.TempDir()
	for i := 0; i < 6; i++ {
		replaceFile(t, s, u, src, uint64(500+i), 20<<10)
		clk.Add(24 * time.Hour)
	}
	p := store.Policy{KeepWithinDays: math.MaxInt}
	if err := p.Validate(); err != nil {
		t.Skipf("the policy is refused (%v): staff are told", err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Retention = &p; return nil }); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Retention(ctx, store.RetentionOptions{Now: clk.Now().AddDate(0, 0, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != 0 {
		t.Fatalf("keep-within-days %d validated, and retention deleted %d of 6 snapshots (kept %v)", p.KeepWithinDays, rep.Deleted, ids(s.Snapshots(u.ID)))
	}
}

// TestLifeAttackUploadsAfterClockCorrectionNotExpiredAtOnce: the server came
// back from a power cut at 2000-01-01; a laptop started its first (large)
// backup, uploaded, and was cut off. An hour later staff (or NTP) correct
// the clock. That night's lifecycle takes the uploads, made an hour before,
// for 26 years old and releases them: the laptop's resumable session loses
// everything it sent, although PendingExpiry promises 72 hours to resume.
// The store knew the clock was wrong at upload time (its newest snapshot
// was 26 years in the future).
func TestLifeAttackUploadsAfterClockCorrectionNotExpiredAtOnce(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour})
	u := addUser(t, s, "SHCPEND")
	replaceFile(t, s, u, t.TempDir(), 1, 20<<10) // a snapshot on the correct clock
	real := clk.Now().Add(24 * time.Hour)
	clk.mu.Lock()
	clk.t = time.Date(2000, 1, 1, 9, 0, 0, 0, time.UTC) // the power cut
	clk.mu.Unlock()
	r := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 4; i++ {
		if _, err := putChunk(s, u.ID, journalgen.Random(r, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	// An hour later the clock is right again; the lifecycle runs that night.
	clk.mu.Lock()
	clk.t = real.Add(time.Hour)
	clk.mu.Unlock()
	rep, err := s.ExpirePending(ctx, time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Holds != 0 {
		t.Fatalf("uploads made (in real time) an hour ago were released as abandoned: %+v", rep)
	}
}
