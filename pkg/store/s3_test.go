package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// The store's behaviour on an object store, against a real S3 server
// (versitygw on loopback, see internal/s3test).

func packObjects(objs map[string]int64) (n int, bytes int64) {
	for name, size := range objs {
		if strings.HasPrefix(name, "packs/") && strings.HasSuffix(name, ".pack") {
			n++
			bytes += size
		}
	}
	return n, bytes
}

func localPacks(t testing.TB, dir string) int {
	n := 0
	filepath.Walk(filepath.Join(dir, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".pack") {
			n++
		}
		return nil
	})
	return n
}

func TestS3RoundTripAndRebuildFromBucket(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	opts := store.Options{PackSize: 256 << 10, Remote: srv.Remote(t, "school1")}
	s := openStore(t, dir, opts)
	u := addUser(t, s, "SHC0001")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(1)); err != nil {
		t.Fatal(err)
	}
	cache := backup.NewCache()
	_, sn1 := backupDir(t, s, u, src, cache)
	// Acknowledged: every pack is in the bucket, none is left staged.
	if n := localPacks(t, dir); n != 0 {
		t.Fatalf("%d packs still staged locally after the commit", n)
	}
	n, size := packObjects(srv.Objects(t, "school1/"))
	if n < 1 || size < 100<<10 {
		t.Fatalf("bucket holds %d packs, %d bytes", n, size)
	}
	restoreAndCompare(t, s, sn1, src)
	journalgen.Mutate(src, 1, 1)
	_, sn2 := backupDir(t, s, u, src, cache)
	restoreAndCompare(t, s, sn2, src)
	checkClean(t, s)
	sp, err := s.Space()
	if err != nil || sp.PackBytes == 0 {
		t.Fatalf("space %+v %v", sp, err)
	}
	s.Close()

	// The school server's disk is lost: a new directory and the bucket.
	dir2 := t.TempDir()
	s2, err := store.OpenForRepair(ctx, dir2, store.Options{Reserve: -1, Remote: srv.Remote(t, "school1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	rep, err := s2.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 2 || rep.Blobs == 0 || rep.Damaged != 0 {
		t.Fatalf("repair from the bucket: %+v", rep)
	}
	checkClean(t, s2)
	u2, err := s2.UserBySerial("SHC0001")
	if err != nil {
		t.Fatal(err)
	}
	snaps := s2.Snapshots(u2.ID)
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots after the rebuild", len(snaps))
	}
	restoreAndCompare(t, s2, snaps[1], src)
}

func TestS3RepairAfterLosingTheIndex(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{PackSize: 128 << 10, Remote: srv.Remote(t, "")})
	u := addUser(t, s, "SHC1")
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(2))
	_, sn := backupDir(t, s, u, src, nil)
	before, _ := s.Usage(ctx, u.ID)
	s.Close()
	os.RemoveAll(filepath.Join(dir, "index"))
	s, err := store.OpenForRepair(ctx, dir, store.Options{Remote: srv.Remote(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	checkClean(t, s)
	if after, _ := s.Usage(ctx, u.ID); after != before {
		t.Fatalf("usage after repair %+v, before %+v", after, before)
	}
	restoreAndCompare(t, s, sn, src)
}

func TestS3GCGivesSpaceBackInTheBucket(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{PackSize: 128 << 10, Remote: srv.Remote(t, "p")})
	u := addUser(t, s, "SHC1")
	var snaps []*store.Snapshot
	var srcs []string
	for i := range 3 {
		src := t.TempDir()
		journalgen.Generate(src, journalgen.Small(uint64(10+i)))
		_, sn := backupDir(t, s, u, src, nil)
		snaps, srcs = append(snaps, sn), append(srcs, src)
	}
	_, full := packObjects(srv.Objects(t, "p/"))
	for _, sn := range snaps[:2] {
		if err := s.DeleteSnapshot(ctx, u.ID, sn.ID); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.GC(ctx, store.GCOptions{CompactBelow: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, after := packObjects(srv.Objects(t, "p/"))
	if rep.PacksRemoved == 0 || after > full/2 {
		t.Fatalf("GC removed %d packs; the bucket went from %d to %d bytes", rep.PacksRemoved, full, after)
	}
	if n := localPacks(t, dir); n != 0 {
		t.Fatalf("%d packs left staged after GC", n)
	}
	checkClean(t, s)
	restoreAndCompare(t, s, snaps[2], srcs[2])
	// A second GC finds nothing more to do (no churn of small packs).
	rep2, err := s.GC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.PacksRewritten > 1 {
		t.Fatalf("second GC rewrote %d packs", rep2.PacksRewritten)
	}
	s.Close()
	s = openStore(t, dir, store.Options{Remote: srv.Remote(t, "p")})
	checkClean(t, s)
	restoreAndCompare(t, s, snaps[2], srcs[2])
}

// Faults of the object store surface as errors (nothing acknowledged that
// is not stored), transient ones are retried, and the store is whole after.
func TestS3FaultsAreErrorsOrRetried(t *testing.T) {
	srv := s3test.Start(t)
	px := srv.Proxy(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfg := srv.Config(px.Addr, "f")
	cfg.Retries = 3
	r, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, store.Options{PackSize: 128 << 10, Remote: r})
	u := addUser(t, s, "SHC1")
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(3))
	cache := backup.NewCache()

	// Transient faults (a few of each kind) are retried: the backup succeeds.
	for _, f := range []s3test.Fault{s3test.SlowDown, s3test.Error500, s3test.Drop, s3test.Truncate} {
		px.Set(f, 2, "")
		journalgen.Mutate(src, 3, int(f))
		_, sn := backupDir(t, s, u, src, cache)
		restoreAndCompare(t, s, sn, src)
		if px.Faults() == 0 {
			t.Fatalf("fault %d never injected", f)
		}
	}
	px.Clear()

	// The object store refuses every write: the commit fails, nothing is
	// acknowledged, and after it recovers the next backup goes through.
	journalgen.Mutate(src, 3, 9)
	before := len(s.Snapshots(u.ID))
	px.Set(s3test.SlowDown, -1, "PUT")
	tg := s.Target(u.ID, store.CommitInfo{})
	_, err = backup.Run(ctx, src, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude})
	if err == nil {
		t.Fatal("backup acknowledged while the object store refused every upload")
	}
	if got := len(s.Snapshots(u.ID)); got != before {
		t.Fatalf("%d snapshots after a failed commit, %d before", got, before)
	}
	// Wrong credentials: an error that says what to fix, not retried.
	px.Set(s3test.Deny, -1, "")
	tg = s.Target(u.ID, store.CommitInfo{})
	_, err = backup.Run(ctx, src, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude})
	if err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("denied: %v", err)
	}
	px.Clear()
	_, sn := backupDir(t, s, u, src, cache)
	restoreAndCompare(t, s, sn, src)
	checkClean(t, s)

	// Reads: a failing object store is an error, never damage.
	s.Close()
	s = openStore(t, dir, store.Options{Remote: r})
	sn, _ = s.Snapshot(u.ID, sn.ID)
	px.Set(s3test.Error500, -1, "GET")
	_, err = s.Restore(ctx, sn, t.TempDir(), store.RestoreOptions{})
	px.Clear()
	if err == nil {
		t.Fatal("restore succeeded while every read failed")
	}
	if errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("a failing object store was taken for damage: %v", err)
	}
	if lost, _ := s.Damaged(ctx); len(lost) != 0 {
		t.Fatalf("%d blobs marked damaged by read errors", len(lost))
	}
	restoreAndCompare(t, s, sn, src)
	checkClean(t, s)
}

func TestS3MissingBucketSaysWhatToFix(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Config(srv.Addr, "")
	cfg.Bucket = "no-such-bucket"
	r, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing bucket: %v", err)
	}
	_, err = store.Open(context.Background(), t.TempDir(), store.Options{Reserve: -1, Remote: r})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open on a missing bucket: %v", err)
	}
}

func TestS3MigrateBothWays(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{PackSize: 128 << 10})
	u := addUser(t, s, "SHC1")
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(4))
	_, sn := backupDir(t, s, u, src, nil)
	s.Close()
	packs := localPacks(t, dir)

	r := srv.Remote(t, "m")
	rep, err := store.MigrateToRemote(ctx, dir, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Packs != packs || localPacks(t, dir) != 0 || rep.Meta < 3 {
		t.Fatalf("migrate to s3: %+v, %d packs before, %d left", rep, packs, localPacks(t, dir))
	}
	// Resuming a finished migration moves nothing.
	if rep, err := store.MigrateToRemote(ctx, dir, r, nil); err != nil || rep.Packs != 0 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
	s = openStore(t, dir, store.Options{Remote: r})
	checkClean(t, s)
	restoreAndCompare(t, s, sn, src)
	st, err := s.RemoteStatus(ctx)
	if err != nil || st.Packs != packs {
		t.Fatalf("status %+v %v", st, err)
	}
	journalgen.Mutate(src, 4, 1)
	_, sn = backupDir(t, s, u, src, nil)
	s.Close()

	rep, err = store.MigrateToLocal(ctx, dir, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := packObjects(srv.Objects(t, "m/")); n != 0 || rep.Packs < packs {
		t.Fatalf("migrate to local: %+v, %d packs left in the bucket", rep, n)
	}
	s = openStore(t, dir, store.Options{})
	checkClean(t, s)
	restoreAndCompare(t, s, sn, src)
}

func TestS3RefusesABucketOfAnotherStore(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	a := openStore(t, t.TempDir(), store.Options{Remote: srv.Remote(t, "shared")})
	addUser(t, a, "SHC1")
	a.Close()
	dirB := t.TempDir()
	b := openStore(t, dirB, store.Options{})
	addUser(t, b, "SHC2")
	b.Close()
	_, err := store.Open(ctx, dirB, store.Options{Reserve: -1, Remote: srv.Remote(t, "shared")})
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "another store") {
		t.Fatalf("open on another store's bucket: %v", err)
	}
	if _, err := store.MigrateToRemote(ctx, dirB, srv.Remote(t, "shared"), nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("migrate into another store's bucket: %v", err)
	}
	// Store A is untouched.
	a = openStore(t, t.TempDir(), store.Options{Remote: srv.Remote(t, "shared")})
	if _, err := a.UserBySerial("SHC1"); err != nil {
		t.Fatal(err)
	}
}

// The nightly scrub reads every pack back from the bucket and finds a
// record damaged in the bucket itself.
func TestS3ScrubFindsDamageInTheBucket(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{Remote: srv.Remote(t, "scrub")})
	u := addUser(t, s, "SHC1")
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(6))
	backupDir(t, s, u, src, nil)
	rep, err := s.Scrub(ctx, store.ScrubOptions{All: true})
	if err != nil || rep.Blobs == 0 || len(rep.Damaged) != 0 {
		t.Fatalf("scrub of a whole store: %+v %v", rep, err)
	}
	s.Close()
	// Flip a byte in the middle of a pack object, behind the store's back.
	var name string
	for n := range srv.Objects(t, "scrub/") {
		if strings.HasSuffix(n, ".pack") {
			name = n
		}
	}
	path := filepath.Join(srv.Dir, srv.Bucket, "scrub", filepath.FromSlash(name))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, s.Dir(), store.Options{Remote: srv.Remote(t, "scrub")})
	rep, err = s.Scrub(ctx, store.ScrubOptions{All: true})
	if err != nil || len(rep.Damaged) != 1 {
		t.Fatalf("scrub after a flip in the bucket: %+v %v", rep, err)
	}
}

// laggingRemote's listing leaves out one object, as an eventually
// consistent listing may leave out the newest.
type laggingRemote struct {
	store.Remote
	hide string
}

func (l *laggingRemote) List(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	objs, err := l.Remote.List(ctx, prefix)
	out := objs[:0]
	for _, o := range objs {
		if o.Name != l.hide {
			out = append(out, o)
		}
	}
	return out, err
}

// A store rebuilt from the bucket while the listing lags never writes a
// new pack over the object the listing left out.
func TestS3LaggingListingNeverOverwrites(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{Remote: srv.Remote(t, "lag")})
	u := addUser(t, s, "SHC1")
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(7))
	_, sn := backupDir(t, s, u, src, nil)
	s.Close()
	var newest string
	for n := range srv.Objects(t, "lag/") {
		if strings.HasSuffix(n, ".pack") && n > newest {
			newest = n
		}
	}
	before := srv.Objects(t, "lag/")[newest]
	lag := &laggingRemote{Remote: srv.Remote(t, "lag"), hide: newest}
	dir := t.TempDir()
	s2, err := store.OpenForRepair(ctx, dir, store.Options{Reserve: -1, Remote: lag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	journalgen.Mutate(src, 7, 1)
	u2, _ := s2.UserBySerial("SHC1")
	backupDir(t, s2, u2, src, nil)
	s2.Close()
	if after := srv.Objects(t, "lag/")[newest]; after != before {
		t.Fatalf("%s was replaced: %d bytes, %d before", newest, after, before)
	}
	// With the whole listing, a repair finds every snapshot whole.
	s3 := openStore(t, dir, store.Options{Remote: srv.Remote(t, "lag")})
	if _, err := s3.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	checkClean(t, s3)
	restoreAndCompare(t, s3, sn, func() string {
		d := t.TempDir()
		journalgen.Generate(d, journalgen.Small(7))
		return d
	}())
}
