package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// hookBox lets a test install, after Open, the function Options.Hook calls.
type hookBox struct {
	mu sync.Mutex
	fn func(point string)
}

func (h *hookBox) call(point string) {
	h.mu.Lock()
	fn := h.fn
	h.mu.Unlock()
	if fn != nil {
		fn(point)
	}
}

func (h *hookBox) set(fn func(point string)) {
	h.mu.Lock()
	h.fn = fn
	h.mu.Unlock()
}

// fiveDays makes a user with five snapshots a day apart, each with its own
// 60 KiB photo (so every snapshot holds blobs no other one has).
func fiveDays(t *testing.T, hb *hookBox) (*store.Store, string, *store.User, *clock, []*store.Snapshot) {
	t.Helper()
	clk := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{Now: clk.Now, Hook: hb.call})
	u := addUser(t, s, "SHCPIN")
	src := t.TempDir()
	var made []*store.Snapshot
	for i := 0; i < 5; i++ {
		made = append(made, replaceFile(t, s, u, src, uint64(300+i), 60<<10))
		clk.Add(24 * time.Hour)
	}
	return s, dir, u, clk, made
}

// TestLifeAttackPinDuringRetentionIsHonoured: staff pin a snapshot (`xs-admin
// pin`, through the admin socket) while the nightly retention is deleting
// the user's old snapshots. SetPin succeeds, yet retention deletes the
// snapshot it has just pinned: its verdicts were computed before the pin.
func TestLifeAttackPinDuringRetentionIsHonoured(t *testing.T) {
	ctx := context.Background()
	hb := &hookBox{}
	s, _, u, clk, made := fiveDays(t, hb)
	victim := made[2]
	var pinErr error
	var once sync.Once
	hb.set(func(point string) {
		if point != "delete:after-file-remove" {
			return
		}
		// Retention is deleting its first snapshot: staff pin another one.
		once.Do(func() {
			_, pinErr = s.SetPin(ctx, u.ID, victim.ID, true, "science fair")
		})
	})
	// 60 days on: the default policy keeps January's newest (the latest) only.
	rep, err := s.Retention(ctx, store.RetentionOptions{Now: clk.Now().AddDate(0, 0, 60)})
	hb.set(nil)
	if err != nil {
		t.Fatal(err)
	}
	if pinErr != nil {
		t.Skipf("the pin was refused (%v): staff were told, nothing to show", pinErr)
	}
	if _, err := s.Snapshot(u.ID, victim.ID); err != nil {
		t.Fatalf("staff pinned %s (SetPin succeeded) while retention ran, and retention deleted it anyway (deleted %d): %v", victim.ID, rep.Deleted, err)
	}
	checkClean(t, s)
}

// TestLifeAttackPinDuringQuotaEvictionIsHonoured: the same race with the
// soft quota, which also computes what to delete before deleting it.
func TestLifeAttackPinDuringQuotaEvictionIsHonoured(t *testing.T) {
	ctx := context.Background()
	hb := &hookBox{}
	s, _, u, _, made := fiveDays(t, hb)
	victim := made[2]
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Quota = &store.Quota{Soft: 80 << 10}; return nil }); err != nil {
		t.Fatal(err)
	}
	var pinErr error
	var once sync.Once
	hb.set(func(point string) {
		if point != "delete:after-file-remove" {
			return
		}
		once.Do(func() {
			_, pinErr = s.SetPin(ctx, u.ID, victim.ID, true, "parents' evening")
		})
	})
	rep, err := s.EnforceQuota(ctx, store.QuotaOptions{})
	hb.set(nil)
	if err != nil {
		t.Fatal(err)
	}
	if pinErr != nil {
		t.Skipf("the pin was refused (%v)", pinErr)
	}
	if _, err := s.Snapshot(u.ID, victim.ID); err != nil {
		t.Fatalf("staff pinned %s (SetPin succeeded) while the soft quota ran, and it was deleted anyway (%+v): %v", victim.ID, rep.Users, err)
	}
	checkClean(t, s)
}

// TestLifeAttackPinOfSnapshotBeingDeletedDoesNotResurrect: staff pin a
// snapshot at the moment it is being deleted (by `xs-admin` delete, by
// retention or by the quota). The pin rewrites the snapshot file that the
// deletion has just removed, and reports success; the deletion goes on and
// releases the snapshot's blobs, which GC then sweeps. The snapshot is not
// listed any more, although staff were told it is pinned; after the next
// restart the rewritten file brings it back, pinned, with its data gone.
func TestLifeAttackPinOfSnapshotBeingDeletedDoesNotResurrect(t *testing.T) {
	ctx := context.Background()
	hb := &hookBox{}
	s, dir, u, clk, made := fiveDays(t, hb)
	victim := made[1]
	var pinErr error
	var once sync.Once
	hb.set(func(point string) {
		if point != "delete:after-file-remove" {
			return
		}
		once.Do(func() {
			_, pinErr = s.SetPin(ctx, u.ID, victim.ID, true, "science fair")
		})
	})
	if err := s.DeleteSnapshot(ctx, u.ID, victim.ID); err != nil {
		t.Fatal(err)
	}
	hb.set(nil)
	_, listErr := s.Snapshot(u.ID, victim.ID)
	if pinErr == nil && listErr != nil {
		t.Errorf("SetPin of %s succeeded during its deletion, but the snapshot is gone from the list", victim.ID)
	}
	if _, err := s.GC(ctx, store.GCOptions{CompactBelow: 1}); err != nil {
		t.Fatal(err)
	}
	before := ids(s.Snapshots(u.ID))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, store.Options{Now: clk.Now})
	after := ids(s2.Snapshots(u.ID))
	if len(after) != len(before) {
		t.Errorf("after a restart the store lists %d snapshots, before it %d: %v vs %v", len(after), len(before), after, before)
	}
	rep, err := s2.Check(ctx, store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("check after restart: %+v", p)
	}
	if sn, err := s2.Snapshot(u.ID, victim.ID); err == nil {
		out := t.TempDir()
		res, err := s2.Restore(ctx, sn, out, store.RestoreOptions{})
		if err != nil {
			t.Fatalf("the snapshot %s came back after the restart (pinned=%v) and does not restore: %v", victim.ID, sn.Pinned, err)
		}
		t.Logf("restore of the resurrected snapshot: %+v", res)
	}
}
