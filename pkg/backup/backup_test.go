package backup_test

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/testkit"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The helpers the library's tests share (internal/testkit).
var (
	openStore = testkit.OpenStore
	addUser   = testkit.AddUser
	run       = testkit.Run
	mustRun   = testkit.MustRun
	writeFile = testkit.WriteFile
)

// paths lists every path in the snapshot tree root.
func paths(t *testing.T, s *store.Store, root chunk.ID) []string {
	t.Helper()
	var out []string
	err := s.Walk(context.Background(), root, func(p string, e *manifest.Entry) error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func restoreLatest(t *testing.T, s *store.Store, u *store.User, want string, skip func(string, bool) bool) {
	t.Helper()
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := s.Restore(context.Background(), sn, out, store.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(want, out, skip); err != nil {
		t.Fatalf("restore differs from the source: %v", err)
	}
}

func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	if len(out) == 0 {
		t.Fatal("no data files generated")
	}
	return out
}

func TestUnchangedRunReadsNothing(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s := openStore(t)
	u := addUser(t, s, "SHC0001")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(1)); err != nil {
		t.Fatal(err)
	}
	cachePath := filepath.Join(t.TempDir(), "cache")
	cache, err := backup.LoadCache(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	var progress int64
	res1 := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude,
		Progress: func(backup.Progress) { progress++ }})
	if res1.BytesRead == 0 || res1.BytesRead != res1.BytesScanned || res1.ChunksNew == 0 || res1.TreesNew == 0 {
		t.Fatalf("first run: %+v", res1)
	}
	if progress != res1.Files {
		t.Fatalf("Progress called %d times for %d files", progress, res1.Files)
	}
	if err := cache.Save(cachePath); err != nil {
		t.Fatal(err)
	}

	// As xo-backup does: a new process loads the cache from disk.
	cache, err = backup.LoadCache(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(cache.Len()) != res1.Files {
		t.Fatalf("cache holds %d files, the run backed up %d", cache.Len(), res1.Files)
	}
	res2 := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})
	if res2.BytesRead != 0 || res2.BytesSent != 0 || res2.ChunksNew != 0 || res2.TreesNew != 0 {
		t.Fatalf("unchanged second run read %d bytes, sent %d bytes, %d chunks, %d trees", res2.BytesRead, res2.BytesSent, res2.ChunksNew, res2.TreesNew)
	}
	if res2.Root != res1.Root || res2.Files != res1.Files || res2.BytesScanned != res1.BytesScanned || res2.ChunksTotal != res1.ChunksTotal {
		t.Fatalf("unchanged second run differs:\n first %+v\nsecond %+v", res1, res2)
	}
	if res2.Snapshot == res1.Snapshot || len(s.Snapshots(u.ID)) != 2 {
		t.Fatalf("the second run did not record its own snapshot")
	}
	restoreLatest(t, s, u, src, backup.JournalExclude)

	// Without a cache every file is read again, but nothing is sent.
	res3 := mustRun(t, s, u, src, backup.Options{Exclude: backup.JournalExclude})
	if res3.BytesRead != res1.BytesRead || res3.ChunksNew != 0 || res3.TreesNew != 0 {
		t.Fatalf("run without cache: %+v", res3)
	}
}

func TestTouchedFileIsReadNotSent(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s := openStore(t)
	u := addUser(t, s, "SHC0002")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(2)); err != nil {
		t.Fatal(err)
	}
	cache := backup.NewCache()
	res1 := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})

	touched := dataFiles(t, src)[0]
	fi, err := os.Stat(touched)
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2027, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := os.Chtimes(touched, mt, mt); err != nil {
		t.Fatal(err)
	}
	var read []string
	var lastRead int64
	res2 := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude,
		Progress: func(p backup.Progress) {
			if p.BytesRead > lastRead {
				read = append(read, p.Path)
			}
			lastRead = p.BytesRead
		}})
	rel := filepath.ToSlash(strings.TrimPrefix(touched, src+string(filepath.Separator)))
	if !slices.Equal(read, []string{rel}) {
		t.Fatalf("files read after touching %s: %q", rel, read)
	}
	if res2.BytesRead != fi.Size() {
		t.Fatalf("after touching one file of %d bytes the run read %d bytes", fi.Size(), res2.BytesRead)
	}
	if res2.ChunksNew != 0 {
		t.Fatalf("touching a file re-sent %d chunks", res2.ChunksNew)
	}
	if res2.TreesNew == 0 || res2.Root == res1.Root {
		t.Fatal("the new mtime is not in the snapshot")
	}
	if res2.BytesScanned != res1.BytesScanned || res2.Files != res1.Files {
		t.Fatalf("second run: %+v", res2)
	}
	e, err := s.Lookup(context.Background(), res2.Root, rel)
	if err != nil {
		t.Fatal(err)
	}
	if e.MTime != mt.UnixNano() {
		t.Fatalf("snapshot mtime %d, want %d", e.MTime, mt.UnixNano())
	}
	restoreLatest(t, s, u, src, backup.JournalExclude)

	// Once recorded, the touched file is cached again.
	res3 := mustRun(t, s, u, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})
	if res3.BytesRead != 0 || res3.BytesSent != 0 {
		t.Fatalf("third run read %d and sent %d bytes", res3.BytesRead, res3.BytesSent)
	}
}

func TestMidFileEditSendsLittle(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s := openStore(t)
	u := addUser(t, s, "SHC0003")
	src := t.TempDir()
	const size = 4 << 20
	content := journalgen.Random(rand.New(rand.NewPCG(7, 8)), size)
	big := filepath.Join(src, "ab", "uid", "data")
	writeFile(t, big, content)
	writeFile(t, filepath.Join(src, "version"), []byte("6"))
	cache := backup.NewCache()
	res1 := mustRun(t, s, u, src, backup.Options{Cache: cache})
	if res1.BytesSent < size || res1.ChunksTotal < 8 {
		t.Fatalf("first run sent %d bytes in %d chunks for a %d-byte random file", res1.BytesSent, res1.ChunksTotal, size)
	}

	// Insert 100 bytes in the middle: content-defined chunking moves only
	// the boundaries next to the edit.
	mid := size / 2
	edited := slices.Concat(content[:mid], []byte(strings.Repeat("turtle! ", 12)+"four"), content[mid:])
	writeFile(t, big, edited)
	res2 := mustRun(t, s, u, src, backup.Options{Cache: cache})
	if res2.BytesRead != int64(len(edited)) {
		t.Fatalf("edited file of %d bytes, read %d", len(edited), res2.BytesRead)
	}
	if res2.ChunksNew == 0 || res2.BytesSent == 0 {
		t.Fatalf("the edit was not sent: %+v", res2)
	}
	if res2.BytesSent*4 >= size {
		t.Fatalf("an edit of 100 bytes sent %d of %d bytes (%d of %d chunks)", res2.BytesSent, size, res2.ChunksNew, res2.ChunksTotal)
	}
	t.Logf("edit sent %d bytes in %d of %d chunks", res2.BytesSent, res2.ChunksNew, res2.ChunksTotal)
	restoreLatest(t, s, u, src, nil)
}

func TestVanishedFiles(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s := openStore(t)
	u := addUser(t, s, "SHC0004")
	src := t.TempDir()
	for _, p := range []string{"a/1", "a/2", "b/1", "c", "d", "e"} {
		writeFile(t, filepath.Join(src, p), []byte("content of "+p))
	}
	// As xo-backup does: each run loads the cache, runs and saves it.
	cachePath := filepath.Join(t.TempDir(), "cache")
	runCached := func() *backup.Result {
		t.Helper()
		cache, err := backup.LoadCache(cachePath)
		if err != nil {
			t.Fatal(err)
		}
		res := mustRun(t, s, u, src, backup.Options{Cache: cache})
		if err := cache.Save(cachePath); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res1 := runCached()
	if res1.Files != 6 {
		t.Fatalf("first run: %d files", res1.Files)
	}

	// Between two runs a file and a directory disappear.
	if err := os.Remove(filepath.Join(src, "c")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(src, "b")); err != nil {
		t.Fatal(err)
	}
	res2 := runCached()
	if got, want := paths(t, s, res2.Root), []string{"a", "a/1", "a/2", "d", "e"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot after removals holds %q, want %q", got, want)
	}
	if res2.Files != 4 || res2.BytesRead != 0 || len(res2.Skipped) != 0 {
		t.Fatalf("second run: %+v", res2)
	}
	restoreLatest(t, s, u, src, nil)
	if c, err := backup.LoadCache(cachePath); err != nil || c.Len() != 4 {
		t.Fatalf("saved cache holds %d files (%v), want the 4 that still exist", c.Len(), err)
	}

	// During a run: once "a/1" is done, "a/2", the directory "b" and the
	// file "e" are deleted, after ReadDir listed them.
	writeFile(t, filepath.Join(src, "b", "1"), []byte("back again"))
	var deleted bool
	res3, err := run(s, u, src, backup.Options{Progress: func(p backup.Progress) {
		if p.Path == "a/1" && !deleted {
			deleted = true
			os.Remove(filepath.Join(src, "a", "2"))
			os.RemoveAll(filepath.Join(src, "b"))
			os.Remove(filepath.Join(src, "e"))
		}
	}})
	if err != nil {
		t.Fatalf("files vanishing during the run made it fail: %v", err)
	}
	if !deleted {
		t.Fatal("progress never reported a/1")
	}
	if got, want := paths(t, s, res3.Root), []string{"a", "a/1", "d"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot holds %q, want %q", got, want)
	}
	if res3.Files != 2 {
		t.Fatalf("third run: %+v", res3)
	}
	restoreLatest(t, s, u, src, nil)
}

// TestCacheReusedAcrossRuns: a program that keeps one Cache for several
// runs (a daemon, a test, an embedding Sugar tool) must not carry files that
// vanished into the saved cache: Save keeps "only the files the last run saw".
func TestCacheReusedAcrossRuns(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s := openStore(t)
	u := addUser(t, s, "SHC0007")
	src := t.TempDir()
	for _, p := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(src, p), []byte("content of "+p))
	}
	cache := backup.NewCache()
	mustRun(t, s, u, src, backup.Options{Cache: cache})
	if err := os.Remove(filepath.Join(src, "b")); err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, s, u, src, backup.Options{Cache: cache})
	if res.Files != 2 || res.BytesRead != 0 {
		t.Fatalf("second run: %+v", res)
	}
	path := filepath.Join(t.TempDir(), "cache")
	if err := cache.Save(path); err != nil {
		t.Fatal(err)
	}
	c, err := backup.LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Fatalf("cache saved after the second run holds %d files; only 2 still exist", c.Len())
	}
}

func TestExcludeIsHonoured(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SHC0005")
	src := t.TempDir()
	for _, p := range []string{"keep/a", "keep/b.log", "secret/x", "secret/sub/y", "z.txt", "index/postlist.DB", "ab/uid/data", "ab/uid/data.tmp"} {
		writeFile(t, filepath.Join(src, p), []byte("data of "+p))
	}
	excluded := func(rel string, isDir bool) bool {
		return rel == "secret" || strings.HasSuffix(rel, ".log") || backup.JournalExclude(rel, isDir)
	}
	asked := map[string]bool{}
	exclude := func(rel string, isDir bool) bool {
		if _, dup := asked[rel]; dup {
			t.Errorf("Exclude asked twice about %q", rel)
		}
		asked[rel] = isDir
		return excluded(rel, isDir)
	}
	res := mustRun(t, s, u, src, backup.Options{Exclude: exclude})
	if got, want := paths(t, s, res.Root), []string{"ab", "ab/uid", "ab/uid/data", "keep", "keep/a", "z.txt"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot holds %q, want %q", got, want)
	}
	if res.Files != 3 || res.BytesScanned != int64(len("data of keep/a")+len("data of z.txt")+len("data of ab/uid/data")) {
		t.Fatalf("excluded files were counted: %+v", res)
	}
	for rel := range asked {
		if strings.HasPrefix(rel, "secret/") || strings.HasPrefix(rel, "index/") {
			t.Errorf("Exclude was asked about %q inside an excluded directory", rel)
		}
	}
	for rel, isDir := range map[string]bool{"keep": true, "keep/a": false, "secret": true, "z.txt": false, "index": true} {
		if got, ok := asked[rel]; !ok || got != isDir {
			t.Errorf("Exclude(%q): asked %v with isDir %v, want isDir %v", rel, ok, got, isDir)
		}
	}
	restoreLatest(t, s, u, src, excluded)
}

func TestServerLostCachedData(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s1 := openStore(t)
	u1 := addUser(t, s1, "SHC0006")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(6)); err != nil {
		t.Fatal(err)
	}
	cache := backup.NewCache()
	first := mustRun(t, s1, u1, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})

	// The laptop now talks to a server that has none of it (rebuilt, or a
	// new school server), with the cache of the old one. The commit is
	// refused (the server does not hold what the cache promised), and Run
	// starts afresh by itself: every file read and sent, one snapshot.
	s2 := openStore(t)
	u2 := addUser(t, s2, "SHC0006")
	res, err := run(s2, u2, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude})
	if err != nil {
		t.Fatalf("unchanged run against an empty server: %v", err)
	}
	if res.BytesRead != res.BytesScanned || res.ChunksNew == 0 || res.BytesRead <= first.BytesRead/2 {
		t.Fatalf("the run after the refused commit did not read and send everything: %+v", res)
	}
	if n := len(s2.Snapshots(u2.ID)); n != 1 {
		t.Fatalf("%d snapshots, want 1", n)
	}
	restoreLatest(t, s2, u2, src, backup.JournalExclude)
	// Same when something changed, so that some trees are sent but the
	// cached files' chunks are not: one more empty server, the cache again.
	s3 := openStore(t)
	u3 := addUser(t, s3, "SHC0006")
	writeFile(t, filepath.Join(src, "ab", "new-entry", "data"), []byte("new work"))
	if _, err := run(s3, u3, src, backup.Options{Cache: cache, Exclude: backup.JournalExclude}); err != nil {
		t.Fatalf("changed run against an empty server: %v", err)
	}
	restoreLatest(t, s3, u3, src, backup.JournalExclude)
	rep, err := s3.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("check after the failed commits: %+v", rep.Problems)
	}
	rep, err = s2.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("check after the failed commits: %+v", rep.Problems)
	}
}

// An unchanged run does not rewrite the cache file; a run that finds a new
// file, loses one or commits other trees does.
func TestCacheSaveSkipsUnchanged(t *testing.T) {
	defer backup.TrustFreshFiles()() // files written a moment ago, cached as if old
	s := openStore(t)
	u := addUser(t, s, "CACHE2")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.txt"), []byte("alpha"))
	writeFile(t, filepath.Join(src, "b.txt"), []byte("beta"))
	path := filepath.Join(t.TempDir(), "cache")
	cache := backup.NewCache()
	mustRun(t, s, u, src, backup.Options{Cache: cache})
	if err := cache.Save(path); err != nil {
		t.Fatal(err)
	}
	saved := func() time.Time {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	old := time.Now().Add(-time.Hour)
	touchBack := func() { os.Chtimes(path, old, old) }
	loaded, err := backup.LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	touchBack()
	mustRun(t, s, u, src, backup.Options{Cache: loaded})
	if err := loaded.Save(path); err != nil {
		t.Fatal(err)
	}
	if saved().After(old.Add(time.Minute)) {
		t.Fatal("an unchanged run rewrote the cache file")
	}
	// A new file: saved. Then a vanished file: saved again.
	for _, change := range []func(){
		func() { writeFile(t, filepath.Join(src, "c.txt"), []byte("gamma")) },
		func() { os.Remove(filepath.Join(src, "a.txt")) },
	} {
		change()
		touchBack()
		mustRun(t, s, u, src, backup.Options{Cache: loaded})
		if err := loaded.Save(path); err != nil {
			t.Fatal(err)
		}
		if !saved().After(old.Add(time.Minute)) {
			t.Fatal("a changed run did not save the cache")
		}
		again, err := backup.LoadCache(path)
		if err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(src)
		if again.Len() != len(ents) {
			t.Fatalf("the saved cache has %d files, the source %d", again.Len(), len(ents))
		}
	}
}

// A backup given the walk EstimateScan made gives the same snapshot as one
// that walks by itself; a file changed after the scan is backed up by the
// next run; a scan of another directory is ignored.
func TestRunWithScan(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SCAN1")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a", "one.txt"), []byte("one"))
	writeFile(t, filepath.Join(src, "a", "b", "two.txt"), []byte("two"))
	writeFile(t, filepath.Join(src, "three.txt"), []byte("three"))
	os.Symlink("three.txt", filepath.Join(src, "link"))
	ctx := context.Background()
	cache := backup.NewCache()

	plain := mustRun(t, s, u, src, backup.Options{})
	_, files, scan, err := backup.EstimateScan(ctx, src, cache, nil)
	if err != nil || files != 3 {
		t.Fatalf("EstimateScan: %d files, %v", files, err)
	}
	scanned := mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan})
	if scanned.Root != plain.Root {
		t.Fatalf("with the scan the root is %s, without %s", scanned.Root, plain.Root)
	}

	// Changed after the scan: this run keeps the old content (as if it had
	// walked a moment earlier), the next one sees the change.
	_, _, scan, _ = backup.EstimateScan(ctx, src, cache, nil)
	time.Sleep(10 * time.Millisecond)
	writeFile(t, filepath.Join(src, "a", "one.txt"), []byte("one, changed"))
	mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan})
	next := mustRun(t, s, u, src, backup.Options{Cache: cache})
	fresh := mustRun(t, s, u, src, backup.Options{})
	if next.Root != fresh.Root {
		t.Fatalf("the run after a stale scan has root %s, a fresh walk %s", next.Root, fresh.Root)
	}

	// A scan of another directory is not used.
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "x.txt"), []byte("x"))
	_, _, otherScan, _ := backup.EstimateScan(ctx, other, nil, nil)
	if r := mustRun(t, s, u, src, backup.Options{Scan: otherScan}); r.Root != fresh.Root {
		t.Fatalf("a scan of another directory changed the snapshot: %s, want %s", r.Root, fresh.Root)
	}
}

// Many small batches: each batch's chunks are copied into memory the next
// batch uses again (the runner's arena). Every upload must carry its own
// bytes (the store re-hashes them) and the restore must equal the source,
// for incompressible chunks (Split lends its read buffer) and compressible
// ones (its compression buffer), and a chunk bigger than a whole batch.
func TestSmallBatchesCarryTheirOwnBytes(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "BATCH01")
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 12 {
		noise := make([]byte, 200<<10+rng.IntN(300<<10))
		for j := range noise {
			noise[j] = byte(rng.Uint32())
		}
		writeFile(t, filepath.Join(src, "noise", strings.Repeat("n", i+1)), noise)
		text := []byte(strings.Repeat("the quick brown fox "+strings.Repeat("x", i), 20000))
		writeFile(t, filepath.Join(src, "text", strings.Repeat("t", i+1)), text)
	}
	res := mustRun(t, s, u, src, backup.Options{BatchBytes: 64 << 10, Workers: 2})
	if res.ChunksNew < 24 {
		t.Fatalf("only %d chunks sent: the test did not make many batches", res.ChunksNew)
	}
	restoreLatest(t, s, u, src, nil)
}

// A scan older than a save: Sugar rewrote an entry's title after the last
// backup (the scan sees the new title, the document unchanged), then saved
// the entry again (a new document and title) before the backup read it.
// Taking the document from the scan's lstat (unchanged: the cache's old
// one) and the title as read would put the new title over the old
// document; the run sees the title changed since the scan and walks the
// Journal again: its snapshot is the fresh walk's.
func TestRunWithAScanOlderThanASave(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SCAN2")
	src := t.TempDir()
	entry := filepath.Join(src, "3f", "3f9c")
	writeFile(t, filepath.Join(entry, "data"), []byte("version 1"))
	writeFile(t, filepath.Join(entry, "metadata", "title"), []byte("Cuento"))
	ctx := context.Background()
	cache := backup.NewCache()
	time.Sleep(20 * time.Millisecond) // not racily clean: the cache keeps what it reads
	mustRun(t, s, u, src, backup.Options{Cache: cache})

	writeFile(t, filepath.Join(entry, "metadata", "title"), []byte("Cuento del río"))
	_, _, scan, err := backup.EstimateScan(ctx, src, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The save, as Sugar makes it: new files renamed into place.
	for name, content := range map[string]string{"data": "version 3, longer", "metadata/title": "Cuento final"} {
		tmp := filepath.Join(entry, "new")
		writeFile(t, tmp, []byte(content))
		if err := os.Rename(tmp, filepath.Join(entry, name)); err != nil {
			t.Fatal(err)
		}
	}
	got := mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan})
	fresh := mustRun(t, s, u, src, backup.Options{})
	if got.Root != fresh.Root {
		t.Fatalf("with a scan older than the save the root is %s, a fresh walk's %s: one save's title over another's document", got.Root, fresh.Root)
	}
}

// A save during the backup of an entry: the backup looked up the entry's
// document (unchanged: the cache's), then Sugar saved the entry (a new
// document and title, renamed into place), then the backup read the new
// title. The entry is looked at again after it was backed up, found
// changed, and backed up again as it is now: the snapshot never holds the
// new title over the old document.
func TestEntrySavedWhileItIsBackedUp(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ENTRY1")
	src := t.TempDir()
	const uid = "3f9c0000-0000-4000-8000-000000000000"
	entry := filepath.Join(src, "3f", uid)
	writeFile(t, filepath.Join(entry, "data"), []byte("version 1"))
	writeFile(t, filepath.Join(entry, "metadata", "title"), []byte("Cuento"))
	cache := backup.NewCache()
	time.Sleep(20 * time.Millisecond) // not racily clean
	mustRun(t, s, u, src, backup.Options{Cache: cache})
	writeFile(t, filepath.Join(entry, "metadata", "title"), []byte("Cuento del río")) // read by the next backup

	saved := false
	save := func(p backup.Progress) {
		if p.Path != "3f/"+uid+"/data" || saved {
			return
		}
		saved = true
		for name, content := range map[string]string{"data": "version 3, longer", "metadata/title": "Cuento final"} {
			tmp := filepath.Join(entry, "new")
			writeFile(t, tmp, []byte(content))
			if err := os.Rename(tmp, filepath.Join(entry, name)); err != nil {
				t.Error(err)
			}
		}
	}
	got := mustRun(t, s, u, src, backup.Options{Cache: cache, Progress: save})
	if !saved {
		t.Fatal("the entry's document was never looked at")
	}
	fresh := mustRun(t, s, u, src, backup.Options{})
	if got.Root != fresh.Root {
		t.Fatalf("an entry saved while it was backed up: root %s, the entry as it is now %s (the new title over the old document)", got.Root, fresh.Root)
	}
	if got.Files != fresh.Files {
		t.Errorf("%d files counted, %d in the entry", got.Files, fresh.Files)
	}
}

// A scan found stale costs one more walk, not a reread of the Journal:
// what the first attempt read is sent before it gives up, so the cache's
// promise holds and the second walk reads only what changed. (The batch
// was dropped: the commit failed for chunks the cache listed, and the
// run started afresh, reading every file.)
func TestStaleScanRereadsOnlyWhatChanged(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SCAN3")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "book.epub"), bytes.Repeat([]byte("a book nobody changes "), 50000))
	// Outside Journal entries (XX/<uid>), which check themselves.
	a, b := filepath.Join(src, "docs", "a"), filepath.Join(src, "notes", "b")
	writeFile(t, filepath.Join(a, "data"), []byte("a, version 1"))
	writeFile(t, filepath.Join(b, "metadata", "title"), []byte("b"))
	cache := backup.NewCache()
	time.Sleep(20 * time.Millisecond)
	mustRun(t, s, u, src, backup.Options{Cache: cache})
	writeFile(t, filepath.Join(a, "data"), []byte("a, version 2"))
	writeFile(t, filepath.Join(b, "metadata", "title"), []byte("b, version 2")) // read by the run...
	time.Sleep(20 * time.Millisecond)                                           // not racily clean: the run caches them
	_, _, scan, err := backup.EstimateScan(context.Background(), src, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(b, "metadata", "new") // ... and changed after the scan
	writeFile(t, tmp, []byte("b, version 3"))
	if err := os.Rename(tmp, filepath.Join(b, "metadata", "title")); err != nil {
		t.Fatal(err)
	}
	got := mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan})
	if got.BytesRead >= 1<<20 {
		t.Fatalf("a stale scan made the run read %d bytes: the unchanged book again", got.BytesRead)
	}
	if fresh := mustRun(t, s, u, src, backup.Options{}); got.Root != fresh.Root {
		t.Fatalf("root %s, the Journal as it is %s", got.Root, fresh.Root)
	}
}

// An entry deleted while it is backed up (its document read, then the
// child deletes it in the Journal) is left out and listed, not committed
// half read.
func TestEntryDeletedWhileItIsBackedUp(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "ENTRY2")
	src := t.TempDir()
	const uid = "3f9c0000-0000-4000-8000-000000000001"
	entry := filepath.Join(src, "3f", uid)
	writeFile(t, filepath.Join(entry, "data"), []byte("a drawing"))
	writeFile(t, filepath.Join(entry, "metadata", "title"), []byte("Dibujo"))
	writeFile(t, filepath.Join(src, "3f", "3f000000-other", "data"), []byte("another"))
	gone := false
	del := func(p backup.Progress) {
		if p.Path == "3f/"+uid+"/data" && !gone {
			gone = true
			if err := os.RemoveAll(entry); err != nil {
				t.Error(err)
			}
		}
	}
	got := mustRun(t, s, u, src, backup.Options{Progress: del})
	if !gone {
		t.Fatal("the entry's document was never read")
	}
	// (The roots differ by the directory's time: the deletion changed it.)
	if fresh := mustRun(t, s, u, src, backup.Options{}); got.Files != fresh.Files {
		t.Fatalf("%d files in the snapshot, %d in the Journal without the deleted entry: the entry was committed half read", got.Files, fresh.Files)
	}
	if !slices.Contains(got.Skipped, "3f/"+uid) {
		t.Errorf("skipped %v: the deleted entry is not named", got.Skipped)
	}
}
