package server_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// simClock is the accelerated clock of the soak: a night passes in a
// moment.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// treeDigest hashes every file a backup keeps, by relative path.
func treeDigest(t testing.TB, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if backup.JournalExclude(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = blake3.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDigest(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSoak runs a school for many nights on an accelerated clock: every
// laptop's Journal changes each day, every laptop backs up (a few are cut
// off half way and finish later, as when a child closes the lid), and the
// lifecycle (retention with the default policy, pending expiry, GC with
// compaction) runs every night as xs-backupd's timer would. At the end the
// store checks clean with every byte read, every snapshot the policy keeps
// is there, and every snapshot still there restores to exactly the Journal
// it was taken of.
//
// By default it is short (a dozen laptops, 40 nights); make soak sets
// XS_SOAK to a duration and runs hundreds of laptops for that long.
func TestSoak(t *testing.T) {
	laptops, minNights, budget := 6, 36, time.Duration(0)
	if v := os.Getenv("XS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("XS_SOAK=%q: want a duration such as 10m", v)
		}
		laptops, minNights, budget = 200, 35, d
	}
	if testing.Short() && budget == 0 {
		t.Skip("soak skipped in -short mode")
	}
	clock := &simClock{t: time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)}
	d := startDaemon(t, func(c *server.Config) {
		c.Now = clock.Now
		c.Admission.MaxSessions = 16
		c.Lifecycle.At = "" // the test plays the timer, on its own clock
		c.Lifecycle.CompactBelow = 0.5
	})
	ctx := context.Background()
	type lap struct {
		*laptop
		seed  uint64
		taken map[string]map[string][32]byte // snapshot -> digest
		times map[string]time.Time
	}
	laps := make([]*lap, laptops)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range laps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			seed := uint64(1000 + i)
			laps[i] = &lap{laptop: newLaptop(t, d, fmt.Sprintf("SOAK%03d", i), seed),
				seed: seed, taken: map[string]map[string][32]byte{}, times: map[string]time.Time{}}
		}()
	}
	wg.Wait()
	rng := rand.New(rand.NewPCG(5, 5))
	var (
		backups, interrupted  atomic.Int64
		deleted, gcBlobs      int
		reclaimed             int64
		expired, packsRewrote int
	)
	start := time.Now()
	night := 0
	for ; night < minNights || (budget > 0 && time.Since(start) < budget); night++ {
		day := clock.Now().Truncate(24*time.Hour).AddDate(0, 0, 1)
		clock.set(day.Add(10 * time.Hour))
		cut := map[int]bool{}
		for range max(1, laptops/12) {
			cut[rng.IntN(laptops)] = true
		}
		for i, l := range laps {
			if err := journalgen.Mutate(l.src, l.seed, night+1); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			sem <- struct{}{}
			away := i == 0 && night >= 3 && night < 9 // cut off, then away for days
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if away {
					if night == 3 {
						// A long recording, half sent when the lid closes.
						rec := journalgen.Entry{UID: "0123abcd-0000-4000-8000-00000000soak", Title: "Recording", Activity: "org.laptop.RecordActivity",
							Mime: "audio/ogg", Data: journalgen.Random(rand.New(rand.NewPCG(3, 3)), 8<<20)}
						if err := journalgen.WriteEntry(l.src, rec, clock.Now()); err != nil {
							t.Error(err)
							return
						}
						cctx, cancel := context.WithCancel(ctx)
						agent.Run(cctx, l.st, agent.RunOptions{Source: l.src, Force: true, Now: clock.Now,
							Progress: func(p backup.Progress) {
								if p.BytesRead > 5<<20 {
									cancel()
								}
							}})
						cancel()
						interrupted.Add(1)
					}
					return
				}
				if cut[i] {
					// The lid closes a moment into the backup.
					cctx, cancel := context.WithTimeout(ctx, time.Duration(2+i%20)*time.Millisecond)
					agent.Run(cctx, l.st, agent.RunOptions{Source: l.src, Force: true, Now: clock.Now})
					cancel()
					interrupted.Add(1)
				}
				res, err := agent.Run(ctx, l.st, agent.RunOptions{Source: l.src, Force: true, Now: clock.Now, MaxSlotWait: time.Minute})
				if err != nil || res.Outcome != agent.Done {
					t.Errorf("night %d, %s: %v %+v", night, l.serial, err, res)
					return
				}
				id := res.Backup.Snapshot
				l.taken[id] = treeDigest(t, l.src)
				l.times[id] = clock.Now()
				backups.Add(1)
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		// The night: the daemon's lifecycle at 02:30.
		clock.set(day.AddDate(0, 0, 1).Add(2*time.Hour + 30*time.Minute))
		rep, err := d.RunLifecycle(ctx, store.LifecycleOptions{})
		if err != nil {
			t.Fatalf("night %d: lifecycle: %v", night, err)
		}
		deleted += rep.Retention.Deleted
		expired += int(rep.Expired.Holds)
		gcBlobs += int(rep.GC.BlobsDeleted)
		reclaimed += rep.GC.BytesReclaimed
		packsRewrote += rep.GC.PacksRewritten
		if night%10 == 9 {
			if cr, err := d.Store.Check(ctx, store.CheckOptions{}); err != nil || len(cr.Problems) > 0 {
				t.Fatalf("night %d: check: %v %+v", night, err, cr)
			}
		}
	}
	if expired == 0 {
		t.Error("no abandoned upload expired: the laptop cut off and away for days left none, or expiry does not run")
	}
	cr, err := d.Store.Check(ctx, store.CheckOptions{ReadData: true})
	if err != nil || len(cr.Problems) > 0 {
		t.Fatalf("final check --read-data: %v %+v", err, cr)
	}
	// Every snapshot the default policy keeps is there; every snapshot
	// there restores to the Journal it was taken of.
	policy := store.DefaultPolicy()
	restored, kept := 0, 0
	for _, l := range laps {
		u, err := d.Store.UserBySerial(l.serial)
		if err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for _, sn := range d.Store.Snapshots(u.ID) {
			present[string(sn.ID)] = true
			if l.taken[string(sn.ID)] == nil {
				t.Fatalf("%s: snapshot %s was never acknowledged", l.serial, sn.ID)
			}
		}
		var all []*store.Snapshot
		for id, tm := range l.times {
			all = append(all, &store.Snapshot{ID: store.SnapshotID(id), Time: tm})
		}
		for _, v := range policy.Apply(all, clock.Now()) {
			if v.Keep && !present[string(v.ID)] {
				t.Fatalf("%s: snapshot %s (%s) should be kept (%v) but is gone: data lost", l.serial, v.ID, v.Time, v.Reasons)
			}
		}
		kept += len(present)
		// All of them in the short run; the newest and a sample otherwise.
		ids := make([]string, 0, len(present))
		for id := range present {
			ids = append(ids, id)
		}
		if budget > 0 && len(ids) > 3 {
			rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
			ids = ids[:3]
		}
		for _, id := range ids {
			out := t.TempDir()
			if _, _, err := agent.Restore(ctx, l.st, agent.RestoreOptions{Snapshot: id, Target: out}); err != nil {
				t.Fatalf("%s: restore %s: %v", l.serial, id, err)
			}
			if !sameDigest(treeDigest(t, out), l.taken[id]) {
				t.Fatalf("%s: snapshot %s does not restore to the Journal it was taken of", l.serial, id)
			}
			restored++
		}
	}
	t.Logf("soak: %d laptops, %d nights (%s of simulated time) in %s: %d backups (%d cut off half way and resumed), "+
		"retention deleted %d snapshots, %d kept; %d abandoned uploads expired; GC removed %d blobs, rewrote %d packs, gave back %d bytes; "+
		"check --read-data clean (%d chunks, %d bytes read); %d snapshots restored and verified; data lost: 0",
		laptops, night, clock.Now().Sub(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)).Round(time.Hour), time.Since(start).Round(time.Second),
		backups.Load(), interrupted.Load(), deleted, kept, expired, gcBlobs, packsRewrote, reclaimed, cr.Chunks, cr.BytesRead, restored)
}
