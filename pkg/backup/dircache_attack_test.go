package backup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// rawDir is a directory record of a version 2 cache file, as the tests
// below take one apart and put it together again (a damaged or hand-made
// cache file).
type rawDir struct {
	rel                     string
	size, mtime, ctime, ino uint64
	tree                    [32]byte
	names, excluded         []string
}

// rawCacheFile is a version 2 cache file: everything before the directory
// records as it is, then the records.
type rawCacheFile struct {
	prefix []byte
	dirs   []rawDir
}

func parseCacheFile(t *testing.T, data []byte) *rawCacheFile {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("XSCACHE2")) {
		t.Fatalf("not a version 2 cache file")
	}
	off := 8
	uv := func() uint64 {
		v, n := binary.Uvarint(data[off:])
		if n <= 0 {
			t.Fatalf("bad varint at %d", off)
		}
		off += n
		return v
	}
	str := func(n uint64) string {
		s := string(data[off : off+int(n)])
		off += int(n)
		return s
	}
	off += 32 * int(uv())
	nf := uv()
	for range nf {
		var v [6]uint64
		for j := range v {
			v[j] = uv()
		}
		str(v[0])
		uv()
		off += 32 * int(v[5])
	}
	f := &rawCacheFile{prefix: slices.Clone(data[:off])}
	nd := uv()
	for range nd {
		var d rawDir
		d.rel = str(uv())
		d.size, d.mtime, d.ctime, d.ino = uv(), uv(), uv(), uv()
		nn, ne := uv(), uv()
		copy(d.tree[:], data[off:off+32])
		off += 32
		for range nn {
			d.names = append(d.names, str(uv()))
		}
		for range ne {
			d.excluded = append(d.excluded, str(uv()))
		}
		f.dirs = append(f.dirs, d)
	}
	if off != len(data) {
		t.Fatalf("%d trailing bytes", len(data)-off)
	}
	return f
}

func (f *rawCacheFile) encode() []byte {
	b := slices.Clone(f.prefix)
	b = binary.AppendUvarint(b, uint64(len(f.dirs)))
	for _, d := range f.dirs {
		b = binary.AppendUvarint(b, uint64(len(d.rel)))
		b = append(b, d.rel...)
		for _, v := range []uint64{d.size, d.mtime, d.ctime, d.ino, uint64(len(d.names)), uint64(len(d.excluded))} {
			b = binary.AppendUvarint(b, v)
		}
		b = append(b, d.tree[:]...)
		for _, n := range slices.Concat(d.names, d.excluded) {
			b = binary.AppendUvarint(b, uint64(len(n)))
			b = append(b, n...)
		}
	}
	return b
}

func (f *rawCacheFile) dir(t *testing.T, rel string) *rawDir {
	t.Helper()
	for i := range f.dirs {
		if f.dirs[i].rel == rel {
			return &f.dirs[i]
		}
	}
	t.Fatalf("no record of directory %q in the cache file", rel)
	return nil
}

// saveAndEdit saves cache, lets edit change the directory records of the
// file and loads it again (nil if the damaged file is refused).
func saveAndEdit(t *testing.T, cache *backup.Cache, edit func(f *rawCacheFile)) *backup.Cache {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache")
	if err := cache.Save(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := parseCacheFile(t, data)
	if !bytes.Equal(f.encode(), data) {
		t.Fatal("the test's cache file encoder does not write what Save writes")
	}
	edit(f)
	if err := os.WriteFile(path, f.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := backup.LoadCache(path)
	if err != nil {
		return nil
	}
	return c
}

// TestDirCacheAbortedRunLeavesNoStaleTree: a run that stops (cancelled,
// the network gone, a read error) after it recorded a changed file but
// before it recorded that file's directory must not leave the directory's
// old record behind for the next run of the same Cache: the directory's
// lstat did not change (a file written in place changes only its own),
// its names did not, and the file now hits the cache, so the old tree -
// holding the file's old content - would be taken again, for good.
func TestDirCacheAbortedRunLeavesNoStaleTree(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRA1")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "d", "f"), []byte("version one"))
	writeFile(t, filepath.Join(src, "d", "z", "g"), []byte("below"))
	settle()
	cache := backup.NewCache()
	mustRun(t, s, u, src, backup.Options{Cache: cache})

	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("version two, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	settle()
	cancelledRunThenFresh(t, s, u, src, cache, "d/f") // d/z is not reached
}

// TestDirCacheAbortedRunAfterSubdirectory: the same with a subdirectory
// whose own record changed (its mode, which only its parent's tree holds)
// in the run that stopped before its parent was recorded.
func TestDirCacheAbortedRunAfterSubdirectory(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRA2")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "d", "sub", "f"), []byte("one"))
	writeFile(t, filepath.Join(src, "d", "zz", "g"), []byte("two"))
	settle()
	cache := backup.NewCache()
	mustRun(t, s, u, src, backup.Options{Cache: cache})

	if err := os.Chmod(filepath.Join(src, "d", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	settle()
	cancelledRunThenFresh(t, s, u, src, cache, "d/sub/f") // d/sub is recorded, d/zz and d are not
}

// cancelledRunThenFresh runs a backup with cache that is cancelled once it
// has done the file at, then checks that the next run with the same cache
// makes the snapshot a walk without any cache makes.
func cancelledRunThenFresh(t *testing.T, s *store.Store, u *store.User, src string, cache *backup.Cache, at string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{Source: src}), backup.Options{Params: s.Params(), Cache: cache,
		Progress: func(p backup.Progress) {
			if p.Path == at {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	got := mustRun(t, s, u, src, backup.Options{Cache: cache})
	sameAsFresh(t, s, u, src, got, nil, "after a cancelled run")
}

// TestDirCacheFlippedNameLosesNoFile: one flipped bit in a name of a
// directory record (a failing disk; the record's lstat still matches)
// must not drop the real entry from this and every later snapshot: the
// scan takes the names from the cache, and a name that is not there any
// more looks like a file that vanished during the run, and one that
// duplicates its neighbour hides the neighbour (and its changes).
func TestDirCacheFlippedNameLosesNoFile(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRA3")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "sub", "a1"), []byte("first"))
	writeFile(t, filepath.Join(src, "sub", "a3"), []byte("third, longer"))
	writeFile(t, filepath.Join(src, "sub", "victim"), []byte("precious work"))
	settle()
	cache := backup.NewCache()
	cachedRun(t, s, u, src, cache, nil)

	flips := map[string]func(names []string){
		"victim -> wictim": func(names []string) { names[2] = "wictim" },     // sorted, not there
		"a3 -> a1":         func(names []string) { names[1] = "a1" },         // '3' ^ 2: a duplicate
		"a1 -> a0":         func(names []string) { names[0] = "a0" },         // '1' ^ 1
		"victim -> vicvim": func(names []string) { names[2] = "vicvim" },     // still last
		"a1 -> q1":         func(names []string) { names[0] = "q1" },         // out of order
		"victim -> vict":   func(names []string) { names[2] = names[2][:4] }, // a shorter name
	}
	for what, flip := range flips {
		c := saveAndEdit(t, cache, func(f *rawCacheFile) {
			d := f.dir(t, "sub")
			if !slices.Equal(d.names, []string{"a1", "a3", "victim"}) {
				t.Fatalf("record of sub: %q", d.names)
			}
			flip(d.names)
		})
		if c == nil {
			continue // refused as damaged: the next run reads everything
		}
		// a3 written in place: its directory's lstat does not change.
		if err := os.WriteFile(filepath.Join(src, "sub", "a3"), []byte("third, rewritten for "+what), 0o644); err != nil {
			t.Fatal(err)
		}
		settle()
		for i := range 2 { // and the next night
			res, err := run(s, u, src, backup.Options{Cache: c, Scan: mustScan(t, src, c, nil)})
			if err != nil {
				t.Fatalf("%s, run %d: %v", what, i, err)
			}
			sameAsFresh(t, s, u, src, res, nil, what)
		}
	}
}

// TestDirCacheHostileNames: a cache file whose directory record (its lstat
// matching) holds a name no listing gives - "..", ".", "", one with a
// slash - must not make the scan walk outside the backup root, walk the
// same directory again and again, or count files twice; nor make the
// backup differ. Refusing the file as damaged is fine.
func TestDirCacheHostileNames(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRA4")
	top := t.TempDir()
	src := filepath.Join(top, "src")
	writeFile(t, filepath.Join(src, "a", "b", "f"), []byte("inside"))
	writeFile(t, filepath.Join(src, "g"), []byte("inside too"))
	for i := range 20 {
		writeFile(t, filepath.Join(top, "outside", string(rune('a'+i))), []byte("not in the backup"))
	}
	settle()
	cache := backup.NewCache()
	cachedRun(t, s, u, src, cache, nil)

	cases := map[string]func(f *rawCacheFile){
		"..":          func(f *rawCacheFile) { d := f.dir(t, ""); d.names = []string{"..", "a", "g"} },
		".":           func(f *rawCacheFile) { d := f.dir(t, ""); d.names = []string{".", "a", "g"} },
		"empty":       func(f *rawCacheFile) { d := f.dir(t, ""); d.names = []string{"", "a", "g"} },
		"two empty":   func(f *rawCacheFile) { d := f.dir(t, ""); d.names = []string{"", "", "a", "g"} },
		"slash":       func(f *rawCacheFile) { d := f.dir(t, ""); d.names = []string{"a", "a/b", "g"} },
		"NUL":         func(f *rawCacheFile) { d := f.dir(t, ""); d.names = []string{"a", "a\x00b", "g"} },
		"dot-dot-out": func(f *rawCacheFile) { d := f.dir(t, "a"); d.names = []string{"../../outside", "b"} },
	}
	for what, edit := range cases {
		c := saveAndEdit(t, cache, edit)
		if c == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, files, scan, err := backup.EstimateScan(ctx, src, c, nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: scan: %v", what, err)
		}
		if files != 0 {
			t.Errorf("%s: the scan of an unchanged tree counts %d files to send", what, files)
		}
		res, err := run(s, u, src, backup.Options{Cache: c, Scan: scan})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sameAsFresh(t, s, u, src, res, nil, what)
	}
}

// TestDirCacheTreesOnlyOnNewServer: a tree of directories without a single
// file (an empty Journal, or every file excluded) backed up with a cache
// to a server that does not hold the trees the cache says are committed
// (rebuilt, a new school server): Run starts afresh, as with files.
func TestDirCacheTreesOnlyOnNewServer(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s1 := openStore(t)
	u1 := addUser(t, s1, "DIRA5")
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	settle()
	cache := backup.NewCache()
	cachedRun(t, s1, u1, src, cache, nil)

	s2 := openStore(t)
	u2 := addUser(t, s2, "DIRA5")
	_, _, scan, err := backup.EstimateScan(context.Background(), src, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(s2, u2, src, backup.Options{Cache: cache, Scan: scan}); err != nil {
		t.Fatalf("run against a server without the cached trees: %v", err)
	}
}

// TestDirCacheChangesBetweenScanAndRun: what changes after the scan the
// backup takes its listings from (a file added to the root and to a
// directory, two directories swapped) is missed by that backup but picked
// up by the next one, though the cache recorded the directories.
func TestDirCacheChangesBetweenScanAndRun(t *testing.T) {
	defer backup.SetRacyWindow(0)()
	s := openStore(t)
	u := addUser(t, s, "DIRA6")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a", "x"), []byte("in a"))
	writeFile(t, filepath.Join(src, "b", "y"), []byte("in b, longer"))
	writeFile(t, filepath.Join(src, "r"), []byte("root file"))
	settle()
	cache := backup.NewCache()
	cachedRun(t, s, u, src, cache, nil)
	settle()
	changes := []func() error{
		func() error { return os.WriteFile(filepath.Join(src, "new-in-root"), []byte("new"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(src, "a", "new-in-a"), []byte("new"), 0o644) },
		func() error {
			if err := os.Rename(filepath.Join(src, "a"), filepath.Join(src, "tmp")); err != nil {
				return err
			}
			if err := os.Rename(filepath.Join(src, "b"), filepath.Join(src, "a")); err != nil {
				return err
			}
			return os.Rename(filepath.Join(src, "tmp"), filepath.Join(src, "b"))
		},
	}
	for i, change := range changes {
		scan := mustScan(t, src, cache, nil)
		if err := change(); err != nil {
			t.Fatal(err)
		}
		mustRun(t, s, u, src, backup.Options{Cache: cache, Scan: scan})
		settle()
		for night := range 2 {
			got, _ := cachedRun(t, s, u, src, cache, nil)
			sameAsFresh(t, s, u, src, got, nil, fmt.Sprintf("change %d, night %d", i, night))
		}
	}
}
