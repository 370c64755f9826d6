package backup

import (
	"bytes"
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

func id(s string) chunk.ID { return chunk.Sum([]byte(s)) }

// sampleCache returns a cache as a run leaves it: three files seen, two
// committed trees.
func sampleCache() *Cache {
	c := NewCache()
	c.store("ab/uid1/data", fileStat{size: 3 << 20, mtime: 1_790_000_000_123_456_789, ctime: 1_790_000_001_000_000_000, ino: 1 << 40},
		[]chunk.ID{id("c1"), id("c2"), id("c1")})
	c.store("ab/uid1/metadata/title", fileStat{size: 12, mtime: -5, ctime: 7, ino: 2}, []chunk.ID{id("t")})
	c.store("empty", fileStat{ino: 3}, nil)
	c.newTrees[id("root")] = struct{}{}
	c.newTrees[id("sub")] = struct{}{}
	c.committed()
	c.storeDir("ab/uid1", cachedDir{st: fileStat{size: 4096, mtime: 1_790_000_000_000_000_001, ctime: 1_790_000_000_000_000_002, ino: 77},
		tree: id("sub"), names: []string{"data", "metadata", "x.tmp"}, excluded: []string{"x.tmp"}})
	c.storeDir("", cachedDir{st: fileStat{ino: 2}, tree: id("root"), names: []string{"ab", "empty"}})
	return c
}

func sameFiles(t *testing.T, got, want map[string]cachedFile) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d files, want %d", len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("file %q lost", name)
		}
		if g.size != w.size || g.mtime != w.mtime || g.ctime != w.ctime || g.ino != w.ino || g.mode != w.mode || !slices.Equal(g.chunks, w.chunks) {
			t.Fatalf("file %q: got %+v, want %+v", name, g, w)
		}
	}
}

func TestCacheSaveLoad(t *testing.T) {
	c := sampleCache()
	path := filepath.Join(t.TempDir(), "sub", "dir", "cache")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("Save left its temporary file: %v", err)
	}
	got, err := LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got.files, c.files)
	if !maps.Equal(got.trees, c.trees) || len(got.trees) != 2 {
		t.Fatalf("trees %v, want %v", got.trees, c.trees)
	}
	if got.Len() != 3 {
		t.Fatalf("Len = %d", got.Len())
	}
	if len(got.dirs) != 2 {
		t.Fatalf("%d directories, want 2", len(got.dirs))
	}
	for rel, want := range c.dirs {
		g := got.dirs[rel]
		if g.st != want.st || g.tree != want.tree || !slices.Equal(g.names, want.names) || !slices.Equal(g.excluded, want.excluded) {
			t.Fatalf("directory %q: got %+v, want %+v", rel, g, want)
		}
	}
	// A loaded cache answers lookups with the stored stat only.
	st := fileStat{size: 12, mtime: -5, ctime: 7, ino: 2}
	if ids, ok := got.lookup("ab/uid1/metadata/title", st); !ok || !slices.Equal(ids, []chunk.ID{id("t")}) {
		t.Fatalf("lookup of an unchanged file: %v %v", ids, ok)
	}
	for _, changed := range []fileStat{{size: 13, mtime: -5, ctime: 7, ino: 2}, {size: 12, mtime: -4, ctime: 7, ino: 2},
		{size: 12, mtime: -5, ctime: 8, ino: 2}, {size: 12, mtime: -5, ctime: 7, ino: 3}} {
		if _, ok := got.lookup("ab/uid1/metadata/title", changed); ok {
			t.Fatalf("lookup with changed stat %+v hit the cache", changed)
		}
	}

	// Saving again keeps only what this "run" saw (the one lookup above),
	// and the trees.
	if err := got.Save(path); err != nil {
		t.Fatal(err)
	}
	again, err := LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Len() != 1 || len(again.trees) != 2 {
		t.Fatalf("after a run that saw one file: %d files, %d trees", again.Len(), len(again.trees))
	}
	again.Reset()
	if again.Len() != 0 || len(again.trees) != 0 || again.knownTree(id("root")) {
		t.Fatal("Reset kept something")
	}
	if _, ok := again.lookup("ab/uid1/metadata/title", st); ok {
		t.Fatal("Reset kept a file")
	}
}

func TestLoadCacheMissing(t *testing.T) {
	c, err := LoadCache(filepath.Join(t.TempDir(), "no", "such", "cache"))
	if err != nil {
		t.Fatal(err)
	}
	if c == nil || c.Len() != 0 || len(c.trees) != 0 {
		t.Fatalf("missing cache file gave %+v", c)
	}
	// The empty cache is usable.
	c.store("x", fileStat{size: 1}, []chunk.ID{id("x")})
	if c.Len() != 1 {
		t.Fatal("store into a loaded empty cache failed")
	}
}

func encodedSample(t testing.TB) []byte {
	path := filepath.Join(t.TempDir(), "cache")
	if err := sampleCache().Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadBytes(t *testing.T, data []byte) (*Cache, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return LoadCache(path)
}

func TestLoadCacheTruncated(t *testing.T) {
	data := encodedSample(t)
	if _, err := loadBytes(t, data); err != nil {
		t.Fatalf("intact cache: %v", err)
	}
	dir := t.TempDir()
	for n := 0; n < len(data); n++ {
		if c, err := decodeBytes(data[:n]); err == nil {
			t.Fatalf("cache truncated to %d of %d bytes decoded (%d files)", n, len(data), c.Len())
		}
		if n%8 != 0 {
			continue // LoadCache is decode behind a file: check it on some lengths
		}
		path := filepath.Join(dir, "cache")
		if err := os.WriteFile(path, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if c, err := LoadCache(path); err == nil {
			t.Fatalf("cache truncated to %d of %d bytes loaded (%d files)", n, len(data), c.Len())
		}
	}
}

// rawCache builds a cache file by hand: magic, tree count, tree IDs, file
// count, then each file's header varints, name, mode and chunk IDs.
type rawFile struct {
	nameLen, size, mtime, ctime, ino, nchunks uint64
	name                                      string
	mode                                      uint64
	chunks                                    int // how many IDs actually follow
}

func rawCache(magic string, ntrees uint64, trees int, nfiles uint64, files ...rawFile) []byte {
	b := []byte(magic)
	b = binary.AppendUvarint(b, ntrees)
	for i := range trees {
		x := id(string(rune(i)))
		b = append(b, x[:]...)
	}
	b = binary.AppendUvarint(b, nfiles)
	for _, f := range files {
		for _, v := range []uint64{f.nameLen, f.size, f.mtime, f.ctime, f.ino, f.nchunks} {
			b = binary.AppendUvarint(b, v)
		}
		b = append(b, f.name...)
		b = binary.AppendUvarint(b, f.mode)
		for i := range f.chunks {
			x := id(string(rune(i)))
			b = append(b, x[:]...)
		}
	}
	if magic == cacheMagic {
		b = append(b, 0) // no directories
	}
	return b
}

func TestRawCacheMatchesSave(t *testing.T) {
	// The damaged inputs below are only meaningful if rawCache writes the
	// real format: check it against Save on a one-file cache.
	c := NewCache()
	c.store("f", fileStat{size: 5, mtime: 6, ctime: 7, ino: 8}, []chunk.ID{id(string(rune(0))), id(string(rune(1)))})
	c.trees[id(string(rune(0)))] = struct{}{}
	path := filepath.Join(t.TempDir(), "cache")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := rawCache(cacheMagic, 1, 1, 1, rawFile{nameLen: 1, size: 5, mtime: 6, ctime: 7, ino: 8, nchunks: 2, name: "f", chunks: 2})
	if !bytes.Equal(got, want) {
		t.Fatalf("Save wrote %x\nrawCache   %x", got, want)
	}
}

func TestLoadCacheDamaged(t *testing.T) {
	good := encodedSample(t)
	cases := map[string][]byte{
		"empty":                   {},
		"wrong magic":             append([]byte("XSCACHE0"), good[len(cacheMagic):]...),
		"other file":              []byte("#!/bin/sh\necho hello\n"),
		"magic only":              []byte(cacheMagic),
		"tree count too big":      rawCache(cacheMagic, 1<<24+1, 0, 0),
		"tree count 1<<24":        rawCache(cacheMagic, 1<<24, 1, 0),
		"tree count 1<<62":        rawCache(cacheMagic, 1<<62, 0, 0),
		"tree count overflow":     append([]byte(cacheMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
		"file count too big":      rawCache(cacheMagic, 0, 0, 1<<26+1),
		"file count 1<<26":        rawCache(cacheMagic, 0, 0, 1<<26),
		"name length too big":     rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 4097, name: "x"}),
		"name length 1<<40":       rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 1 << 40, name: "x"}),
		"name past end":           rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 4096, name: "x"}),
		"chunk count too big":     rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 1, name: "x", nchunks: 1<<24 + 1}),
		"chunk count past end":    rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 1, name: "x", nchunks: 3, chunks: 2}),
		"second file missing":     rawCache(cacheMagic, 0, 0, 2, rawFile{nameLen: 1, name: "x"}),
		"truncated header varint": append(rawCache(cacheMagic, 0, 0, 1), 0x80),
	}
	for name, data := range cases {
		if c, err := loadBytes(t, data); err == nil {
			t.Errorf("%s: damaged cache loaded (%d files, %d trees)", name, c.Len(), len(c.trees))
		}
	}
}

// TestLoadCacheHugeCountsDoNotAllocate: a damaged cache file of a few bytes
// must not make the laptop (256 MB of RAM on an XO-1) allocate hundreds of
// megabytes before noticing that the data is not there.
func TestLoadCacheHugeCountsDoNotAllocate(t *testing.T) {
	cases := map[string][]byte{
		"tree count 1<<24":  rawCache(cacheMagic, 1<<24, 0, 0),
		"file count 1<<26":  rawCache(cacheMagic, 0, 0, 1<<26),
		"name length 4096":  rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 4096}),
		"chunk count 1<<24": rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 1, name: "x", nchunks: 1 << 24}),
		"chunk count 1<<20": rawCache(cacheMagic, 0, 0, 1, rawFile{nameLen: 1, name: "x", nchunks: 1 << 20}),
	}
	for name, data := range cases {
		path := filepath.Join(t.TempDir(), "cache")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := LoadCache(path)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: damaged cache loaded", name)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: loading a %d-byte cache file allocated %d bytes", name, len(data), n)
		}
	}
}

func decodeBytes(data []byte) (*Cache, error) {
	c := NewCache()
	err := c.decode(data)
	return c, err
}

func FuzzCacheDecode(f *testing.F) {
	f.Add(encodedSample(f))
	f.Add(rawCache(cacheMagic, 0, 0, 0))
	f.Add(rawCache(cacheMagic, 2, 2, 1, rawFile{nameLen: 3, name: "abc", size: 9, nchunks: 1, chunks: 1}))
	f.Add(rawCache(cacheMagic, 1<<24, 1, 0))
	f.Add(rawCache(cacheMagic, 0, 0, 1<<26))
	f.Add([]byte(cacheMagic))
	f.Add([]byte("XSCACHE0"))
	f.Add([]byte{})
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := decodeBytes(data)
		runtime.ReadMemStats(&after)
		if n, limit := after.TotalAlloc-before.TotalAlloc, uint64(4<<20+64*len(data)); n > limit {
			t.Fatalf("decoding %d bytes allocated %d bytes (limit %d)", len(data), n, limit)
		}
		if err != nil {
			return
		}
		// What decoded must be backed by the input: the header, 32 bytes
		// per tree or chunk ID, at least 7 bytes per file.
		ids := len(c.trees)
		for _, f := range c.files {
			ids += len(f.chunks)
		}
		if len(cacheMagic)+2+32*ids+7*len(c.files) > len(data) {
			t.Fatalf("%d bytes decoded to %d trees and %d files holding %d IDs", len(data), len(c.trees), len(c.files), ids)
		}
	})
}

func TestJournalExclude(t *testing.T) {
	excluded := []struct {
		rel   string
		isDir bool
	}{
		{"index", true},
		{"index", false},
		{"index/postlist.DB", false},
		{"index/x", false},
		{"index/sub", true},
		{"index_updated", false},
		{"ds_clean", false},
		{"checksums", true},
		{"checksums/ab12", false},
		{"checksums/queue/x", false},
		{"ab/uid/data.tmp", false},
		{"ab/uid/.tmpXYZ", false},
		{"upload.tmp", false},
		{"ab/uid/metadata/title~", false},
	}
	for _, c := range excluded {
		if !JournalExclude(c.rel, c.isDir) {
			t.Errorf("JournalExclude(%q, %v) = false, want true", c.rel, c.isDir)
		}
	}
	kept := []struct {
		rel   string
		isDir bool
	}{
		{"ab/uid/data", false},
		{"ab/uid", true},
		{"ab", true},
		{"version", false},
		{"ab/uid/metadata/title", false},
		{"ab/uid/metadata", true},
		{"indexes", true},
		{"index.html", false},
		{"ab/index", true},
		{"ab/index/x", false},
		{"ab/checksums/x", false},
		{"tmp", true},
		{"ab/uid/data.tmp.orig", false},
	}
	for _, c := range kept {
		if JournalExclude(c.rel, c.isDir) {
			t.Errorf("JournalExclude(%q, %v) = true, want false", c.rel, c.isDir)
		}
	}
}

// TestLoadCacheVersion1: a cache file written by the release before the
// directories were kept still loads (its files unread next time, its
// directories listed afresh) and is written back as version 2.
func TestLoadCacheVersion1(t *testing.T) {
	v1 := rawCache(cacheMagicV1, 1, 1, 2,
		rawFile{nameLen: 6, name: "ab/x/d", size: 5, mtime: 6, ctime: 7, ino: 8, nchunks: 1, chunks: 1, mode: 0o644},
		rawFile{nameLen: 1, name: "e", ino: 9})
	c, err := loadBytes(t, v1)
	if err != nil {
		t.Fatalf("a version 1 cache: %v", err)
	}
	if c.Len() != 2 || len(c.trees) != 1 || len(c.dirs) != 0 {
		t.Fatalf("version 1 cache loaded as %d files, %d trees, %d directories", c.Len(), len(c.trees), len(c.dirs))
	}
	if ids, ok := c.lookup("ab/x/d", fileStat{size: 5, mtime: 6, ctime: 7, ino: 8}); !ok || len(ids) != 1 {
		t.Fatalf("lookup in a version 1 cache: %v %v", ids, ok)
	}
	c.seen["e"] = struct{}{}
	c.storeDir("ab", cachedDir{st: fileStat{mtime: 1}, tree: id("t"), names: []string{"x"}})
	path := filepath.Join(t.TempDir(), "cache")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte(cacheMagic)) {
		t.Fatalf("saved as %q", data[:8])
	}
	again, err := LoadCache(path)
	if err != nil || again.Len() != 2 || len(again.dirs) != 1 || !slices.Equal(again.dirs["ab"].names, []string{"x"}) {
		t.Fatalf("reloaded: %v, %d files, dirs %+v", err, again.Len(), again.dirs)
	}
}

// TestLoadCacheTooBig: a cache file over maxCacheFile (a damaged or
// foreign file) is refused as damaged, not read into memory whole.
func TestLoadCacheTooBig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(path, []byte(cacheMagic), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, maxCacheFile+1); err != nil { // sparse
		t.Fatal(err)
	}
	if c, err := LoadCache(path); err == nil || !strings.Contains(err.Error(), "bigger than") {
		t.Fatalf("a %d-byte cache file: %v (cache %v)", maxCacheFile+1, err, c != nil)
	}
}
