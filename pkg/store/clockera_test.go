package store_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// ceUpload puts n fresh chunks for u (a session cut off before its commit).
func ceUpload(t *testing.T, s *store.Store, u store.UserID, seed uint64, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	for i := 0; i < n; i++ {
		if _, err := putChunk(s, u, journalgen.Random(r, 32<<10)); err != nil {
			t.Fatal(err)
		}
	}
}

func ceExpire(t *testing.T, s *store.Store, dry bool) *store.ExpireReport {
	t.Helper()
	rep, err := s.ExpirePending(context.Background(), time.Time{}, dry)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestClockEraUploadsKeptFromTheCorrection: uploads made while the server's
// clock read 2000 (a dead clock battery) are kept PendingExpiry from the
// night the clock is right again, then released like any abandoned upload;
// the server restarted in between (the power cut), so what it knows of the
// time comes from the snapshots on disk.
func TestClockEraUploadsKeptFromTheCorrection(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	opts := store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour}
	s, err := store.Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	u := addUser(t, s, "SHCERA1")
	replaceFile(t, s, u, t.TempDir(), 1, 20<<10)
	real := clk.Now().Add(24 * time.Hour)
	s.Close()

	clk.set(time.Date(2000, 1, 1, 9, 0, 0, 0, time.UTC)) // the power cut
	s = openStore(t, dir, opts)
	ceUpload(t, s, u.ID, 7, 4)
	// The night's lifecycle on the wrong clock: nothing is old on it.
	if rep := ceExpire(t, s, false); rep.Holds != 0 || rep.Restamped != 0 {
		t.Fatalf("on the clock the uploads were stamped by, nothing is old yet: %+v", rep)
	}

	clk.set(real.Add(time.Hour)) // NTP sets the clock right
	if rep := ceExpire(t, s, true); rep.Holds != 0 || rep.Restamped != 4 {
		t.Fatalf("dry run: want 4 uploads to be stamped again and none released, got %+v", rep)
	}
	if rep := ceExpire(t, s, false); rep.Holds != 0 || rep.Restamped != 4 {
		t.Fatalf("after the correction: want 4 uploads stamped again and none released, got %+v", rep)
	}
	clk.Add(71 * time.Hour)
	if rep := ceExpire(t, s, false); rep.Holds != 0 || rep.Restamped != 0 {
		t.Fatalf("71 hours after the correction the uploads are kept: %+v", rep)
	}
	clk.Add(2 * time.Hour)
	if rep := ceExpire(t, s, false); rep.Holds != 4 {
		t.Fatalf("73 hours after the correction the abandoned uploads go: %+v", rep)
	}
}

// TestClockEraBehindClockExpiresByItsOwnStamps: a clock that stays behind
// (nobody corrects it) still releases abandoned uploads: on its own clock
// they grow old, and the notes of its stamps are then forgotten.
func TestClockEraBehindClockExpiresByItsOwnStamps(t *testing.T) {
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour})
	u := addUser(t, s, "SHCERA2")
	replaceFile(t, s, u, t.TempDir(), 2, 20<<10)
	clk.set(time.Date(2000, 1, 1, 9, 0, 0, 0, time.UTC))
	ceUpload(t, s, u.ID, 8, 3)
	clk.Add(73 * time.Hour) // still 2000
	if rep := ceExpire(t, s, false); rep.Holds != 3 || rep.Restamped != 0 {
		t.Fatalf("three days on the same (wrong) clock: want the 3 abandoned uploads released, got %+v", rep)
	}
	ceUpload(t, s, u.ID, 9, 2) // a new session on the wrong clock
	clk.set(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if rep := ceExpire(t, s, false); rep.Holds != 0 || rep.Restamped != 2 {
		t.Fatalf("after the correction only the 2 uploads not yet released are stamped again: %+v", rep)
	}
}

// TestClockEraAheadClockUploadsExpireAfterCorrection: a clock that jumped ten
// years ahead stamped a cut-off session's uploads in 2036; once it is set
// right they are not kept until 2036, but PendingExpiry from the correction.
func TestClockEraAheadClockUploadsExpireAfterCorrection(t *testing.T) {
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour})
	u := addUser(t, s, "SHCERA3")
	right := clk.Now()
	clk.set(right.AddDate(10, 0, 0))
	replaceFile(t, s, u, t.TempDir(), 3, 20<<10) // a snapshot committed in "2036"
	ceUpload(t, s, u.ID, 10, 3)
	clk.set(right.Add(time.Hour))
	if rep := ceExpire(t, s, false); rep.Holds != 0 || rep.Restamped != 3 {
		t.Fatalf("after the correction: want 3 uploads stamped again, got %+v", rep)
	}
	// Uploads now read behind the newest time known (the 2036 snapshot):
	// on this clock they still expire.
	ceUpload(t, s, u.ID, 11, 2)
	clk.Add(73 * time.Hour)
	if rep := ceExpire(t, s, false); rep.Holds != 5 {
		t.Fatalf("73 hours later every abandoned upload goes: %+v", rep)
	}
}

// TestClockEraCommittedUploadsUntouched: uploads of the wrong clock that a
// snapshot then used are not pending any more: the correction changes
// nothing of them, and the snapshot restores.
func TestClockEraCommittedUploadsUntouched(t *testing.T) {
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour})
	u := addUser(t, s, "SHCERA4")
	replaceFile(t, s, u, t.TempDir(), 4, 20<<10)
	real := clk.Now()
	clk.set(time.Date(2000, 1, 1, 9, 0, 0, 0, time.UTC))
	src := t.TempDir()
	replaceFile(t, s, u, src, 5, 200<<10)
	clk.set(real.Add(2 * time.Hour))
	if rep := ceExpire(t, s, false); rep.Holds != 0 || rep.Restamped != 0 {
		t.Fatalf("nothing is pending: %+v", rep)
	}
	clk.Add(100 * time.Hour)
	if rep := ceExpire(t, s, false); rep.Holds != 0 {
		t.Fatalf("committed uploads are never released as abandoned: %+v", rep)
	}
	if rep, err := s.Check(context.Background(), store.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after the clock's return: %v %+v", err, rep)
	}
}
