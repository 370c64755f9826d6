package store_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func openStore(t testing.TB, dir string, opts store.Options) *store.Store {
	t.Helper()
	if opts.Reserve == 0 {
		opts.Reserve = -1
	}
	s, err := store.Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addUser(t testing.TB, s *store.Store, serial string) *store.User {
	t.Helper()
	u, err := s.AddUser(context.Background(), store.NewUser{Serial: serial, Nickname: serial, Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func backupDir(t testing.TB, s *store.Store, u *store.User, dir string, cache *backup.Cache) (*backup.Result, *store.Snapshot) {
	t.Helper()
	tg := s.Target(u.ID, store.CommitInfo{Source: dir})
	res, err := backup.Run(context.Background(), dir, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude})
	if err != nil {
		t.Fatal(err)
	}
	return res, tg.Last()
}

func checkClean(t testing.TB, s *store.Store) {
	t.Helper()
	rep, err := s.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("check: %+v", p)
	}
}

func restoreAndCompare(t testing.TB, s *store.Store, sn *store.Snapshot, want string) {
	t.Helper()
	out := t.TempDir()
	if _, err := s.Restore(context.Background(), sn, out, store.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(want, out, backup.JournalExclude); err != nil {
		t.Fatalf("restore of %s differs: %v", sn.ID, err)
	}
}

func dirSize(t testing.TB, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{})
	u := addUser(t, s, "SHC0001")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(1)); err != nil {
		t.Fatal(err)
	}
	os.Symlink("data", filepath.Join(src, "alink"))
	os.WriteFile(filepath.Join(src, "empty"), nil, 0o600)
	// A file read within a tick of the filesystem's clock of its last
	// write is read again next time (it could change unseen): the Journal
	// was not written a moment before its backup.
	time.Sleep(30 * time.Millisecond)
	cache := backup.NewCache()
	res1, sn1 := backupDir(t, s, u, src, cache)
	if res1.ChunksNew == 0 || res1.BytesRead == 0 {
		t.Fatalf("first backup sent nothing: %+v", res1)
	}
	restoreAndCompare(t, s, sn1, src)

	// Unchanged: nothing read, nothing sent, yet a new snapshot.
	res2, sn2 := backupDir(t, s, u, src, cache)
	if res2.BytesRead != 0 || res2.BytesSent != 0 || res2.ChunksNew != 0 {
		t.Fatalf("unchanged re-backup read %d and sent %d bytes", res2.BytesRead, res2.BytesSent)
	}
	if sn2.ID == sn1.ID || sn2.Root != sn1.Root {
		t.Fatalf("unchanged re-backup: got %s root %s, first %s root %s", sn2.ID, sn2.Root, sn1.ID, sn1.Root)
	}

	// A day of change: only a little is sent.
	if err := journalgen.Mutate(src, 1, 1); err != nil {
		t.Fatal(err)
	}
	res3, sn3 := backupDir(t, s, u, src, cache)
	if res3.BytesSent == 0 || res3.BytesSent > res1.BytesSent/3 {
		t.Fatalf("after a small edit sent %d bytes (first backup %d)", res3.BytesSent, res1.BytesSent)
	}
	restoreAndCompare(t, s, sn3, src)
	if got := len(s.Snapshots(u.ID)); got != 3 {
		t.Fatalf("%d snapshots, want 3", got)
	}
	if sn3.Files != res3.Files || sn3.Size != res3.BytesScanned {
		t.Fatalf("snapshot stats %d files %d bytes, backup saw %d files %d bytes", sn3.Files, sn3.Size, res3.Files, res3.BytesScanned)
	}
	checkClean(t, s)

	// Deleting the snapshots releases usage; the rest still restores.
	before, _ := s.Usage(ctx, u.ID)
	if err := s.DeleteSnapshot(ctx, u.ID, sn1.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, u.ID, sn2.ID); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Usage(ctx, u.ID)
	if after.Bytes >= before.Bytes {
		t.Fatalf("usage %d after deleting snapshots, %d before", after.Bytes, before.Bytes)
	}
	checkClean(t, s)
	restoreAndCompare(t, s, sn3, src)
}

func TestCrossUserDedupIsPrivate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	a, b := addUser(t, s, "SHCA"), addUser(t, s, "SHCB")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(7)); err != nil {
		t.Fatal(err)
	}
	_, snA := backupDir(t, s, a, src, nil)
	packsAfterA := dirSize(t, filepath.Join(dir, "packs"))

	// B asks about a chunk only A has, and a chunk nobody has: same answer.
	var shared chunk.ID
	s.Walk(ctx, snA.Root, func(p string, e *manifest.Entry) error {
		if e.Type == manifest.File && len(e.Chunks) > 0 {
			shared = e.Chunks[0]
		}
		return nil
	})
	never := chunk.Sum([]byte("nobody has this"))
	need, err := s.Need(ctx, b.ID, []blob.Ref{{Type: blob.Chunk, ID: shared}, {Type: blob.Chunk, ID: never}})
	if err != nil {
		t.Fatal(err)
	}
	if !need[0] || !need[1] {
		t.Fatalf("Need for B = %v; a chunk only A holds must look needed", need)
	}
	if need, _ := s.Need(ctx, a.ID, []blob.Ref{{Type: blob.Chunk, ID: shared}}); need[0] {
		t.Fatal("A is asked to upload a chunk A holds")
	}

	// B backs up the same files: it sends everything, the disk barely grows.
	resB, snB := backupDir(t, s, b, src, nil)
	if resB.ChunksNew == 0 {
		t.Fatal("B was told it had chunks it never uploaded")
	}
	grown := dirSize(t, filepath.Join(dir, "packs")) - packsAfterA
	if grown > packsAfterA/20 {
		t.Fatalf("packs grew by %d bytes for identical data (A stored %d)", grown, packsAfterA)
	}
	info, err := s.Stat(ctx, blob.Ref{Type: blob.Chunk, ID: shared})
	if err != nil || info.Owners != 2 {
		t.Fatalf("shared chunk: %+v %v, want 2 owners", info, err)
	}
	ua, _ := s.Usage(ctx, a.ID)
	ub, _ := s.Usage(ctx, b.ID)
	if ua != ub {
		t.Fatalf("usage differs for identical data: A %+v, B %+v", ua, ub)
	}
	restoreAndCompare(t, s, snB, src)
	checkClean(t, s)
}

// uploadTree encodes and uploads a tree as user u.
func uploadTree(t *testing.T, s *store.Store, u store.UserID, tr *manifest.Tree) chunk.ID {
	t.Helper()
	data, err := manifest.Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	id := chunk.Sum(data)
	if err := s.Put(context.Background(), u, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: id}, Data: data, RawLen: len(data)}}); err != nil {
		t.Fatal(err)
	}
	return id
}

func putChunk(s *store.Store, u store.UserID, data []byte) (chunk.ID, error) {
	id := chunk.Sum(data)
	return id, s.Put(context.Background(), u, []blob.Blob{{Ref: blob.Ref{Type: blob.Chunk, ID: id}, Data: data, RawLen: len(data)}})
}

func TestCommitRequiresOwnChunks(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{})
	a, b := addUser(t, s, "SHCA"), addUser(t, s, "SHCB")
	secret := []byte("A's homework, which B must not be able to claim")
	id, err := putChunk(s, a.ID, secret)
	if err != nil {
		t.Fatal(err)
	}
	// B builds a manifest naming A's chunk without uploading it.
	root := uploadTree(t, s, b.ID, &manifest.Tree{Entries: []manifest.Entry{
		{Name: "stolen", Type: manifest.File, Mode: 0o644, Size: int64(len(secret)), Chunks: []chunk.ID{id}}}})
	_, err = s.Commit(ctx, b.ID, root, store.CommitInfo{})
	if !errors.Is(err, store.ErrNotOwned) {
		t.Fatalf("commit referencing another user's chunk: %v, want ErrNotOwned", err)
	}
	if len(s.Snapshots(b.ID)) != 0 {
		t.Fatal("a snapshot was recorded")
	}
	// A manifest that lies about a file's size is refused too.
	lie := uploadTree(t, s, a.ID, &manifest.Tree{Entries: []manifest.Entry{
		{Name: "f", Type: manifest.File, Mode: 0o644, Size: 1 << 30, Chunks: []chunk.ID{id}}}})
	if _, err := s.Commit(ctx, a.ID, lie, store.CommitInfo{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("commit with a wrong size: %v, want ErrInvalid", err)
	}
	// Once B uploads the bytes itself, the same manifest commits.
	if _, err := putChunk(s, b.ID, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, b.ID, root, store.CommitInfo{}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, s)
}

func TestHashMismatchRejected(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{})
	u := addUser(t, s, "SHC1")
	good := []byte("the real content")
	evil := []byte("something else entirely")
	id := chunk.Sum(good)
	err := s.Put(ctx, u.ID, []blob.Blob{
		{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum([]byte("x"))}, Data: []byte("x"), RawLen: 1},
		{Ref: blob.Ref{Type: blob.Chunk, ID: id}, Data: evil, RawLen: len(evil)},
	})
	if !errors.Is(err, store.ErrHashMismatch) {
		t.Fatalf("Put with wrong hash: %v", err)
	}
	for _, r := range []blob.Ref{{Type: blob.Chunk, ID: id}, {Type: blob.Chunk, ID: chunk.Sum([]byte("x"))}} {
		if _, err := s.Stat(ctx, r); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s is in the index after a rejected batch: %v", r, err)
		}
	}
	// A compressed blob that lies about its raw length, and a bogus tree.
	if err := s.Put(ctx, u.ID, []blob.Blob{{Ref: blob.Ref{Type: blob.Chunk, ID: id}, Data: good, RawLen: 3}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("wrong RawLen: %v", err)
	}
	bogus := []byte("XST1 not really a tree")
	if err := s.Put(ctx, u.ID, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(bogus)}, Data: bogus, RawLen: len(bogus)}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bogus tree: %v", err)
	}
	if u, _ := s.Usage(ctx, u.ID); u.Bytes != 0 {
		t.Fatalf("rejected uploads charged %d bytes", u.Bytes)
	}
}

func TestRestoreStaysInsideTarget(t *testing.T) {
	ctx := context.Background()
	// Names that could escape never get into a manifest.
	for _, name := range []string{"../x", "/etc/passwd", "a/b", "..", ".", "", "x\x00y"} {
		tr := &manifest.Tree{Entries: []manifest.Entry{{Name: name, Type: manifest.Symlink, Target: "t"}}}
		if _, err := manifest.Encode(tr); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("name %q accepted", name)
		}
	}
	s := openStore(t, t.TempDir(), store.Options{})
	u := addUser(t, s, "SHC1")
	content := []byte("secret")
	cid, err := putChunk(s, u.ID, content)
	if err != nil {
		t.Fatal(err)
	}
	// A snapshot with a symlink that points outside, and a directory "docs"
	// holding a file.
	docs := uploadTree(t, s, u.ID, &manifest.Tree{Entries: []manifest.Entry{
		{Name: "passwd", Type: manifest.File, Mode: 0o644, Size: int64(len(content)), Chunks: []chunk.ID{cid}}}})
	outside := t.TempDir()
	root := uploadTree(t, s, u.ID, &manifest.Tree{Entries: []manifest.Entry{
		{Name: "docs", Type: manifest.Dir, Mode: 0o755, Subtree: docs},
		{Name: "escape", Type: manifest.Symlink, Mode: 0o777, Target: outside},
	}})
	sn, err := s.Commit(ctx, u.ID, root, store.CommitInfo{})
	if err != nil {
		t.Fatal(err)
	}
	// The target already has "docs" as a symlink to outside: the restore
	// must refuse to follow it.
	target := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(target, "docs")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Restore(ctx, sn, target, store.RestoreOptions{Overwrite: true})
	if err == nil {
		t.Fatal("restore through an escaping symlink succeeded")
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("restore wrote outside its target: %v", ents)
	}
	// Into a clean target it restores, and the symlink is just a symlink.
	clean := t.TempDir()
	if _, err := s.Restore(ctx, sn, clean, store.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(clean, "docs", "passwd")); err != nil || string(b) != "secret" {
		t.Fatalf("restored %q %v", b, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("restore wrote outside its target: %v", ents)
	}
}

func TestRepairRebuildsIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, dir, store.Options{Reserve: -1, PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srcs := map[string]string{}
	want := map[store.SnapshotID]string{}
	var usages []store.Usage
	for i, serial := range []string{"SHC1", "SHC2", "SHC3"} {
		u := addUser(t, s, serial)
		src := t.TempDir()
		journalgen.Generate(src, journalgen.Small(uint64(i)))
		srcs[serial] = src
		_, sn := backupDir(t, s, u, src, nil)
		restored := t.TempDir()
		s.Restore(ctx, sn, restored, store.RestoreOptions{})
		want[sn.ID] = restored
		journalgen.Mutate(src, uint64(i), 1)
		_, sn = backupDir(t, s, u, src, nil)
		want[sn.ID] = src
		us, _ := s.Usage(ctx, u.ID)
		usages = append(usages, us)
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, dir, store.Options{}); !errors.Is(err, store.ErrIndexDamaged) {
		t.Fatalf("a store whose index was deleted opened with %v, not as damaged", err)
	}
	s, err = store.OpenForRepair(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rep, err := s.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != len(want) || rep.Blobs == 0 {
		t.Fatalf("repair: %+v", rep)
	}
	checkClean(t, s)
	for i, u := range s.Users() {
		if us, _ := s.Usage(ctx, u.ID); us != usages[i] {
			t.Errorf("%s usage after repair %+v, before %+v", u.Serial, us, usages[i])
		}
		for _, sn := range s.Snapshots(u.ID) {
			restoreAndCompare(t, s, sn, want[sn.ID])
			delete(want, sn.ID)
		}
	}
	if len(want) != 0 {
		t.Fatalf("snapshots lost by repair: %v", want)
	}
}

func TestParamsAreFixedAtCreation(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	s.Close()
	p := chunk.DefaultParams()
	p.MaxSize *= 2
	if _, err := store.Open(context.Background(), dir, store.Options{Params: p, Reserve: -1}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("reopen with other chunker params: %v", err)
	}
}

func TestStorageFullReserve(t *testing.T) {
	s := openStore(t, t.TempDir(), store.Options{Reserve: 1 << 62})
	u := addUser(t, s, "SHC1")
	_, err := putChunk(s, u.ID, []byte("anything"))
	if !errors.Is(err, store.ErrStorageFull) {
		t.Fatalf("put below the reserve: %v", err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir, store.Options{})
	if _, err := store.Open(context.Background(), dir, store.Options{}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

// A read-only open of a store another process has open for writing (the
// daemon's, while staff reach the wrong admin socket) says the store is in
// use, not that its index is damaged; read-only opens share a stopped store.
func TestReadOnlyOpenOfAnOpenStoreIsLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	_, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
	if !errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrIndexDamaged) {
		t.Fatalf("read-only open of an open store: %v", err)
	}
	s.Close()
	r1, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("second read-only open: %v", err)
	}
	r2.Close()
	if _, err := store.Open(context.Background(), dir, store.Options{}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("open for writing while a reader has it: %v", err)
	}
}

func TestUnapprovedAndRevokedCannotWrite(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{})
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC9"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := putChunk(s, u.ID, []byte("x")); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("unapproved put: %v", err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Approved = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := putChunk(s, u.ID, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Revoked = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := putChunk(s, u.ID, []byte("y")); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("revoked put: %v", err)
	}
}

var _ = time.Second
