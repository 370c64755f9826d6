package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)} }

// TestRetentionAndGCOnStore backs up a changing Journal daily for 70 days,
// applies the default retention 45 days after the last backup, and checks
// that the store keeps exactly what the model keeps, that GC gives the
// freed space back on disk, and that what is kept still restores.
func TestRetentionAndGCOnStore(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{Now: clk.Now, PackSize: 256 << 10})
	u := addUser(t, s, "RET1")
	src := filepath.Join(t.TempDir(), "src")
	if err := roundSource(src, 0); err != nil {
		t.Fatal(err)
	}
	cache := backup.NewCache()
	day := map[store.SnapshotID]int{}
	for d := 0; d < 70; d++ {
		if d > 0 {
			if err := journalgen.Mutate(src, 1, d); err != nil {
				t.Fatal(err)
			}
		}
		_, sn := backupDir(t, s, u, src, cache)
		day[sn.ID] = d
		clk.Add(24 * time.Hour)
	}
	snaps := s.Snapshots(u.ID)
	pin := snaps[3] // day 3: retention would delete it
	if _, err := s.SetPin(ctx, u.ID, pin.ID, true, "first TurtleArt project"); err != nil {
		t.Fatal(err)
	}
	snaps = s.Snapshots(u.ID)
	at := clk.Now().AddDate(0, 0, 45)
	want := modelKeep(store.DefaultPolicy(), snaps, at)
	dry, err := s.Retention(ctx, store.RetentionOptions{Now: at, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Snapshots(u.ID)) != 70 {
		t.Fatal("a dry run deleted snapshots")
	}
	if dry.Kept != len(want) || dry.Deleted != 70-len(want) {
		t.Fatalf("dry run keeps %d deletes %d, model keeps %d", dry.Kept, dry.Deleted, len(want))
	}
	before := dirSize(t, filepath.Join(dir, "packs"))
	rep, err := s.Retention(ctx, store.RetentionOptions{Now: at})
	if err != nil {
		t.Fatal(err)
	}
	var left []store.SnapshotID
	for _, sn := range s.Snapshots(u.ID) {
		left = append(left, sn.ID)
		if !want[sn.ID] {
			t.Errorf("kept %s (day %d), the model deletes it", sn.ID, day[sn.ID])
		}
	}
	if len(left) != len(want) || rep.Deleted != 70-len(want) {
		t.Fatalf("%d snapshots left, model keeps %d", len(left), len(want))
	}
	if !slices.Contains(left, pin.ID) || !slices.Contains(left, snaps[69].ID) {
		t.Fatal("the pinned or the latest snapshot was deleted")
	}
	checkClean(t, s)

	gc, err := s.GC(ctx, store.GCOptions{CompactBelow: 1})
	if err != nil {
		t.Fatal(err)
	}
	after := dirSize(t, filepath.Join(dir, "packs"))
	t.Logf("retention deleted %d of 70; gc: %+v; packs %d -> %d bytes", rep.Deleted, gc, before, after)
	if gc.BlobsDeleted == 0 || gc.PacksRemoved == 0 || gc.BytesReclaimed <= 0 {
		t.Fatalf("gc freed nothing: %+v", gc)
	}
	// The packs shrank by what GC says it reclaimed (give or take the
	// 16-byte headers of packs it started).
	if d := (before - after) - gc.BytesReclaimed; d < -16*int64(gc.PacksRewritten+1) || d > 0 {
		t.Fatalf("packs shrank by %d bytes, gc reports %d reclaimed", before-after, gc.BytesReclaimed)
	}
	// A second run finds nothing more to delete (it may still compact the
	// pack that was being written during the first).
	again, err := s.GC(ctx, store.GCOptions{CompactBelow: 1})
	if err != nil || again.BlobsDeleted != 0 {
		t.Fatalf("second gc still found garbage: %+v %v", again, err)
	}
	checkClean(t, s)
	for _, id := range left {
		sn, _ := s.Snapshot(u.ID, id)
		want := filepath.Join(t.TempDir(), "want")
		if err := roundSource(want, day[id]); err != nil {
			t.Fatal(err)
		}
		restoreAndCompare(t, s, sn, want)
	}
}

// replaceFile backs up dir after giving photo.jpg new random content.
func replaceFile(t *testing.T, s *store.Store, u *store.User, dir string, seed uint64, size int) *store.Snapshot {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "photo.jpg"), journalgen.Random(rand.New(rand.NewPCG(seed, 1)), size), 0o644); err != nil {
		t.Fatal(err)
	}
	_, sn := backupDir(t, s, u, dir, nil)
	return sn
}

func TestSoftQuotaEvictsOldestUnpinnedNeverLatest(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now})
	u := addUser(t, s, "QUO1")
	src := t.TempDir()
	var ids []store.SnapshotID
	for i := 0; i < 8; i++ {
		ids = append(ids, replaceFile(t, s, u, src, uint64(i), 100<<10).ID)
		clk.Add(24 * time.Hour)
	}
	if _, err := s.SetPin(ctx, u.ID, ids[1], true, "keep for the parents' evening"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error {
		u.Quota = &store.Quota{Soft: 350 << 10}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dry, err := s.EnforceQuota(ctx, store.QuotaOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.EnforceQuota(ctx, store.QuotaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantGone := []store.SnapshotID{ids[0], ids[2], ids[3], ids[4], ids[5]}
	if len(rep.Users) != 1 || !slices.Equal(rep.Users[0].Deleted, wantGone) {
		t.Fatalf("evicted %+v, want the oldest unpinned %v", rep.Users, wantGone)
	}
	if !slices.Equal(dry.Users[0].Deleted, rep.Users[0].Deleted) || dry.Users[0].After != rep.Users[0].After {
		t.Fatalf("dry run predicted %+v, the real run did %+v", dry.Users[0], rep.Users[0])
	}
	us, _ := s.Usage(ctx, u.ID)
	if us.Bytes > 350<<10 || us.Bytes != rep.Users[0].After {
		t.Fatalf("usage after eviction %d (report %d), soft quota %d", us.Bytes, rep.Users[0].After, 350<<10)
	}
	// A soft quota nothing can satisfy: everything but the pinned and the
	// latest snapshot goes, and those stay.
	s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Quota = &store.Quota{Soft: 1}; return nil })
	rep, err = s.EnforceQuota(ctx, store.QuotaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Users[0].StillOver || !slices.Equal(rep.Users[0].Deleted, []store.SnapshotID{ids[6]}) {
		t.Fatalf("impossible quota: %+v", rep.Users[0])
	}
	var left []store.SnapshotID
	for _, sn := range s.Snapshots(u.ID) {
		left = append(left, sn.ID)
	}
	if !slices.Equal(left, []store.SnapshotID{ids[1], ids[7]}) {
		t.Fatalf("left %v, want the pinned %s and the latest %s", left, ids[1], ids[7])
	}
	checkClean(t, s)
}

func TestHardQuotaRefusesUploadAndCommit(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{})
	u := addUser(t, s, "HARD1")
	src := t.TempDir()
	replaceFile(t, s, u, src, 1, 100<<10)
	us, _ := s.Usage(ctx, u.ID)
	s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Quota = &store.Quota{Hard: us.Bytes + 50<<10}; return nil })
	os.WriteFile(filepath.Join(src, "video.ogg"), journalgen.Random(rand.New(rand.NewPCG(9, 9)), 400<<10), 0o644)
	tg := s.Target(u.ID, store.CommitInfo{})
	_, err := backup.Run(ctx, src, tg, backup.Options{Params: s.Params()})
	if !errors.Is(err, store.ErrOverQuota) {
		t.Fatalf("backup over the hard quota: %v", err)
	}
	if n := len(s.Snapshots(u.ID)); n != 1 {
		t.Fatalf("%d snapshots after a refused backup", n)
	}
	after, _ := s.Usage(ctx, u.ID)
	if after.Bytes > us.Bytes+50<<10 {
		t.Fatalf("usage %d crossed the hard quota %d", after.Bytes, us.Bytes+50<<10)
	}
	// A client that ignores the refusal and commits a manifest naming the
	// refused chunk is refused again: the chunk is not its to reference.
	big := journalgen.Random(rand.New(rand.NewPCG(3, 3)), 200<<10)
	if _, err := putChunk(s, u.ID, big); !errors.Is(err, store.ErrOverQuota) {
		t.Fatalf("upload over the hard quota: %v", err)
	}
	tr := &manifest.Tree{Entries: []manifest.Entry{{Name: "video.ogg", Type: manifest.File, Mode: 0o644, Size: int64(len(big)), Chunks: []chunk.ID{chunk.Sum(big)}}}}
	enc, _ := manifest.Encode(tr)
	root := chunk.Sum(enc)
	s.Put(ctx, u.ID, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)}})
	if _, err := s.Commit(ctx, u.ID, root, store.CommitInfo{}); !errors.Is(err, store.ErrNotOwned) {
		t.Fatalf("commit naming a refused chunk: %v", err)
	}
	checkClean(t, s)
}

func TestPendingUploadsExpireUnlessSessionOpen(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour})
	a, b := addUser(t, s, "EXPA"), addUser(t, s, "EXPB")
	// B has a snapshot with the shared chunk; A uploads it and two of its
	// own, then abandons the session.
	shared := journalgen.Random(rand.New(rand.NewPCG(5, 5)), 40<<10)
	bsrc := t.TempDir()
	os.WriteFile(filepath.Join(bsrc, "book.pdf"), shared, 0o644)
	backupDir(t, s, b, bsrc, nil)
	var refs []blob.Ref
	for i, data := range [][]byte{shared, []byte("draft one"), []byte("draft two")} {
		id, err := putChunk(s, a.ID, data)
		if err != nil {
			t.Fatal(i, err)
		}
		refs = append(refs, blob.Ref{Type: blob.Chunk, ID: id})
	}
	expire := func() *store.ExpireReport {
		t.Helper()
		r, err := s.ExpirePending(ctx, time.Time{}, false)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	clk.Add(24 * time.Hour)
	if r := expire(); r.Holds != 0 {
		t.Fatalf("a day-old upload expired: %+v", r)
	}
	clk.Add(72 * time.Hour)
	end := s.BeginSession(a.ID)
	if r := expire(); r.Holds != 0 || r.Busy != 1 {
		t.Fatalf("uploads expired during the user's session: %+v", r)
	}
	end()
	if r := expire(); r.Holds != 3 || r.Users != 1 {
		t.Fatalf("expiry after the session: %+v", r)
	}
	if us, _ := s.Usage(ctx, a.ID); us.Bytes != 0 || us.Blobs != 0 {
		t.Fatalf("A's usage after expiry: %+v", us)
	}
	gc, err := s.GC(ctx, store.GCOptions{})
	if err != nil || gc.BlobsDeleted != 2 {
		t.Fatalf("gc after expiry: %+v %v (want A's 2 own chunks, not B's book)", gc, err)
	}
	if _, err := s.Stat(ctx, refs[0]); err != nil {
		t.Fatalf("B's chunk was collected: %v", err)
	}
	need, _ := s.Need(ctx, a.ID, refs)
	if !need[0] || !need[1] || !need[2] {
		t.Fatalf("after expiry A must upload again: %v", need)
	}
	checkClean(t, s)
}

// TestConcurrentBackupsLifecycleAndGC runs backups of several laptops while
// the lifecycle deletes their old snapshots and GC compacts packs, then
// restores every snapshot left byte for byte and checks every count.
func TestConcurrentBackupsLifecycleAndGC(t *testing.T) {
	concurrentBackupsLifecycleAndGC(t, nil, 0)
}

// The same on an object store: uploads, commits, compaction and deletes
// of objects interleave.
func TestS3ConcurrentBackupsLifecycleAndGC(t *testing.T) {
	srv := s3test.Start(t)
	// A pause between a laptop's backups leaves the lifecycle (which
	// skips laptops in a session) windows to delete snapshots in.
	concurrentBackupsLifecycleAndGC(t, srv.Remote(t, "conc"), 30*time.Millisecond)
}

func concurrentBackupsLifecycleAndGC(t *testing.T, remote store.Remote, pause time.Duration) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{PackSize: 64 << 10, CompactBelow: 1, Remote: remote})
	const users, rounds = 4, 8
	var runs, deleted, rewritten int64
	lifecycleFailed := false
	keep := store.Policy{KeepLast: 2}
	type made struct {
		seed  uint64
		round int
	}
	var mu sync.Mutex
	source := map[store.SnapshotID]made{}
	var wg sync.WaitGroup
	errs := make(chan error, users+2)
	done := make(chan struct{})
	// waitRuns waits until n lifecycle runs have ended that began after
	// the call (n+1 ends cover a run in progress), or the lifecycle
	// stopped on an error, which the test reports.
	waitRuns := func(n int64) {
		mu.Lock()
		from := runs
		mu.Unlock()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			mu.Lock()
			now, failed := runs, lifecycleFailed
			mu.Unlock()
			if now >= from+n+1 || failed {
				return
			}
		}
	}
	for i := 0; i < users; i++ {
		u := addUser(t, s, fmt.Sprintf("CONC%d", i))
		s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Retention = &keep; return nil })
		seed := uint64(100 + i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := t.TempDir()
			if _, err := journalgen.Generate(src, journalgen.Small(seed)); err != nil {
				errs <- err
				return
			}
			cache := backup.NewCache()
			for r := 0; r < rounds; r++ {
				time.Sleep(pause)
				if r > 0 {
					if err := journalgen.Mutate(src, seed, r); err != nil {
						errs <- err
						return
					}
				}
				end := s.BeginSession(u.ID)
				tg := s.Target(u.ID, store.CommitInfo{})
				_, err := backup.Run(ctx, src, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude})
				end()
				if err != nil {
					errs <- fmt.Errorf("user %d round %d: %w", seed, r, err)
					return
				}
				mu.Lock()
				source[tg.Last().ID] = made{seed, r}
				mu.Unlock()
				if r == 3 {
					// Out of its session with four snapshots: two whole
					// lifecycle runs that begin after this point must see
					// it, so retention deletes and GC rewrites while the
					// other laptops go on, however slow the store is.
					waitRuns(2)
				}
			}
		}()
	}
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // the nightly lifecycle, as often as it can
		defer bg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			rep, err := s.Lifecycle(ctx, store.LifecycleOptions{})
			if err != nil {
				mu.Lock()
				lifecycleFailed = true
				mu.Unlock()
				errs <- fmt.Errorf("lifecycle: %w", err)
				return
			}
			mu.Lock()
			runs++
			deleted += int64(rep.Retention.Deleted)
			rewritten += int64(rep.GC.PacksRewritten)
			mu.Unlock()
		}
	}()
	go func() { // and GC on its own, like xs-admin gc by hand
		defer bg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			rep, err := s.GC(ctx, store.GCOptions{})
			if err != nil {
				errs <- fmt.Errorf("gc: %w", err)
				return
			}
			mu.Lock()
			rewritten += int64(rep.PacksRewritten)
			mu.Unlock()
		}
	}()
	wg.Wait()
	close(done)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("during the backups: %d lifecycle runs deleted %d snapshots; %d packs rewritten", runs, deleted, rewritten)
	if deleted == 0 || rewritten == 0 {
		t.Fatal("the lifecycle did no work while the backups ran: the test proves nothing")
	}
	if _, err := s.Lifecycle(ctx, store.LifecycleOptions{}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, s)
	restored := 0
	for _, u := range s.Users() {
		snaps := s.Snapshots(u.ID)
		if len(snaps) != keep.KeepLast {
			t.Errorf("%s has %d snapshots, keep-last 2 keeps 2", u.Serial, len(snaps))
		}
		for _, sn := range snaps {
			m := source[sn.ID]
			want := t.TempDir()
			if _, err := journalgen.Generate(want, journalgen.Small(m.seed)); err != nil {
				t.Fatal(err)
			}
			for r := 1; r <= m.round; r++ {
				journalgen.Mutate(want, m.seed, r)
			}
			restoreAndCompare(t, s, sn, want)
			restored++
		}
	}
	t.Logf("%d snapshots restored after %d concurrent backups", restored, users*rounds)
}
