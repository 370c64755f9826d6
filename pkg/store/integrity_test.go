package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Regression tests for the integrity issue: each of these failed on the
// code before it (see RELIABILITY.md).

type itStore struct {
	t    *testing.T
	dir  string
	s    *Store
	opts Options
}

func newIT(t *testing.T) *itStore {
	it := &itStore{t: t, dir: t.TempDir(), opts: Options{Reserve: -1, PackSize: 64 << 10}}
	it.open()
	t.Cleanup(func() {
		if it.s != nil {
			it.s.Close()
		}
	})
	return it
}

func (it *itStore) open() {
	it.t.Helper()
	s, err := Open(context.Background(), it.dir, it.opts)
	if err != nil {
		it.t.Fatal(err)
	}
	it.s = s
}

func (it *itStore) user(serial string) UserID {
	it.t.Helper()
	u, err := it.s.AddUser(context.Background(), NewUser{Serial: serial, Approved: true})
	if err != nil {
		it.t.Fatal(err)
	}
	return u.ID
}

func (it *itStore) backup(u UserID, src string, cache *backup.Cache) *Snapshot {
	it.t.Helper()
	tg := it.s.Target(u, CommitInfo{})
	if _, err := backup.Run(context.Background(), src, tg, backup.Options{Params: it.s.Params(), Cache: cache, Exclude: backup.JournalExclude}); err != nil {
		it.t.Fatal(err)
	}
	return tg.Last()
}

func journal(t *testing.T, seed uint64) string {
	dir := t.TempDir()
	o := journalgen.Small(seed)
	o.Entries = 6
	if _, err := journalgen.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

// refsOf lists every blob a snapshot uses.
func (it *itStore) refsOf(sn *Snapshot) []blob.Ref {
	refs := []blob.Ref{{Type: blob.Tree, ID: sn.Root}}
	it.s.Walk(context.Background(), sn.Root, func(_ string, e *manifest.Entry) error {
		if e.Type == manifest.Dir {
			refs = append(refs, blob.Ref{Type: blob.Tree, ID: e.Subtree})
		}
		for _, id := range e.Chunks {
			refs = append(refs, blob.Ref{Type: blob.Chunk, ID: id})
		}
		return nil
	})
	return refs
}

func (it *itStore) obj(r blob.Ref) objRec {
	var o objRec
	it.s.view(func(txn *badger.Txn) (err error) {
		o, _, err = getObj(txn, r)
		return err
	})
	return o
}

// flip damages 16 bytes in the middle of r's stored data.
func (it *itStore) flip(r blob.Ref) {
	it.t.Helper()
	o := it.obj(r)
	f := filepath.Join(it.dir, pack.Name(o.Pack))
	b, err := os.ReadFile(f)
	if err != nil {
		it.t.Fatal(err)
	}
	at := int(o.Off) + pack.RecordHeaderLen + int(o.Stored)/2
	for i := at; i < at+16 && i < int(o.Off)+pack.RecordHeaderLen+int(o.Stored); i++ {
		b[i] ^= 0xa5
	}
	os.WriteFile(f, b, 0o640)
}

func (it *itStore) unreadable(refs []blob.Ref) []blob.Ref {
	var bad []blob.Ref
	seen := map[blob.Ref]bool{}
	for _, r := range refs {
		if seen[r] {
			continue
		}
		seen[r] = true
		if _, err := it.s.ReadBlob(context.Background(), r); err != nil {
			bad = append(bad, r)
		}
	}
	return bad
}

// One flipped stretch inside one pack, then check --read-data, then check
// --repair, then the nightly GC: exactly the one damaged chunk is lost; its
// neighbours in the pack (another laptop's data among them) survive.
func TestRepairLosesOnlyTheDamagedRecord(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	a, b := it.user("A"), it.user("B")
	snA := it.backup(a, journal(t, 1), nil)
	snB := it.backup(b, journal(t, 2), nil)
	refs := append(it.refsOf(snA), it.refsOf(snB)...)
	// The victim: a chunk in the middle of a pack with neighbours after it.
	var victim blob.Ref
	for _, r := range it.refsOf(snA) {
		o := it.obj(r)
		if r.Type == blob.Chunk && o.Off > 4096 {
			victim = r
			break
		}
	}
	it.flip(victim)
	if _, err := it.s.Check(ctx, CheckOptions{ReadData: true}); err != nil {
		t.Fatal(err)
	}
	it.s.Close()
	rs, err := OpenForRepair(ctx, it.dir, it.opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rs.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Close()
	it.open()
	if _, err := it.s.GC(ctx, GCOptions{CompactBelow: 1}); err != nil {
		t.Fatal(err)
	}
	bad := it.unreadable(refs)
	if len(bad) != 1 || bad[0] != victim {
		t.Fatalf("after repair and GC %d blobs are unreadable (%v), want only the damaged %s; repair: %+v", len(bad), bad, victim, rep)
	}
}

// check --repair works when the index will not open: it moves it aside.
func TestRepairWhenIndexWillNotOpen(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	u := it.user("A")
	sn := it.backup(u, journal(t, 1), nil)
	it.s.Close()
	files, _ := filepath.Glob(filepath.Join(it.dir, "index", "MANIFEST"))
	if len(files) == 0 {
		t.Fatal("no MANIFEST in the index")
	}
	os.WriteFile(files[0], []byte("this is not a badger manifest at all"), 0o640)
	if _, err := Open(ctx, it.dir, it.opts); !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("open of a store whose index is damaged: %v, want ErrIndexDamaged", err)
	}
	rs, err := OpenForRepair(ctx, it.dir, it.opts)
	if err != nil {
		t.Fatalf("repair cannot open it: %v", err)
	}
	rep, err := rs.Repair(ctx)
	rs.Close()
	if err != nil || rep.IndexMovedAside == "" {
		t.Fatalf("repair: %v %+v", err, rep)
	}
	it.open()
	if bad := it.unreadable(it.refsOf(sn)); len(bad) != 0 {
		t.Fatalf("%d blobs unreadable after rebuilding the index", len(bad))
	}
	if rep, err := it.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after repair: %v %+v", err, rep)
	}
}

// Bit rot in a chunk two laptops share: the scrub finds it, Need asks each
// holder for it again, and one laptop's next backup heals it for both —
// every snapshot that used it is whole again.
func TestBitRotHealsFromAnyHolder(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	a, b := it.user("A"), it.user("B")
	src := journal(t, 1) // both laptops hold the same Journal
	cacheA := backup.NewCache()
	snA := it.backup(a, src, cacheA)
	snB := it.backup(b, src, backup.NewCache())
	var victim blob.Ref
	for _, r := range it.refsOf(snA) {
		if r.Type == blob.Chunk {
			victim = r
		}
	}
	it.flip(victim)
	rep, err := it.s.Scrub(ctx, ScrubOptions{All: true})
	if err != nil || len(rep.Damaged) != 1 {
		t.Fatalf("scrub: %v %+v", err, rep)
	}
	for _, u := range []UserID{a, b} {
		need, _ := it.s.Need(ctx, u, []blob.Ref{victim})
		if !need[0] {
			t.Fatalf("Need does not ask holder %v for the damaged chunk", u)
		}
		if refs, _, _ := it.s.DamagedHeld(ctx, u); len(refs) != 1 || refs[0] != victim {
			t.Fatalf("DamagedHeld(%v) = %v", u, refs)
		}
	}
	// Laptop A's Journal is unchanged: its file cache would skip every file;
	// the store's damage report makes it read the one file again.
	res, err := backup.Run(ctx, src, it.s.Target(a, CommitInfo{}), backup.Options{Params: it.s.Params(), Cache: cacheA, Exclude: backup.JournalExclude})
	if err != nil {
		t.Fatal(err)
	}
	if res.ChunksNew != 1 {
		t.Errorf("the healing backup sent %d chunks, want just the damaged one", res.ChunksNew)
	}
	for _, sn := range []*Snapshot{snA, snB} {
		if bad := it.unreadable(it.refsOf(sn)); len(bad) != 0 {
			t.Fatalf("snapshot %s still has %d damaged blobs", sn.ID, len(bad))
		}
	}
	if d, _ := it.s.Damaged(ctx); len(d) != 0 {
		t.Fatalf("still damaged: %+v", d)
	}
	if rep, err := it.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after healing: %v %+v", err, rep)
	}
}

// A damaged tree never blocks a laptop: its next backup sends the tree again.
func TestDamagedTreeDoesNotBlockTheNextBackup(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	u := it.user("A")
	src := journal(t, 3)
	cache := backup.NewCache()
	sn := it.backup(u, src, cache)
	it.flip(blob.Ref{Type: blob.Tree, ID: sn.Root})
	// The tree's statistics are cached in the index; without them a commit
	// must read the tree (as after a repair).
	it.s.dbUpdate(func(txn *badger.Txn) error { return txn.Delete(tstatKey(sn.Root)) })
	for i := 0; i < 2; i++ {
		next := it.backup(u, src, cache) // fails the test if the backup fails
		if bad := it.unreadable(it.refsOf(next)); len(bad) != 0 {
			t.Fatalf("backup %d: %d blobs still damaged", i, len(bad))
		}
	}
	if bad := it.unreadable(it.refsOf(sn)); len(bad) != 0 {
		t.Fatalf("the first snapshot is not whole again: %v", bad)
	}
	if rep, err := it.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}
}

// GC refuses to run on index entries it cannot decode, and after a check
// that found the index inconsistent.
func TestGCRefusesAnIndexItCannotTrust(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	u := it.user("A")
	sn := it.backup(u, journal(t, 1), nil)
	refs := it.refsOf(sn)
	it.s.dbUpdate(func(txn *badger.Txn) error { return txn.Set(objKey(refs[1]), []byte("short")) })
	if _, err := it.s.GC(ctx, GCOptions{CompactBelow: 1}); !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("GC over an undecodable entry: %v, want ErrIndexDamaged", err)
	}
	rep, err := it.s.Check(ctx, CheckOptions{})
	if err != nil || rep.IndexProblems == 0 {
		t.Fatalf("check: %v %+v", err, rep)
	}
	if _, err := it.s.GC(ctx, GCOptions{}); !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("GC after a check found the index inconsistent: %v", err)
	}
	it.s.Close()
	rs, _ := OpenForRepair(ctx, it.dir, it.opts)
	rs.Repair(ctx)
	rs.Close()
	it.open()
	if _, err := it.s.GC(ctx, GCOptions{CompactBelow: 1}); err != nil {
		t.Fatalf("GC after repair: %v", err)
	}
	if bad := it.unreadable(refs); len(bad) != 0 {
		t.Fatalf("%d blobs lost", len(bad))
	}
}

// An index that silently lost entries (as Badger does when it truncates a
// damaged log) must not let compaction drop the records they pointed at: the
// pack holds records nobody accounted for, so it is kept.
func TestCompactionKeepsPacksWithUnaccountedRecords(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	a, b := it.user("A"), it.user("B")
	snA := it.backup(a, journal(t, 1), nil)
	it.backup(b, journal(t, 2), nil)
	// Make some garbage (so compaction wants to rewrite packs) and lose the
	// index entries of A's blobs.
	if err := it.s.DeleteSnapshot(ctx, b, it.s.Snapshots(b)[0].ID); err != nil {
		t.Fatal(err)
	}
	lost := it.refsOf(snA)
	it.s.dbUpdate(func(txn *badger.Txn) error {
		for _, r := range lost {
			txn.Delete(objKey(r))
		}
		return nil
	})
	rep, err := it.s.GC(ctx, GCOptions{CompactBelow: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.PacksKept) == 0 {
		t.Fatalf("compaction removed packs holding records the index lost: %+v", rep)
	}
	if _, err := it.s.GC(ctx, GCOptions{}); !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("GC goes on after finding the index lost entries: %v", err)
	}
	it.s.Close()
	rs, _ := OpenForRepair(ctx, it.dir, it.opts)
	if _, err := rs.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	rs.Close()
	it.open()
	if bad := it.unreadable(lost); len(bad) != 0 {
		t.Fatalf("%d of A's blobs are gone for good", len(bad))
	}
	if _, err := it.s.GC(ctx, GCOptions{CompactBelow: 1}); err != nil {
		t.Fatal(err)
	}
	if bad := it.unreadable(lost); len(bad) != 0 {
		t.Fatalf("%d of A's blobs lost by GC after repair", len(bad))
	}
}

// Uploads that fail after their records are written, and an unclean stop,
// leave records no index entry points at; compaction accounts for them and
// still gives the space back.
func TestCompactionAccountsForOrphans(t *testing.T) {
	ctx := context.Background()
	it := newIT(t)
	u := it.user("A")
	src := journal(t, 1)
	// An upload whose index commit is refused: its pack records are orphans.
	blobs := []blob.Blob{{Ref: blob.Ref{Type: blob.Chunk}, Data: []byte("orphan"), RawLen: 6}}
	blobs[0].ID = blobSum(blobs[0].Data)
	it.s.opts.Hook = func(p string) {
		if p == "put:after-pack-sync" {
			it.s.db.Close() // the index commit fails
		}
	}
	func() {
		defer func() { recover() }()
		it.s.Put(ctx, u, blobs)
	}()
	it.s.opts.Hook = nil
	// Simulate the crash: the store was not closed cleanly.
	it.s.packs.Close()
	it.s.lock.Close()
	it.s = nil
	it.open()
	sn := it.backup(u, src, nil)
	if err := it.s.DeleteSnapshot(ctx, u, sn.ID); err != nil {
		t.Fatal(err)
	}
	it.backup(u, journal(t, 4), nil)
	rep, err := it.s.GC(ctx, GCOptions{CompactBelow: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.PacksKept) != 0 || rep.PacksRemoved == 0 {
		t.Fatalf("compaction did not account for orphans and swept blobs: %+v", rep)
	}
	if rep, err := it.s.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}
}

func blobSum(b []byte) chunk.ID { return chunk.Sum(b) }
