package store_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// A school server without NTP whose CMOS battery is flat starts at
// 2000-01-01 after every power cut, until someone corrects the clock (often
// weeks later). Snapshots committed meanwhile carry the server's clock, so
// they sort before every snapshot made before the cut, although they hold
// the student's newest work.

// clockResetStore makes a user with three snapshots on a correct clock (one
// a day from 2026-01-05), then resets the clock to 2000-01-01 (as after a
// power cut) and commits two more snapshots a day apart, each holding new
// work. It returns the five snapshots in commit order.
func clockResetStore(t *testing.T, opts store.Options) (*store.Store, *store.User, *clock, []*store.Snapshot) {
	t.Helper()
	clk := newClock()
	opts.Now = clk.Now
	s := openStore(t, t.TempDir(), opts)
	u := addUser(t, s, "SHCRESET")
	src := t.TempDir()
	var made []*store.Snapshot
	for i := 0; i < 3; i++ {
		made = append(made, replaceFile(t, s, u, src, uint64(100+i), 100<<10))
		clk.Add(24 * time.Hour)
	}
	// Power cut: the clock comes back at 2000-01-01 10:00.
	clk.mu.Lock()
	clk.t = time.Date(2000, 1, 1, 10, 0, 0, 0, time.UTC)
	clk.mu.Unlock()
	for i := 0; i < 2; i++ {
		// Each day's work is a new document next to the photo.
		if err := os.WriteFile(filepath.Join(src, "essay-"+string(rune('a'+i))+".odt"), []byte("new work after the power cut "+string(rune('a'+i))), 0o644); err != nil {
			t.Fatal(err)
		}
		made = append(made, replaceFile(t, s, u, src, uint64(200+i), 100<<10))
		clk.Add(24 * time.Hour)
	}
	return s, u, clk, made
}

// TestLifeAttackClockSetBackLatestIsTheNewestCommit: after the clock was set
// back, "latest" (what `xo-backup restore` and `xs-admin restore` use by
// default, and what retention and the soft quota never delete) is a snapshot
// from before the power cut, not the backup the laptop made a moment ago.
// A student whose laptop dies then gets days-old work back.
func TestLifeAttackClockSetBackLatestIsTheNewestCommit(t *testing.T) {
	s, u, _, made := clockResetStore(t, store.Options{})
	newest := made[len(made)-1]
	latest, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	if latest.ID != newest.ID {
		t.Fatalf("\"latest\" is %s (%s), but the last backup committed is %s (%s): a restore of the latest snapshot brings back work from before the power cut",
			latest.ID, latest.Time, newest.ID, newest.Time)
	}
	list := s.Snapshots(u.ID)
	if list[len(list)-1].ID != newest.ID {
		t.Fatalf("the snapshot list (oldest first, what a laptop's restore takes the last of) ends with %s, not the newest backup %s", list[len(list)-1].ID, newest.ID)
	}
}

// TestLifeAttackClockSetBackSoftQuotaKeepsNewestBackup: the soft quota
// promises to delete the oldest unpinned snapshots and never the latest.
// With the server's clock set back, it deletes the backups made after the
// power cut first (they sort oldest) and keeps a snapshot from before it:
// the student's newest work is gone from the server.
func TestLifeAttackClockSetBackSoftQuotaKeepsNewestBackup(t *testing.T) {
	ctx := context.Background()
	s, u, _, made := clockResetStore(t, store.Options{})
	newest := made[len(made)-1]
	// A soft quota that forces about two snapshots out.
	us, err := s.Usage(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	soft := us.Bytes - 150<<10
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Quota = &store.Quota{Soft: soft}; return nil }); err != nil {
		t.Fatal(err)
	}
	rep, err := s.EnforceQuota(ctx, store.QuotaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Users) != 1 || len(rep.Users[0].Deleted) == 0 {
		t.Fatalf("quota deleted nothing: %+v", rep.Users)
	}
	if slices.Contains(rep.Users[0].Deleted, newest.ID) {
		t.Errorf("the soft quota deleted %s, the backup the laptop committed last (deleted, oldest first: %v)", newest.ID, rep.Users[0].Deleted)
	}
	if _, err := s.Snapshot(u.ID, newest.ID); err != nil {
		t.Fatalf("the newest backup %s is gone; the server keeps %v", newest.ID, ids(s.Snapshots(u.ID)))
	}
}

// TestLifeAttackClockSetBackKeepLastKeepsNewestBackup: with a per-laptop
// policy of keep_last 3, retention running the night after the power cut
// (the clock still wrong) deletes the backup made that day: every backup
// made while the clock is wrong is deleted the next night.
func TestLifeAttackClockSetBackKeepLastKeepsNewestBackup(t *testing.T) {
	ctx := context.Background()
	s, u, _, made := clockResetStore(t, store.Options{})
	newest := made[len(made)-1]
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Retention = &store.Policy{KeepLast: 3}; return nil }); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Retention(ctx, store.RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	left := ids(s.Snapshots(u.ID))
	if !slices.Contains(left, newest.ID) {
		t.Fatalf("retention (keep_last 3, deleted %d) removed %s, the backup committed last; kept %v (all from before the power cut)", rep.Deleted, newest.ID, left)
	}
}

func ids(list []*store.Snapshot) []store.SnapshotID {
	var out []store.SnapshotID
	for _, sn := range list {
		out = append(out, sn.ID)
	}
	return out
}

// TestLifeAttackClockJumpedForwardLatestStuck: staff set the server's clock
// by hand and type 2027 for 2026; it is corrected the next day. The one
// backup made meanwhile stays "latest" for a whole year: every later
// backup sorts before it, so a laptop's `restore` (the last snapshot of the
// list) brings back that day's Journal, not last week's.
func TestLifeAttackClockJumpedForwardLatestStuck(t *testing.T) {
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now})
	u := addUser(t, s, "SHCJUMP")
	src := t.TempDir()
	replaceFile(t, s, u, src, 1, 50<<10)
	clk.Add(365 * 24 * time.Hour) // the typo
	replaceFile(t, s, u, src, 2, 50<<10)
	clk.Add(-365 * 24 * time.Hour) // corrected
	var newest *store.Snapshot
	for d := 0; d < 10; d++ {
		clk.Add(24 * time.Hour)
		newest = replaceFile(t, s, u, src, uint64(10+d), 50<<10)
	}
	latest, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	if latest.ID != newest.ID {
		t.Fatalf("ten days after the clock was corrected, \"latest\" is still %s (made while the clock was a year ahead), not %s, the backup committed last", latest.ID, newest.ID)
	}
}
