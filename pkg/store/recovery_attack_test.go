package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Attack 3 on the storage side: damage and sequences the damage campaign
// does not try, each followed by what staff would do (check, the command it
// advises, the nightly lifecycle, the laptops' next backups).

// a3 is a store of two laptops backed up over two nights, the Journal
// changed in between (an edit, a new entry, a deleted one): the first
// night's snapshots hold data the laptops no longer have.
type a3 struct {
	*itStore
	users  []UserID
	srcs   []string
	caches []*backup.Cache
}

func newA3(t *testing.T) *a3 {
	t.Helper()
	a := &a3{itStore: newIT(t)}
	for i, serial := range []string{"A3-A", "A3-B"} {
		a.users = append(a.users, a.user(serial))
		src := t.TempDir()
		o := journalgen.Small(uint64(31 + i))
		o.Entries = 6
		if _, err := journalgen.Generate(src, o); err != nil {
			t.Fatal(err)
		}
		a.srcs = append(a.srcs, src)
		a.caches = append(a.caches, backup.NewCache())
	}
	for night := 0; night < 2; night++ {
		for i, u := range a.users {
			if night > 0 {
				if err := journalgen.Mutate(a.srcs[i], uint64(31+i), night); err != nil {
					t.Fatal(err)
				}
			}
			a.backup(u, a.srcs[i], a.caches[i])
		}
	}
	return a
}

// refs lists every blob the store's snapshots use.
func (a *a3) refs() map[blob.Ref]bool {
	all := map[blob.Ref]bool{}
	for _, u := range a.users {
		for _, sn := range a.s.Snapshots(u) {
			for _, r := range a.refsOf(sn) {
				all[r] = true
			}
		}
	}
	return all
}

// unreadableOf lists the blobs of set that do not read back intact.
func (a *a3) unreadableOf(set map[blob.Ref]bool) []blob.Ref {
	var list []blob.Ref
	for r := range set {
		list = append(list, r)
	}
	return a.unreadable(list)
}

func (a *a3) close() {
	if a.s != nil {
		a.s.Close()
		a.s = nil
	}
}

// repair is check --repair with the daemon stopped.
func (a *a3) repair(t *testing.T) *RepairReport {
	t.Helper()
	a.close()
	rs, err := OpenForRepair(context.Background(), a.dir, a.opts)
	if err != nil {
		t.Fatalf("repair cannot open the store: %v", err)
	}
	rep, err := rs.Repair(context.Background())
	rs.Close()
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	a.open()
	return rep
}

// checkAndAdvice is check --read-data, and what its report advises: --repair for
// index problems, nothing else (bit rot heals from the laptops).
func (a *a3) checkAndAdvice(t *testing.T) (*CheckReport, bool) {
	t.Helper()
	rep, err := a.s.Check(context.Background(), CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("check --read-data: %v", err)
	}
	if rep.IndexProblems > 0 {
		t.Logf("check advises --repair: %d index problem(s), %d damaged", rep.IndexProblems, rep.Damaged)
		a.repair(t)
		return rep, true
	}
	t.Logf("check: %d damaged (advice: the laptops' next backups heal them, do not repair), %d problem(s)", rep.Damaged, len(rep.Problems))
	return rep, false
}

// nextBackups is each laptop's next run, its Journal unchanged.
func (a *a3) nextBackups() {
	for i, u := range a.users {
		a.backup(u, a.srcs[i], a.caches[i])
	}
}

func (a *a3) packSeqs(t *testing.T) []uint64 {
	t.Helper()
	seqs, err := pack.List(DirFS(a.dir))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs
}

// cancelFS cancels a context when the named file is opened for reading:
// the process doing it is interrupted there (killed, a power cut, or an
// error it cannot go past, as EIO on a dying disk).
type cancelFS struct {
	FS
	name   string
	cancel context.CancelFunc
}

func (c *cancelFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if name == c.name {
		c.cancel()
	}
	return c.FS.OpenFile(name, flag, perm)
}

// eioFS fails the opening of one file with EIO: a bad sector of a dying
// disk under one pack (a transient error: the next read may succeed).
type eioFS struct {
	FS
	name string
}

func (e *eioFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if name == e.name {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EIO}
	}
	return e.FS.OpenFile(name, flag, perm)
}

// check --repair that does not finish (killed, a power cut, EIO on one pack
// of a dying disk) leaves the index it had started to rebuild. Then either
// staff run it again at once, or the machine restarts and xs-backupd
// starts, staff run check --read-data and what it advises, the nightly
// lifecycle runs and the laptops back up. No byte was damaged: nothing may
// be lost.
func TestInterruptedRepairLosesNothing(t *testing.T) {
	for _, c := range []struct{ how, then string }{{"killed", "restart"}, {"eio", "restart"}, {"killed", "repair-again"}} {
		t.Run(c.how+"-then-"+c.then, func(t *testing.T) {
			a := newA3(t)
			before := a.refs()
			seqs := a.packSeqs(t)
			if len(seqs) < 4 {
				t.Fatalf("only %d packs", len(seqs))
			}
			a.close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := a.opts
			// It stops at the first pack (the packs the laptops' next
			// backups cannot heal, old snapshots' data, are the first).
			first := pack.Name(seqs[0])
			if c.how == "killed" {
				opts.FS = &cancelFS{FS: DirFS(a.dir), name: first, cancel: cancel}
			} else {
				opts.FS = &eioFS{FS: DirFS(a.dir), name: first}
			}
			rs, err := OpenForRepair(context.Background(), a.dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = rs.Repair(ctx)
			rs.Close()
			if err == nil {
				t.Fatal("the interrupted repair did not fail")
			}
			t.Logf("repair: %v", err)
			if c.then == "repair-again" {
				a.repair(t)
			} else if s, err := Open(context.Background(), a.dir, a.opts); err != nil {
				// The daemon starts again on the store as the repair left it.
				t.Logf("the store does not open after the interrupted repair (%v): staff run check --repair", err)
				a.repair(t)
			} else {
				a.s = s
				a.checkAndAdvice(t)
			}
			a.lifecycleNights(t, 1)
			a.nextBackups()
			if bad := a.unreadableOf(before); len(bad) != 0 {
				// Whatever staff do next, is it still on disk? A full repair tells.
				rep := a.repair(t)
				still := a.unreadableOf(before)
				t.Fatalf("no byte was damaged, but after a repair that did not finish, a restart, check (which advised no repair), lifecycle and the next backups %d of %d blobs do not read back; a full repair then finds %d blob(s) in %d packs and %d are gone for good",
					len(bad), len(before), rep.Blobs, rep.Packs, len(still))
			}
			if rep, err := a.s.Check(context.Background(), CheckOptions{ReadData: true}); err != nil || !rep.OK() {
				t.Fatalf("check at the end: %v %+v", err, rep)
			}
		})
	}
}

// victim picks a chunk of the first laptop's current Journal that sits in
// the middle of a pack (records before and after it).
func (a *a3) victim(t *testing.T) blob.Ref {
	t.Helper()
	sns := a.s.Snapshots(a.users[0])
	for _, r := range a.refsOf(sns[len(sns)-1]) {
		o := a.obj(r)
		if r.Type != blob.Chunk || o.Off < 4096 {
			continue
		}
		st, err := os.Stat(filepath.Join(a.dir, pack.Name(o.Pack)))
		if err != nil {
			t.Fatal(err)
		}
		if o.Off+pack.RecordHeaderLen+int64(o.Stored)+4096 < st.Size() {
			return r
		}
	}
	t.Fatal("no chunk in the middle of a pack")
	return blob.Ref{}
}

// flipAt xors n bytes of pack seq at off.
func (a *a3) flipAt(t *testing.T, seq uint64, off int64, n int) {
	t.Helper()
	f := filepath.Join(a.dir, pack.Name(seq))
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := off; i < off+int64(n); i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(f, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// Bit rot that costs no blob, or only one that heals: a record's header
// (its magic, or its ID) in the middle of a pack or as the pack's last
// record, and the pack's own 16-byte header. Check finds the damaged chunk,
// the laptop's next backup heals it, old snapshots expire, and from then on
// the damage is an unreadable stretch that nobody points at in a pack of
// garbage. The nightly lifecycles that follow (doing what their errors
// advise) must go on: garbage collection must not stop for good, and the
// pack must be compacted like any other.
func TestUnattributableDamageDoesNotStopGC(t *testing.T) {
	for _, c := range []struct {
		name string
		off  int64 // within the record header; -1: the pack header
		last bool  // the pack's last record
	}{{"record-magic", 0, false}, {"record-id", 20, false}, {"last-record-magic", 0, true}, {"pack-header", -1, false}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			a := newA3(t)
			var seq uint64
			if c.off < 0 {
				seq = a.packSeqs(t)[0] // the first night's: garbage once its snapshots go
				a.flipAt(t, seq, 2, 4)
			} else {
				var v blob.Ref
				if c.last {
					v = a.lastRecord(t)
				} else {
					v = a.victim(t)
				}
				o := a.obj(v)
				seq = o.Pack
				a.flipAt(t, o.Pack, o.Off+c.off, 4)
			}
			rep, repaired := a.checkAndAdvice(t)
			if repaired {
				t.Fatalf("check: %+v", rep)
			}
			a.nextBackups()
			// Retention: the first night's snapshots go.
			for _, u := range a.users {
				if err := a.s.DeleteSnapshot(ctx, u, a.s.Snapshots(u)[0].ID); err != nil {
					t.Fatal(err)
				}
			}
			if bad := a.unreadableOf(a.refs()); len(bad) != 0 {
				t.Fatalf("not healed: %v", bad)
			}
			a.lifecycleNights(t, 3)
			gc, err := a.s.GC(ctx, GCOptions{CompactBelow: 1})
			if err != nil {
				t.Fatalf("after three nights (and the repairs their errors advised) garbage collection still refuses: %v", err)
			}
			for _, k := range gc.PacksKept {
				if strings.Contains(k, "index damaged") {
					t.Fatalf("after three nights (and the repairs advised) compaction still stops on pack %016x: %v", seq, gc.PacksKept)
				}
			}
			if why := a.s.suspect(); why != "" {
				t.Fatalf("garbage collection is stopped: %s", why)
			}
			if _, err := os.Stat(filepath.Join(a.dir, pack.Name(seq))); err == nil {
				t.Errorf("pack %016x, holding only healed damage and garbage, is never compacted", seq)
			}
			if bad := a.unreadableOf(a.refs()); len(bad) != 0 {
				t.Fatalf("lost: %v", bad)
			}
		})
	}
}

// lastRecord picks a blob of a laptop's latest snapshot that is the last
// record of a pack other than the newest.
func (a *a3) lastRecord(t *testing.T) blob.Ref {
	t.Helper()
	seqs := a.packSeqs(t)
	var cur []blob.Ref
	for r := range a.current() {
		cur = append(cur, r)
	}
	sort.Slice(cur, func(i, j int) bool { return cur[i].String() < cur[j].String() })
	for _, r := range cur {
		o := a.obj(r)
		if o.Pack == seqs[len(seqs)-1] {
			continue
		}
		st, err := os.Stat(filepath.Join(a.dir, pack.Name(o.Pack)))
		if err != nil {
			t.Fatal(err)
		}
		if o.Off+pack.RecordHeaderLen+int64(o.Stored) == st.Size() {
			return r
		}
	}
	t.Fatal("no blob of the latest snapshots ends a pack")
	return blob.Ref{}
}

// lifecycleNights runs the nightly lifecycle n times (the scrub reads every
// pack, compaction rewrites every pack with garbage), doing what an error
// advises (a repair for an index it says to rebuild).
func (a *a3) lifecycleNights(t *testing.T, n int) {
	t.Helper()
	for night := 0; night < n; night++ {
		if _, err := a.s.Lifecycle(context.Background(), LifecycleOptions{ScrubDays: 1}); err != nil {
			t.Logf("night %d: lifecycle: %v", night, err)
			if errors.Is(err, ErrIndexDamaged) {
				if _, repaired := a.checkAndAdvice(t); !repaired {
					a.repair(t)
				}
			}
			continue
		}
		if gc, err := a.s.GC(context.Background(), GCOptions{CompactBelow: 1}); err != nil {
			t.Logf("night %d: gc: %v", night, err)
		} else if len(gc.PacksKept) > 0 {
			t.Logf("night %d: gc kept %v", night, gc.PacksKept)
		}
	}
}

// Two pack files change places (a restore from a backup of the disk, a
// file-level copy gone wrong, a fsck putting files back): no byte of any
// record is damaged. Staff run check --read-data and what it advises, the
// lifecycle runs, the laptops back up, nights pass. Every blob must still
// read back, and no record may be lost for good (a repair at the end tells).
func TestSwappedPackFilesLoseNothing(t *testing.T) {
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}, {1, 3}, {2, 3}} {
		t.Run(fmt.Sprintf("%d-%d", pair[0], pair[1]), func(t *testing.T) {
			a := newA3(t)
			before := a.refs()
			seqs := a.packSeqs(t)
			if len(seqs) < 4 {
				t.Fatalf("only %d packs", len(seqs))
			}
			a.close()
			p1, p2 := filepath.Join(a.dir, pack.Name(seqs[pair[0]])), filepath.Join(a.dir, pack.Name(seqs[pair[1]]))
			tmp := p1 + ".swap"
			if err := os.Rename(p1, tmp); err != nil {
				t.Fatal(err)
			}
			os.Rename(p2, p1)
			os.Rename(tmp, p2)
			a.open()
			rep, repaired := a.checkAndAdvice(t)
			a.nextBackups()
			a.lifecycleNights(t, 2)
			a.nextBackups()
			a.lifecycleNights(t, 1)
			bad := a.unreadableOf(before)
			if len(bad) == 0 {
				return
			}
			// What is left on disk: a full repair.
			a.repair(t)
			gone := a.unreadableOf(before)
			if len(gone) > 0 {
				t.Fatalf("no byte was damaged, yet %d blob(s) of the old snapshots are gone for good after the staff's sequence (check: %d damaged, repair advised: %v; %d unreadable before a last repair)", len(gone), rep.Damaged, repaired, len(bad))
			}
			t.Errorf("no byte was damaged, yet after the staff's sequence %d blob(s) of the old snapshots do not read back; check reported %d damaged and advised repair: %v, and only a repair finds them", len(bad), rep.Damaged, repaired)
		})
	}
}

// A pack file replaced by a copy of another pack (a wrong file put back),
// deleted, or emptied: its own records are lost, nothing else. Staff run
// check and what it advises, the lifecycle, the laptops' next backups, a
// repair (twice, for good measure), more nights. Only the blobs the lost
// pack held may be gone, and of those only what no laptop still has.
func TestPackReplacedDeletedOrEmptied(t *testing.T) {
	for _, c := range []string{"replaced-by-copy", "deleted", "emptied"} {
		t.Run(c, func(t *testing.T) {
			a := newA3(t)
			before := a.refs()
			seqs := a.packSeqs(t)
			lostPack, src := seqs[1], seqs[0]
			dmg := map[blob.Ref]bool{}
			for r := range before {
				if a.obj(r).Pack == lostPack {
					dmg[r] = true
				}
			}
			a.close()
			name := filepath.Join(a.dir, pack.Name(lostPack))
			switch c {
			case "replaced-by-copy":
				b, err := os.ReadFile(filepath.Join(a.dir, pack.Name(src)))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(name, b, 0o640)
			case "deleted":
				os.Remove(name)
			case "emptied":
				os.Truncate(name, 0)
			}
			a.open()
			a.checkAndAdvice(t)
			a.lifecycleNights(t, 1)
			a.nextBackups()
			a.lifecycleNights(t, 2)
			a.repair(t)
			a.repair(t)
			a.lifecycleNights(t, 1)
			// Damage below a damaged tree is found a level at a time
			// (TestLostPackHealsInOneBackup): give the laptops the nights.
			for i := 0; i < 4; i++ {
				a.nextBackups()
			}
			current := a.current()
			for _, r := range a.unreadableOf(before) {
				switch {
				case !dmg[r]:
					t.Errorf("LOST beyond the damage: %s", r)
				case current[r]:
					t.Errorf("damaged %s is in a laptop's Journal but was not healed", r)
				}
			}
			if _, err := a.s.GC(context.Background(), GCOptions{}); err != nil {
				t.Errorf("garbage collection stopped: %v", err)
			}
		})
	}
}

// current lists the blobs of each laptop's latest snapshot: what their next
// backups can heal.
func (a *a3) current() map[blob.Ref]bool {
	cur := map[blob.Ref]bool{}
	for _, u := range a.users {
		sns := a.s.Snapshots(u)
		for _, r := range a.refsOf(sns[len(sns)-1]) {
			cur[r] = true
		}
	}
	return cur
}

// Damage in the middle of a pack that compaction reaches before any check:
// compaction copies the records before the damaged one, finds the damage
// and keeps the pack. The chunk copied first now has two records, and the
// index knows one. Later its indexed record rots too (a second damage, in
// the same old pack), and the laptop has meanwhile deleted the document:
// compaction's copy is the only intact record. Staff follow check's advice,
// laptops back up, nights pass. The copy must not be thrown away while the
// blob has no other intact record.
func TestCompactedBeforeCheckThenSecondDamage(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	// Garbage, so that compaction wants packs: the second laptop's first
	// snapshot goes.
	b := a.users[1]
	if err := a.s.DeleteSnapshot(ctx, b, a.s.Snapshots(b)[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.GC(ctx, GCOptions{CompactBelow: -1}); err != nil {
		t.Fatal(err)
	}
	// Which laptop, and which file, each chunk belongs to.
	owner := map[blob.Ref]int{}
	file := map[blob.Ref]string{}
	for i, u := range a.users {
		for _, sn := range a.s.Snapshots(u) {
			a.s.Walk(ctx, sn.Root, func(p string, e *manifest.Entry) error {
				for _, id := range e.Chunks {
					r := blob.Ref{Type: blob.Chunk, ID: id}
					if o, ok := owner[r]; ok && o != i {
						owner[r] = -1
					} else {
						owner[r] = i
					}
					file[r] = p
				}
				return nil
			})
		}
	}
	// X: a chunk of one laptop's file, followed in its pack by a live
	// chunk D; the pack holds garbage.
	var x, d blob.Ref
	for _, seq := range a.packSeqs(t) {
		if a.s.garbageCount(seq) == 0 {
			continue
		}
		var recs []blob.Ref
		for r := range owner {
			if a.obj(r).Pack == seq {
				recs = append(recs, r)
			}
		}
		sort.Slice(recs, func(i, j int) bool { return a.obj(recs[i]).Off < a.obj(recs[j]).Off })
		x, d = blob.Ref{}, blob.Ref{}
		for _, r := range recs {
			if x == (blob.Ref{}) && owner[r] >= 0 {
				x = r
			} else if x != (blob.Ref{}) && file[r] != file[x] {
				d = r
			}
		}
		if d != (blob.Ref{}) {
			break
		}
	}
	if d == (blob.Ref{}) {
		t.Fatal("no pack with garbage holding a chunk of one laptop before another live chunk")
	}
	ox, od := a.obj(x), a.obj(d)
	t.Logf("pack %016x: %s (%s) at %d, then %s at %d", ox.Pack, x, file[x], ox.Off, d, od.Off)
	// The first damage: D's data. Compaction meets it before any check.
	a.flipAt(t, od.Pack, od.Off+pack.RecordHeaderLen+int64(od.Stored)/2, 8)
	gc, err := a.s.GC(ctx, GCOptions{CompactBelow: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: kept %v", gc.PacksKept)
	if a.obj(x).Pack != ox.Pack {
		t.Fatal("compaction moved X after all")
	}
	// The second damage: X's data in the old pack; the laptop deletes the
	// document X belongs to.
	a.flipAt(t, ox.Pack, ox.Off+pack.RecordHeaderLen+int64(ox.Stored)/2, 8)
	if err := os.Remove(filepath.Join(a.srcs[owner[x]], filepath.FromSlash(file[x]))); err != nil {
		t.Fatal(err)
	}
	a.checkAndAdvice(t)
	a.nextBackups()
	a.lifecycleNights(t, 3)
	if _, err := a.s.ReadBlob(ctx, x); err == nil {
		return
	}
	a.repair(t)
	if _, err := a.s.ReadBlob(ctx, x); err != nil {
		t.Fatalf("%s, whose only intact record was compaction's copy, is gone for good: %v", x, err)
	}
	t.Errorf("%s has an intact record on disk (compaction's copy) but reads as damaged until a repair, which check never advises", x)
}

// check runs through the daemon while laptops back up (staff run it in
// the day). A healthy store must check clean: a false "count" problem
// pauses garbage collection and tells staff to stop the daemon and rebuild
// the index for nothing.
func TestCheckDuringBackupsFindsNoFalseIndexProblems(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(done)
		for round := 0; round < 6; round++ {
			for i, u := range a.users {
				if err := journalgen.Mutate(a.srcs[i], uint64(31+i), 10+round); err != nil {
					errc <- err
					return
				}
				tg := a.s.Target(u, CommitInfo{})
				if _, err := backup.Run(ctx, a.srcs[i], tg, backup.Options{Params: a.s.Params(), Cache: a.caches[i], Exclude: backup.JournalExclude}); err != nil {
					errc <- err
					return
				}
			}
		}
	}()
	checks, bad := 0, 0
	var false_ []Problem
	paused := ""
	for running := true; running; checks++ {
		select {
		case <-done:
			running = false
		default:
		}
		rep, err := a.s.Check(ctx, CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.IndexProblems > 0 {
			bad++
			if false_ == nil {
				false_ = rep.Problems
				if _, err := a.s.GC(ctx, GCOptions{DryRun: true}); err != nil {
					paused = err.Error()
				}
			}
		}
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	if rep, err := a.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("the store is not healthy after all: %v %+v", err, rep)
	}
	if false_ != nil {
		n := 0
		for _, p := range false_ {
			if n < 3 && (p.Kind == "count" || p.Kind == "missing") {
				t.Logf("  %+v", p)
				n++
			}
		}
		t.Fatalf("%d of %d checks during backups reported index problems on a healthy store; garbage collection then says: %q", bad, checks, paused)
	}
	t.Logf("%d checks during backups, all clean", checks)
}

// A snapshot file that is gone rather than damaged (a file system check
// that moved its inode to lost+found, a directory block that rotted, a
// mistaken rm): the snapshot's blobs are intact and the index knows its
// root, as it does for a damaged file (rebuilt and reported). A missing
// file must not be taken silently for a deletion whose references the
// start then releases and GC then sweeps.
func TestMissingSnapshotFileIsNotADeletion(t *testing.T) {
	for _, what := range []string{"one-file", "user-directory"} {
		t.Run(what, func(t *testing.T) {
			a := newA3(t)
			b := a.users[1]
			victims := a.s.Snapshots(b)[:1]
			if what == "user-directory" {
				victims = a.s.Snapshots(b)
			}
			only := map[blob.Ref]bool{}
			for _, sn := range victims {
				for _, r := range a.refsOf(sn) {
					only[r] = true
				}
			}
			for _, u := range a.users {
				for _, sn := range a.s.Snapshots(u) {
					gone := false
					for _, v := range victims {
						gone = gone || v.ID == sn.ID && u == b
					}
					if !gone {
						for _, r := range a.refsOf(sn) {
							delete(only, r)
						}
					}
				}
			}
			a.close()
			if what == "one-file" {
				if err := os.Remove(filepath.Join(a.dir, snapFile(b, victims[0].ID))); err != nil {
					t.Fatal(err)
				}
			} else if err := os.RemoveAll(filepath.Join(a.dir, "snapshots", b.String())); err != nil {
				t.Fatal(err)
			}
			a.open()
			rep, _ := a.checkAndAdvice(t)
			a.lifecycleNights(t, 1)
			unread := a.unreadableOf(only)
			if len(unread) > 0 {
				t.Fatalf("%d snapshot file(s) of laptop B went missing: check reported %d problem(s) (%v), %d snapshot(s) are listed for B, and the lifecycle then swept %d of the %d blobs only they used",
					len(victims), len(rep.Problems), rep.Problems, len(a.s.Snapshots(b)), len(unread), len(only))
			}
		})
	}
}

// A tree rots (a directory both nights' snapshots share) and the index is
// damaged too (a dying disk does both): check advises --repair. Repair
// cannot read the tree, so it cannot count what is below it; GC must not
// take those blobs for garbage. After the lifecycle and the laptop's next
// backup (which heals the tree), every snapshot must be whole.
func TestRepairWithADamagedTreeThenGC(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	before := a.refs()
	sns := a.s.Snapshots(a.users[0])
	first, last := map[blob.Ref]bool{}, map[blob.Ref]bool{}
	for _, r := range a.refsOf(sns[0]) {
		first[r] = true
	}
	for _, r := range a.refsOf(sns[len(sns)-1]) {
		last[r] = true
	}
	var tree blob.Ref
	var kids int
	for r := range first {
		if r.Type != blob.Tree || !last[r] || r.ID == sns[0].Root {
			continue
		}
		tr, err := a.s.ReadTree(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(treeRefs(tr)); n > kids {
			tree, kids = r, n
		}
	}
	if kids == 0 {
		t.Fatal("no shared directory")
	}
	tr, _ := a.s.ReadTree(ctx, tree.ID)
	kidRefs := treeRefs(tr)
	o := a.obj(tree)
	a.flipAt(t, o.Pack, o.Off+pack.RecordHeaderLen+int64(o.Stored)/2, 4)
	// The index loses an entry.
	var other blob.Ref
	for r := range before {
		if r.Type == blob.Chunk && !first[r] {
			other = r
			break
		}
	}
	a.s.dbUpdate(func(txn *badger.Txn) error { return txn.Delete(objKey(other)) })
	if _, repaired := a.checkAndAdvice(t); !repaired {
		t.Fatal("check did not advise a repair for the lost index entry")
	}
	a.lifecycleNights(t, 1)
	// Before any laptop backs up: what the damaged tree references is
	// still in the index (GC must not have taken it for garbage).
	var swept []blob.Ref
	for _, r := range kidRefs {
		if _, err := a.s.Stat(ctx, r); errors.Is(err, ErrNotFound) {
			swept = append(swept, r)
		}
	}
	if len(swept) > 0 {
		t.Errorf("after the advised repair the lifecycle swept %d of the %d blobs the damaged tree references (repair counts nothing below a tree it cannot read), e.g. %s; only the laptop's next upload brings them back", len(swept), len(kidRefs), swept[0])
	}
	a.nextBackups()
	a.lifecycleNights(t, 1)
	if bad := a.unreadableOf(before); len(bad) != 0 {
		t.Fatalf("%d blob(s) of the snapshots do not read back (the tree had %d children and the laptop still has them all): %v", len(bad), kids, bad)
	}
	rep, err := a.s.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check at the end: %v %+v", err, rep)
	}
	// Healed: what the repair kept is garbage again where nobody holds it.
	gc, err := a.s.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keeps := 0
	a.s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pKeep}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keeps++
		}
		return nil
	})
	if keeps != 0 || gc.KeptBelowDamagedTrees != 0 {
		t.Fatalf("after the tree healed, %d keep mark(s) are left and GC still kept %d blob(s)", keeps, gc.KeptBelowDamagedTrees)
	}
}

// Files in packs/ the store did not write, under the number of a pack
// compaction removed: an empty pack file, a directory named like a pack, a
// pack-named file of random bytes, the removed pack itself put back (packs/
// restored from an older copy of the disk), and files with other names.
// The store starts, staff run check and what it advises, the lifecycle
// runs, laptops back up: nothing is lost, and garbage collection does not
// stop for good (or says which file to move away).
func TestStrayFilesInPacks(t *testing.T) {
	for _, c := range []string{"empty-pack", "directory", "random-bytes", "old-pack-back", "other-names"} {
		t.Run(c, func(t *testing.T) {
			ctx := context.Background()
			a := newA3(t)
			// Retention and compaction remove a pack.
			for _, u := range a.users {
				if err := a.s.DeleteSnapshot(ctx, u, a.s.Snapshots(u)[0].ID); err != nil {
					t.Fatal(err)
				}
			}
			saved := map[uint64][]byte{}
			for _, seq := range a.packSeqs(t) {
				saved[seq], _ = os.ReadFile(filepath.Join(a.dir, pack.Name(seq)))
			}
			if _, err := a.s.GC(ctx, GCOptions{CompactBelow: 1}); err != nil {
				t.Fatal(err)
			}
			var stray uint64
			for _, seq := range a.packSeqs(t) {
				delete(saved, seq)
			}
			for seq := range saved {
				stray = seq
			}
			if stray == 0 {
				t.Fatal("compaction removed no pack")
			}
			name := filepath.Join(a.dir, pack.Name(stray))
			a.close()
			os.MkdirAll(filepath.Dir(name), 0o750)
			switch c {
			case "empty-pack":
				os.WriteFile(name, nil, 0o640)
			case "directory":
				os.Mkdir(name, 0o750)
			case "random-bytes":
				b := make([]byte, 40000)
				for i := range b {
					b[i] = byte(i*7919 + i>>5)
				}
				os.WriteFile(name, b, 0o640)
			case "old-pack-back":
				os.WriteFile(name, saved[stray], 0o640)
			case "other-names":
				p := filepath.Join(a.dir, pack.Name(a.packSeqs(t)[0]))
				b, _ := os.ReadFile(p)
				os.WriteFile(p+"~", b, 0o640)
				os.WriteFile(strings.ToUpper(p[:len(p)-5])+".pack", b, 0o640)
				os.WriteFile(filepath.Join(a.dir, "packs", "README"), []byte("hello"), 0o640)
				os.Mkdir(filepath.Join(a.dir, "packs", "lost+found"), 0o700)
			}
			a.open()
			a.checkAndAdvice(t)
			a.lifecycleNights(t, 1)
			a.nextBackups()
			a.lifecycleNights(t, 2)
			gc, err := a.s.GC(ctx, GCOptions{CompactBelow: 1})
			why := a.s.suspect()
			if err != nil {
				why = err.Error()
			}
			// Stopping is acceptable only with advice that works: the file
			// to move away, named.
			if why != "" && !(strings.Contains(why, filepath.Base(name)) && strings.Contains(why, "move")) {
				t.Fatalf("garbage collection stopped for good by a stray file (after the repairs advised), without naming it: %s; gc: %+v", why, gc)
			}
			if bad := a.unreadableOf(a.refs()); len(bad) != 0 {
				t.Fatalf("lost: %v", bad)
			}
			rep, err := a.s.Check(ctx, CheckOptions{ReadData: true})
			if err != nil || !rep.OK() {
				t.Fatalf("check at the end: %v %+v", err, rep)
			}
		})
	}
}

// The accounting that keeps compaction from dropping records the index lost
// (TestCompactionKeepsPacksWithUnaccountedRecords) trusts that a start
// after a clean stop counts nothing as orphaned uploads. The daemon is
// stopped cleanly and started again; meanwhile the index lost entries of
// the newest packs (a damaged index file). Compaction must keep those
// records (and stop GC until a repair), exactly as without the restart.
func TestCleanRestartDoesNotCountLostEntriesAsGarbage(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	b := a.users[1]
	if err := a.s.DeleteSnapshot(ctx, b, a.s.Snapshots(b)[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.GC(ctx, GCOptions{CompactBelow: -1}); err != nil {
		t.Fatal(err)
	}
	// A clean stop: the next start must know it.
	a.close()
	ro := a.opts
	ro.ReadOnly = true
	rs, err := Open(ctx, a.dir, ro)
	if err != nil {
		t.Fatal(err)
	}
	var running bool
	rs.view(func(txn *badger.Txn) (err error) { _, running, err = getU64(txn, runningKey); return err })
	rs.Close()
	if running {
		t.Errorf("after Close the store still says it is running: every start counts the last packs' unknown records as an unclean stop's orphans (Close marks itself closed before stopAccounting's write)")
	}
	// A day of backups, then the daemon is stopped cleanly.
	a.open()
	first := a.s.packs.NextSeq()
	for i, u := range a.users {
		if err := journalgen.Mutate(a.srcs[i], uint64(31+i), 7); err != nil {
			t.Fatal(err)
		}
		a.backup(u, a.srcs[i], a.caches[i])
	}
	before := a.refs()
	var lost []blob.Ref
	for r := range before {
		if a.obj(r).Pack >= first {
			lost = append(lost, r)
		}
	}
	a.close()
	// While it is stopped, the index loses the entries of that day's records.
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(a.dir, "index")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(txn *badger.Txn) error {
		for _, r := range lost {
			txn.Delete(objKey(r))
		}
		return nil
	})
	db.Close()
	a.open()
	gc, err := a.s.GC(ctx, GCOptions{CompactBelow: 1})
	t.Logf("gc after the restart: %+v %v", gc, err)
	a.repair(t)
	if bad := a.unreadableOf(before); len(bad) != 0 {
		t.Fatalf("the index lost %d entries and the daemon was restarted cleanly: compaction then removed %d pack(s) and %d blob(s) are gone for good", len(lost), gc.PacksRemoved, len(bad))
	}
}

// Compaction removes the newest pack (all garbage: an abandoned backup's
// uploads, a deleted snapshot), the daemon restarts, and the next pack
// created takes that pack's number again, with the garbage count of the
// removed one. If the index then loses entries of the new pack's records,
// compaction must keep them (as TestCompactionKeepsPacksWithUnaccountedRecords
// shows it does for any other pack), not take them for the old pack's
// garbage.
func TestReusedPackNumberKeepsNoStaleGarbage(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	u, b := a.users[0], a.users[1]
	if err := a.s.packs.Roll(); err != nil {
		t.Fatal(err)
	}
	extra := a.backup(u, journal(t, 99), nil)
	newest := a.obj(blob.Ref{Type: blob.Tree, ID: extra.Root}).Pack
	if err := a.s.DeleteSnapshot(ctx, u, extra.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.GC(ctx, GCOptions{CompactBelow: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, pack.Name(newest))); err == nil {
		t.Fatalf("pack %d was not removed", newest)
	}
	a.close()
	a.open()
	if next := a.s.packs.NextSeq(); next <= newest {
		t.Logf("after the restart the next pack is numbered %d again (garbage counted for the removed one: %d)", next, a.s.garbageCount(next))
	}
	// B's new documents go to the new pack; the index loses their entries.
	if err := journalgen.Mutate(a.srcs[1], 32, 9); err != nil {
		t.Fatal(err)
	}
	first := a.s.packs.NextSeq()
	a.backup(b, a.srcs[1], a.caches[1])
	before := a.refs()
	var lost []blob.Ref
	for r := range before {
		if a.obj(r).Pack >= first {
			lost = append(lost, r)
		}
	}
	a.s.dbUpdate(func(txn *badger.Txn) error {
		for _, r := range lost {
			txn.Delete(objKey(r))
		}
		return nil
	})
	gc, err := a.s.GC(ctx, GCOptions{CompactBelow: 1})
	t.Logf("gc: %+v %v", gc, err)
	a.repair(t)
	if bad := a.unreadableOf(before); len(bad) != 0 {
		t.Fatalf("the index lost %d entries of pack %d's records; compaction took them for the garbage of the pack that had its number before and dropped them: %d blob(s) gone for good", len(lost), first, len(bad))
	}
}

// A laptop's user file is gone (not damaged: fsck, a mistaken rm) while its
// snapshots remain. Staff run check and what it advises; the advice must
// work (check clean after it, or a clear message), and neither the
// laptop's snapshots nor its blobs may be dropped.
func TestMissingUserFile(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	b := a.users[1]
	before := a.refs()
	nb := len(a.s.Snapshots(b))
	a.close()
	if err := os.Remove(filepath.Join(a.dir, userFile(b))); err != nil {
		t.Fatal(err)
	}
	a.open()
	rep, repaired := a.checkAndAdvice(t)
	if repaired {
		rep2, err := a.s.Check(ctx, CheckOptions{ReadData: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep2.IndexProblems > 0 {
			t.Errorf("check advised --repair (%d index problems, first %+v); after the repair check still finds %d: the advice never ends", rep.IndexProblems, rep.firstIndexProblem(), rep2.IndexProblems)
		}
	}
	t.Logf("snapshots of the laptop whose user file is gone: %d (were %d); metadata problems: %+v", len(a.s.Snapshots(b)), nb, a.s.MetaDamage())
	a.lifecycleNights(t, 2)
	if bad := a.unreadableOf(before); len(bad) != 0 {
		t.Fatalf("%d blob(s) lost after the laptop's user file went missing", len(bad))
	}
	if _, err := a.s.GC(ctx, GCOptions{}); err != nil {
		t.Errorf("garbage collection stopped for good: %v", err)
	}
}

// A whole pack file is lost (deleted, or a disk block of packs/ gone) with
// directory trees in it, one inside another. check --read-data records
// the damage, the laptops (their Journals unchanged) back up. The snapshot
// each laptop's backup just committed, and was acknowledged, must be whole:
// a restore of it after the laptop is lost writes every file.
func TestLostPackHealsInOneBackup(t *testing.T) {
	for _, how := range []string{"deleted", "cut-short"} {
		t.Run(how, func(t *testing.T) { lostPackHealsInOneBackup(t, how) })
	}
}

// lostPackHealsInOneBackup: the pack is deleted, or cut short in the
// middle of its first record (everything after it gone).
func lostPackHealsInOneBackup(t *testing.T, how string) {
	a := newA3(t)
	before := a.refs()
	// The pack holding the most trees of the laptops' latest snapshots.
	cur := a.current()
	trees := map[uint64]int{}
	for r := range cur {
		if r.Type == blob.Tree {
			trees[a.obj(r).Pack]++
		}
	}
	var lostPack uint64
	for seq, n := range trees {
		if n > trees[lostPack] || n == trees[lostPack] && seq < lostPack {
			lostPack = seq
		}
	}
	inPack := 0
	for r := range before {
		if a.obj(r).Pack == lostPack {
			inPack++
		}
	}
	a.close()
	if how == "deleted" {
		if err := os.Remove(filepath.Join(a.dir, pack.Name(lostPack))); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Truncate(filepath.Join(a.dir, pack.Name(lostPack)), int64(pack.HeaderLen)+pack.RecordHeaderLen+3); err != nil {
		t.Fatal(err)
	}
	a.open()
	rep, _ := a.checkAndAdvice(t)
	if rep.Damaged < inPack {
		t.Logf("check --read-data reported %d damaged blob(s); the lost pack held %d the snapshots use (those below a damaged tree are not seen, and the scrub reads only packs that exist)", rep.Damaged, inPack)
	}
	a.nextBackups()
	var bad []blob.Ref
	for _, u := range a.users {
		sns := a.s.Snapshots(u)
		bad = append(bad, a.unreadable(a.refsOf(sns[len(sns)-1]))...)
	}
	if len(bad) > 0 {
		t.Fatalf("after check --read-data and one backup of each unchanged Journal, the snapshots those backups just committed still use %d damaged blob(s), e.g. %s (%s); check had reported %d of the %d blobs the lost pack held",
			len(bad), bad[0], a.s.damageReason(bad[0]), rep.Damaged, inPack)
	}
}

func (s *Store) damageReason(r blob.Ref) string {
	d, _ := s.Damaged(context.Background())
	for _, x := range d {
		if x.Ref == r {
			return x.Reason
		}
	}
	return "not listed as damaged"
}
