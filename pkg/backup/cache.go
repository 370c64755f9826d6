package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// Cache remembers, per file, the metadata it had and the chunks it was cut
// into, so that an unchanged file is never read again; the trees of the
// last committed snapshot, so that unchanged directories are not even
// offered to the server again; and, per directory, its lstat, its entries
// and its tree, so that a directory whose lstat did not change is not
// listed again and an unchanged one is not encoded again. It is the
// laptop's only large state.
type Cache struct {
	files map[string]cachedFile
	// dirs holds, by slash-separated path ("" is the root), the
	// directories the last run saw.
	dirs map[string]cachedDir
	// seenDirs marks the directories found by the current run (nil until
	// the first, like seen).
	seenDirs map[string]struct{}
	// trees holds the tree IDs of the last committed snapshot.
	trees map[chunk.ID]struct{}
	// seen marks the files found by the current run (the rest are dropped
	// on Save); nil until the run's first mark (markSeen).
	seen map[string]struct{}
	// newTrees collects the trees of the current run.
	newTrees map[chunk.ID]struct{}
	// savedAt is the file this cache was loaded from or last saved to, and
	// changed whether it differs from that file since: Save skips an
	// unchanged cache (a nightly run with nothing new writes nothing).
	savedAt string
	changed bool
	// size is the length of that file: Save sizes its buffer by it.
	size int
	// allSeen is set when the current run found every file and directory
	// the cache holds (seen and seenDirs are then left empty).
	allSeen bool
	// gen counts the changes made by Forget and Reset, which a Scan made
	// before them does not know of.
	gen uint64
}

type cachedFile struct {
	size, mtime, ctime int64
	ino                uint64
	mode               uint32
	chunks             []chunk.ID
}

// cachedDir is what a run saw of a directory: its own lstat, every entry
// (sorted, the excluded ones too), those of them Exclude left out and the
// tree it built. A directory's mtime and ctime change whenever an entry is
// created, removed or renamed in it, so while its lstat stays the same its
// list of entries does too.
type cachedDir struct {
	st       fileStat
	tree     chunk.ID
	names    []string
	excluded []string
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{files: map[string]cachedFile{}, trees: map[chunk.ID]struct{}{},
		dirs: map[string]cachedDir{}, seen: map[string]struct{}{}, seenDirs: map[string]struct{}{},
		newTrees: map[chunk.ID]struct{}{}}
}

// cacheMagic starts the cache file. Version 1 (cacheMagicV1, before the
// directories were kept) still loads: its directories are listed afresh.
const (
	cacheMagic   = "XSCACHE2"
	cacheMagicV1 = "XSCACHE1"
)

// Caps on the directory records a cache file may hold.
const (
	maxCacheDirs    = 1 << 24
	maxDirNames     = 1 << 20
	maxCacheNameLen = 4096
)

// maxCacheFile caps the cache file LoadCache accepts (it is local, but
// may be damaged): about 600,000 files. A bigger one is refused like a
// damaged one (the next run then reads every file once).
const maxCacheFile = 64 << 20

// LoadCache reads a cache file; a missing file gives an empty cache. A
// damaged file is an error (the caller may remove it and start afresh: the
// next run then reads every file once).
func LoadCache(path string) (*Cache, error) {
	c := NewCache()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readCapped(f, maxCacheFile)
	if err == nil && len(data) > maxCacheFile {
		err = fmt.Errorf("bigger than %d MiB", maxCacheFile>>20)
	}
	if err == nil {
		err = c.decode(data)
	}
	if err != nil {
		return nil, fmt.Errorf("file cache %s is damaged (%v); delete it and the next backup reads every file once", path, err)
	}
	c.savedAt, c.size = path, len(data)
	return c, nil
}

// readCapped reads f whole, or max+1 bytes of it if it is longer, in one
// allocation when its size is known.
func readCapped(f *os.File, max int64) ([]byte, error) {
	size := int64(512)
	if fi, err := f.Stat(); err == nil {
		size = min(fi.Size(), max) + 1
	}
	data := make([]byte, 0, size)
	for {
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		if int64(len(data)) > max {
			return data, nil
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
	}
}

// decoder reads a cache file held in memory. Names and chunk IDs are read
// in place from one copy of the file: a cache of ten thousand files loads
// with a handful of allocations besides the maps.
type decoder struct {
	data []byte
	str  string // data, as a string
	off  int
	err  error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = errors.New(what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	if n <= 0 {
		d.fail("bad " + what)
		return 0
	}
	d.off += n
	return v
}

// bytes returns the next n bytes of the file as a string.
func (d *decoder) string(n uint64, what string) string {
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.data)-d.off) {
		d.fail(what + " past the end")
		return ""
	}
	s := d.str[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) name(what string) string {
	n := d.uvarint(what)
	if n > maxCacheNameLen {
		d.fail("bad " + what)
		return ""
	}
	return d.string(n, what)
}

// chunkIDs returns the next n IDs.
func (d *decoder) chunkIDs(n uint64) []chunk.ID {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.data)-d.off)/32 {
		d.fail("chunk IDs past the end")
		return nil
	}
	if n == 0 {
		return nil
	}
	// The IDs are read in place, like the names: a chunk.ID is 32 bytes
	// with no alignment of its own, and nothing writes into the file's copy.
	ids := unsafe.Slice((*chunk.ID)(unsafe.Pointer(&d.data[d.off])), n)
	d.off += 32 * int(n)
	return ids[:n:n]
}

// decode reads a cache file. Every count is checked against what the file
// can actually hold before anything is allocated for it.
func (c *Cache) decode(data []byte) error {
	// The names are substrings of data, which nothing else holds or changes.
	var str string
	if len(data) > 0 {
		str = unsafe.String(&data[0], len(data))
	}
	d := &decoder{data: data, str: str}
	magic := d.string(uint64(len(cacheMagic)), "header")
	if d.err != nil || (magic != cacheMagic && magic != cacheMagicV1) {
		return errors.New("bad header")
	}
	nt := d.uvarint("tree count")
	if nt > 1<<24 {
		d.fail("bad tree count")
	}
	for _, id := range d.chunkIDs(nt) {
		c.trees[id] = struct{}{}
	}
	nf := d.uvarint("file count")
	if nf > 1<<26 {
		d.fail("bad file count")
	}
	// At least 7 bytes a file: size the map for what the file can hold.
	c.files = make(map[string]cachedFile, min(nf, uint64(len(data)/7)))
	for i := uint64(0); i < nf && d.err == nil; i++ {
		var v [6]uint64
		for j := range v {
			v[j] = d.uvarint("file entry")
		}
		if v[0] > maxCacheNameLen || v[5] > 1<<24 {
			d.fail("bad entry")
		}
		name := d.string(v[0], "name")
		cf := cachedFile{size: int64(v[1]), mtime: int64(v[2]), ctime: int64(v[3]), ino: v[4]}
		cf.mode = uint32(d.uvarint("mode"))
		cf.chunks = d.chunkIDs(v[5])
		if d.err == nil {
			c.files[name] = cf
		}
	}
	if d.err != nil || magic == cacheMagicV1 {
		if d.err == nil && d.off != len(data) {
			d.fail("trailing bytes")
		}
		return d.err
	}
	c.decodeDirs(d)
	if d.err == nil && d.off != len(data) {
		d.fail("trailing bytes")
	}
	return d.err
}

// decodeDirs reads what version 2 adds: the directories.
func (c *Cache) decodeDirs(d *decoder) {
	nd := d.uvarint("directory count")
	if nd > maxCacheDirs {
		d.fail("bad directory count")
	}
	// At least 44 bytes a directory.
	c.dirs = make(map[string]cachedDir, min(nd, uint64(len(d.data)/44)))
	for range nd {
		if d.err != nil {
			return
		}
		rel := d.name("directory name")
		var v [6]uint64
		for j := range v {
			v[j] = d.uvarint("directory")
		}
		if v[4] > maxDirNames || v[5] > v[4] {
			d.fail("bad directory")
			return
		}
		cd := cachedDir{st: fileStat{size: int64(v[0]), mtime: int64(v[1]), ctime: int64(v[2]), ino: v[3]}}
		if ids := d.chunkIDs(1); len(ids) == 1 {
			cd.tree = ids[0]
		}
		// At least two bytes a name (its length and one byte: an empty
		// name is refused below): a count past the end fails before it
		// allocates.
		if 2*(v[4]+v[5]) > uint64(len(d.data)-d.off) {
			d.fail("directory names past the end")
			return
		}
		all := make([]string, v[4]+v[5])
		for i := range all {
			all[i] = d.name("entry name")
		}
		cd.names, cd.excluded = all[:v[4]:v[4]], all[v[4]:]
		// A listing is sorted, without duplicates, and holds no "", ".",
		// ".." or name with a slash; the scan takes these names as the
		// directory's entries and lstats and walks them.
		for i, name := range all {
			if !listedName(name) || (i > 0 && i < len(cd.names) && all[i-1] >= name) {
				d.fail("bad entry name")
				return
			}
		}
		if len(cd.excluded) == 0 {
			cd.excluded = nil
		}
		if d.err == nil {
			c.dirs[rel] = cd
		}
	}
}

// listedName reports whether a directory listing can hold name.
func listedName(name string) bool {
	return name != "" && name != "." && name != ".." && strings.IndexByte(name, '/') < 0 && strings.IndexByte(name, 0) < 0
}

// Save writes the cache atomically and durably (atomicfile.WriteFile),
// keeping only the files the last run saw.
func (c *Cache) Save(path string) error {
	if path == c.savedAt && !c.changed && (c.allSeen || len(c.seen) == len(c.files) && len(c.seenDirs) == len(c.dirs)) {
		return nil
	}
	var b bytes.Buffer
	b.Grow(c.size + c.size/4 + 4<<10)
	b.WriteString(cacheMagic)
	buf := make([]byte, binary.MaxVarintLen64)
	uv := func(v uint64) { b.Write(buf[:binary.PutUvarint(buf, v)]) }
	uv(uint64(len(c.trees)))
	for id := range c.trees {
		b.Write(id[:])
	}
	c.prune()
	uv(uint64(len(c.files)))
	for name, cf := range c.files {
		for _, v := range []uint64{uint64(len(name)), uint64(cf.size), uint64(cf.mtime), uint64(cf.ctime), cf.ino, uint64(len(cf.chunks))} {
			uv(v)
		}
		b.WriteString(name)
		uv(uint64(cf.mode))
		for _, id := range cf.chunks {
			b.Write(id[:])
		}
	}
	uv(uint64(len(c.dirs)))
	for rel, d := range c.dirs {
		uv(uint64(len(rel)))
		b.WriteString(rel)
		for _, v := range []uint64{uint64(d.st.size), uint64(d.st.mtime), uint64(d.st.ctime), d.st.ino, uint64(len(d.names)), uint64(len(d.excluded))} {
			uv(v)
		}
		b.Write(d.tree[:])
		for _, names := range [2][]string{d.names, d.excluded} {
			for _, name := range names {
				uv(uint64(len(name)))
				b.WriteString(name)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return err
	}
	c.savedAt, c.changed, c.size = path, false, b.Len()
	return nil
}

// prune drops the files and directories the last run did not see (gone
// since the run before): what Save writes.
func (c *Cache) prune() {
	if c.allSeen {
		return
	}
	for name := range c.files {
		if _, ok := c.seen[name]; !ok {
			delete(c.files, name)
			c.changed = true
		}
	}
	for rel := range c.dirs {
		if _, ok := c.seenDirs[rel]; !ok {
			delete(c.dirs, rel)
			c.changed = true
		}
	}
}

// Reset forgets everything (used when the server no longer has what the
// cache promised, e.g. after a restore of the server or a move to a new one).
func (c *Cache) Reset() {
	gen := c.gen
	*c = *NewCache()
	c.gen = gen + 1
}

// joinRel is path.Join for a relative path and one clean name, without
// the cleaning.
func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// Forget drops what the cache knows about the given blobs: files cut into
// one of the chunks are read again, and the trees are offered to the
// server again. The server names the blobs whose stored copy is damaged, so
// that the next backup sends them again and heals them.
func (c *Cache) Forget(refs []blob.Ref) {
	if len(refs) == 0 {
		return
	}
	c.gen++
	chunks := map[chunk.ID]bool{}
	for _, r := range refs {
		if r.Type == blob.Tree {
			// Below a damaged tree the target may hold nothing it can
			// vouch for: offer every tree again (a Need round trip for a
			// few hundred small blobs), so that damaged ones below it are
			// sent too.
			clear(c.trees)
			clear(c.dirs)
			c.changed = true
		} else {
			chunks[r.ID] = true
		}
	}
	if len(chunks) == 0 {
		return
	}
	for name, f := range c.files {
		for _, id := range f.chunks {
			if chunks[id] {
				delete(c.files, name)
				// Its directory is listed and looked at again.
				parent := ""
				if i := strings.LastIndexByte(name, '/'); i >= 0 {
					parent = name[:i]
				}
				delete(c.dirs, parent)
				c.changed = true
				break
			}
		}
	}
}

// Len returns the number of files in the cache.
func (c *Cache) Len() int { return len(c.files) }

// startRun forgets what a previous run in this process saw.
func (c *Cache) startRun() {
	// Made at the first mark: a run that takes the last snapshot whole
	// (seenAll) never needs them, and a map sized for every file is pages
	// the kernel must fault in.
	c.seen, c.seenDirs = nil, nil
	c.newTrees = map[chunk.ID]struct{}{}
	c.allSeen = false
}

// seenAll records that the current run found every file and directory the
// cache holds, as the cache holds them, and the given trees.
func (c *Cache) seenAll(trees map[chunk.ID]struct{}) {
	c.allSeen = true
	c.newTrees = maps.Clone(trees)
}

// dir returns what the cache knows of the directory rel if its lstat is
// still st.
func (c *Cache) dir(rel string, st fileStat) (cachedDir, bool) {
	d, ok := c.dirs[rel]
	return d, ok && d.st == st
}

// storeDir records what this run saw of a directory.
func (c *Cache) storeDir(rel string, d cachedDir) {
	old, ok := c.dirs[rel]
	if !ok || old.st != d.st || old.tree != d.tree || !slices.Equal(old.excluded, d.excluded) || !slices.Equal(old.names, d.names) {
		c.dirs[rel] = d
		c.changed = true
		c.dropParent(rel)
	}
	if c.seenDirs == nil {
		c.seenDirs = make(map[string]struct{}, len(c.dirs))
	}
	c.seenDirs[rel] = struct{}{}
}

// dropDir forgets a directory (its lstat may change again within the
// filesystem's timestamp granularity: see racy).
func (c *Cache) dropDir(rel string) {
	if _, ok := c.dirs[rel]; ok {
		delete(c.dirs, rel)
		c.changed = true
	}
}

func (c *Cache) lookup(name string, st fileStat) ([]chunk.ID, bool) {
	cf, ok := c.files[name]
	if !ok || cf.size != st.size || cf.mtime != st.mtime || cf.ctime != st.ctime || cf.ino != st.ino {
		return nil, false
	}
	c.markSeen(name)
	return cf.chunks, true
}

// markSeen records that the current run found the file name.
func (c *Cache) markSeen(name string) {
	if c.seen == nil {
		c.seen = make(map[string]struct{}, len(c.files))
	}
	c.seen[name] = struct{}{}
}

func (c *Cache) store(name string, st fileStat, chunks []chunk.ID) {
	c.files[name] = cachedFile{size: st.size, mtime: st.mtime, ctime: st.ctime, ino: st.ino, chunks: chunks}
	c.markSeen(name)
	c.changed = true
	c.dropParent(name)
}

// dropParent forgets the directory holding rel, whose entry for rel just
// changed: its recorded tree holds rel as it was. The run that records rel
// records the directory again when it is done with it; a run that stops
// before must not leave the old tree to the next run, which would take it
// (the directory's lstat and names did not change, and rel now hits the
// cache).
func (c *Cache) dropParent(rel string) {
	if rel == "" {
		return
	}
	parent := ""
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		parent = rel[:i]
	}
	c.dropDir(parent)
}

func (c *Cache) knownTree(id chunk.ID) bool {
	_, ok := c.trees[id]
	return ok
}

// committed records that the run's trees are now in a committed snapshot,
// and forgets the files and directories the run did not find.
func (c *Cache) committed() {
	c.prune()
	if len(c.newTrees) != len(c.trees) {
		c.changed = true
	} else {
		for id := range c.newTrees {
			if _, ok := c.trees[id]; !ok {
				c.changed = true
				break
			}
		}
	}
	c.trees = c.newTrees
	c.newTrees = map[chunk.ID]struct{}{}
}
