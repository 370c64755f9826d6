package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// raWaitOrDie waits for wg, failing (and dumping every goroutine) after d.
func raWaitOrDie(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 8<<20)
		n := runtime.Stack(buf, true)
		fmt.Fprintf(os.Stderr, "%s\n", buf[:n])
		panic(fmt.Sprintf("DEADLOCK: %s did not finish within %s (goroutines above)", what, d))
	}
}

// raRefsAt lists the blobs the index places in pack seq (the blobs a
// deletion or truncation of it can destroy).
func raRefsAt(s *Store, seq uint64, from int64) []blob.Ref {
	var out []blob.Ref
	s.eachObj(func(r blob.Ref, o objRec, derr error) error {
		if derr == nil && o.Pack == seq && o.Off+pack.RecordHeaderLen+int64(o.Stored) > from {
			out = append(out, r)
		}
		return nil
	})
	return out
}

// raOldPacks lists the pack files on disk but the newest three (the one
// being written, the one compaction may be writing, and one more for a
// rotation between the listing and the damage).
func raOldPacks(t *testing.T, dir string) []uint64 {
	seqs, err := pack.List(DirFS(dir))
	if err != nil {
		t.Error(err)
		return nil
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	if len(seqs) <= 3 {
		return nil
	}
	return seqs[:len(seqs)-3]
}

// Laptops back up changing Journals while check --read-data, the scrub
// (All), GC with compaction, the lifecycle and deletions run in loops, and
// damage is injected mid-way (a tree's record flipped, an old pack deleted
// or cut short). Then everything stops and the staff's routine runs (check,
// the laptops' next backups, a lifecycle). Promised: no deadlock; every
// acknowledged snapshot not deleted is still there and restores whole but
// for files whose own chunks were damaged and that no laptop still has (no
// directory is lost: trees come back from their copies); check is clean
// but for exactly those.
func TestRaceAttackEverythingAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	it := newIT(t)
	it.opts.PackSize = 32 << 10
	s := it.s
	const laptops = 3
	runFor := 7 * time.Second
	keepAll := Policy{KeepLast: 10000}

	type laptop struct {
		u     UserID
		seed  uint64
		src   string
		cache *backup.Cache
	}
	var lts []*laptop
	for i := 0; i < laptops; i++ {
		l := &laptop{u: it.user(fmt.Sprintf("RA-%d", i)), seed: uint64(700 + i), src: t.TempDir(), cache: backup.NewCache()}
		if _, err := s.UpdateUser(ctx, l.u, func(u *User) error { u.Retention = &keepAll; return nil }); err != nil {
			t.Fatal(err)
		}
		o := journalgen.Small(l.seed)
		o.Entries = 6
		if _, err := journalgen.Generate(l.src, o); err != nil {
			t.Fatal(err)
		}
		lts = append(lts, l)
	}
	var mu sync.Mutex
	acked := map[SnapshotID]UserID{}
	deleted := map[SnapshotID]bool{}
	candidates := map[blob.Ref]string{} // blobs the damage may have destroyed
	var errs []string
	fail := func(format string, a ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	// Seed: one backup each before the storm, so there is something to damage.
	for _, l := range lts {
		sn := it.backup(l.u, l.src, l.cache)
		acked[sn.ID] = l.u
	}

	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var wg sync.WaitGroup
	var nBackups, nChecks, nScrubs, nGCs, nLife, nDel, nDamage atomic.Int64
	for _, l := range lts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for day := 1; !stopped(); day++ {
				if err := journalgen.Mutate(l.src, l.seed, day); err != nil {
					fail("mutate: %v", err)
					return
				}
				end := s.BeginSession(l.u)
				tg := s.Target(l.u, CommitInfo{})
				_, err := backup.Run(ctx, l.src, tg, backup.Options{Params: s.Params(), Cache: l.cache, Exclude: backup.JournalExclude})
				end()
				if errors.Is(err, ErrCorrupt) && strings.Contains(err.Error(), "the next backup sends it again") && !strings.Contains(err.Error(), "tree:") {
					// A chunk damaged between the laptop's question and its
					// commit: refused, as documented; the laptop's next
					// backup (the staff routine below) sends it again.
					continue
				}
				if err != nil {
					fail("backup of %s, day %d: %v", l.u, day, err)
					return
				}
				mu.Lock()
				acked[tg.Last().ID] = l.u
				mu.Unlock()
				nBackups.Add(1)
			}
		}()
	}
	loop := func(name string, n *atomic.Int64, pause time.Duration, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped() {
				if err := fn(); err != nil {
					fail("%s: %v", name, err)
				}
				n.Add(1)
				time.Sleep(pause)
			}
		}()
	}
	loop("check --read-data", &nChecks, 50*time.Millisecond, func() error {
		rep, err := s.Check(ctx, CheckOptions{ReadData: true})
		if err == nil {
			for _, p := range rep.Problems {
				if p.Kind == "count" || p.Kind == "missing" || p.Kind == "metadata" {
					return fmt.Errorf("index problem during the storm: %+v", p)
				}
			}
		}
		return err
	})
	loop("scrub --all", &nScrubs, 50*time.Millisecond, func() error {
		_, err := s.Scrub(ctx, ScrubOptions{All: true})
		return err
	})
	loop("gc compact", &nGCs, 30*time.Millisecond, func() error {
		_, err := s.GC(ctx, GCOptions{CompactBelow: 1})
		return err
	})
	loop("lifecycle", &nLife, 100*time.Millisecond, func() error {
		_, err := s.Lifecycle(ctx, LifecycleOptions{})
		return err
	})
	loop("delete", &nDel, 300*time.Millisecond, func() error {
		l := lts[rand.IntN(len(lts))]
		sns := s.Snapshots(l.u)
		if len(sns) < 4 {
			return nil
		}
		id := sns[1].ID // keep the first (damage target), delete a middle one
		mu.Lock()
		deleted[id] = true
		mu.Unlock()
		err := s.DeleteSnapshot(ctx, l.u, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	// Damage, mid-way.
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(runFor / 4)
		for i := 0; i < 6 && !stopped(); i++ {
			time.Sleep(runFor / 10)
			old := raOldPacks(t, it.dir)
			if len(old) == 0 {
				continue
			}
			switch i % 3 {
			case 0: // flip a tree's record in an old pack
				var trees []blob.Ref
				oldSet := map[uint64]bool{}
				for _, q := range old {
					oldSet[q] = true
				}
				s.eachObj(func(r blob.Ref, o objRec, derr error) error {
					if derr == nil && r.Type == blob.Tree && !o.lost() && oldSet[o.Pack] && o.Stored > 8 {
						trees = append(trees, r)
					}
					return nil
				})
				if len(trees) == 0 {
					continue
				}
				r := trees[rand.IntN(len(trees))]
				o := it.obj(r)
				f, err := os.OpenFile(filepath.Join(it.dir, pack.Name(o.Pack)), os.O_RDWR, 0)
				if err != nil {
					continue // compacted away meanwhile
				}
				b := make([]byte, 8)
				at := o.Off + pack.RecordHeaderLen + int64(o.Stored)/2
				f.ReadAt(b, at)
				for k := range b {
					b[k] ^= 0xa5
				}
				f.WriteAt(b, at)
				f.Close()
				mu.Lock()
				candidates[r] = "flipped tree"
				mu.Unlock()
			case 1: // delete an old pack
				seq := old[rand.IntN(len(old))]
				refs := raRefsAt(s, seq, 0)
				mu.Lock()
				for _, r := range refs {
					candidates[r] = fmt.Sprintf("pack %x deleted", seq)
				}
				mu.Unlock()
				os.Remove(filepath.Join(it.dir, pack.Name(seq)))
			case 2: // cut an old pack short
				seq := old[rand.IntN(len(old))]
				fi, err := os.Stat(filepath.Join(it.dir, pack.Name(seq)))
				if err != nil {
					continue
				}
				half := fi.Size() / 2
				refs := raRefsAt(s, seq, half)
				mu.Lock()
				for _, r := range refs {
					candidates[r] = fmt.Sprintf("pack %x truncated at %d", seq, half)
				}
				mu.Unlock()
				os.Truncate(filepath.Join(it.dir, pack.Name(seq)), half)
			}
			nDamage.Add(1)
		}
	}()
	time.Sleep(runFor)
	close(stop)
	raWaitOrDie(t, &wg, 60*time.Second, "the storm")
	t.Logf("storm: %d backups, %d checks, %d scrubs, %d GCs, %d lifecycles, %d delete rounds, %d damages, %d candidate blobs",
		nBackups.Load(), nChecks.Load(), nScrubs.Load(), nGCs.Load(), nLife.Load(), nDel.Load(), nDamage.Load(), len(candidates))
	for _, e := range errs {
		t.Errorf("during the storm: %s", e)
	}

	// Staff's routine, with a deadline.
	var after sync.WaitGroup
	after.Add(1)
	var finalRep *CheckReport
	go func() {
		defer after.Done()
		if _, err := s.Check(ctx, CheckOptions{ReadData: true}); err != nil {
			t.Errorf("check after the storm: %v", err)
		}
		for _, l := range lts {
			sn := it.backup(l.u, l.src, l.cache)
			acked[sn.ID] = l.u
		}
		if _, err := s.Lifecycle(ctx, LifecycleOptions{}); err != nil {
			t.Errorf("lifecycle after the storm: %v", err)
		}
		rep, err := s.Check(ctx, CheckOptions{ReadData: true})
		if err != nil {
			t.Errorf("final check: %v", err)
		}
		finalRep = rep
	}()
	raWaitOrDie(t, &after, 60*time.Second, "check, backups and lifecycle after the storm")
	if finalRep == nil {
		t.FailNow()
	}

	// What no laptop has any more: not in any laptop's newest snapshot.
	current := map[blob.Ref]bool{}
	for _, l := range lts {
		sns := s.Snapshots(l.u)
		for _, r := range it.refsOf(sns[len(sns)-1]) {
			current[r] = true
		}
	}
	lostOK := func(r blob.Ref) (bool, string) {
		st, err := s.Stat(ctx, r)
		if err != nil || !st.Damaged {
			return false, "not damaged"
		}
		if r.Type == blob.Tree {
			return false, "a damaged tree (its copy should have brought it back)"
		}
		if current[r] {
			return false, "a laptop still has it (its backup should have healed it)"
		}
		if _, ok := candidates[r]; !ok {
			return false, "never damaged by the test"
		}
		return true, ""
	}
	dmg, _ := s.Damaged(ctx)
	for _, d := range dmg {
		if d.Owners == 0 {
			continue
		}
		if ok, why := lostOK(d.Ref); !ok {
			t.Errorf("damaged blob %s (%s, owners %d): %s", d.Ref, d.Reason, d.Owners, why)
		}
	}
	for _, p := range finalRep.Problems {
		switch p.Kind {
		case "snapshot":
			// judged by the restores below
		case "damaged":
			var r blob.Ref
			found := false
			for _, d := range dmg {
				if d.Ref.String() == p.Ref {
					r, found = d.Ref, true
				}
			}
			if !found {
				t.Errorf("final check: %+v, not in Damaged()", p)
			} else if ok, why := lostOK(r); !ok {
				t.Errorf("final check: %+v: %s", p, why)
			}
		default:
			t.Errorf("final check is not clean: %+v", p)
		}
	}
	// Every acknowledged snapshot not deleted is there and restores whole,
	// but for files whose own chunks are lost for good.
	have := map[SnapshotID]*Snapshot{}
	for _, l := range lts {
		for _, sn := range s.Snapshots(l.u) {
			have[sn.ID] = sn
		}
	}
	restored, leftOut := 0, 0
	for id, u := range acked {
		if deleted[id] {
			continue
		}
		sn, ok := have[id]
		if !ok || sn.User != u {
			t.Errorf("acknowledged snapshot %s of %s is gone", id, u)
			continue
		}
		res, err := restore.Restore(ctx, s, sn.Root, t.TempDir(), restore.Options{})
		if err != nil && res == nil {
			t.Errorf("restore %s: %v", id, err)
			continue
		}
		restored++
		for _, df := range res.Damaged {
			leftOut++
			if df.Dir {
				t.Errorf("restore %s: directory %s left out (%s)", id, df.Path, df.Err)
				continue
			}
			e, err := s.Lookup(ctx, sn.Root, df.Path)
			if err != nil {
				t.Errorf("restore %s: %s left out, and lookup fails: %v", id, df.Path, err)
				continue
			}
			explained := false
			for _, c := range e.Chunks {
				if ok, _ := lostOK(blob.Ref{Type: blob.Chunk, ID: c}); ok {
					explained = true
				}
			}
			if !explained || e.Type != manifest.File {
				t.Errorf("restore %s: %s left out (%s), but none of its chunks is lost for good", id, df.Path, df.Err)
			}
		}
	}
	// Each laptop's newest snapshot is what it has now: whole.
	for _, l := range lts {
		sns := s.Snapshots(l.u)
		res, err := restore.Restore(ctx, s, sns[len(sns)-1].Root, t.TempDir(), restore.Options{})
		if err != nil {
			t.Errorf("newest snapshot of %s does not restore whole: %v (%v)", l.u, err, res)
		}
	}
	t.Logf("%d snapshots restored, %d files left out for good, %d blobs damaged, final check: %d problem(s), %d trees restored",
		restored, leftOut, len(dmg), len(finalRep.Problems), finalRep.TreesRestored)
}
