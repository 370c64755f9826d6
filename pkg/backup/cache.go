package backup

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// Cache remembers, per file, the metadata it had and the chunks it was cut
// into, so that an unchanged file is never read again; and the trees of the
// last committed snapshot, so that unchanged directories are not even
// offered to the server again. It is the laptop's only large state.
type Cache struct {
	files map[string]cachedFile
	// trees holds the tree IDs of the last committed snapshot.
	trees map[chunk.ID]struct{}
	// seen marks the files found by the current run (the rest are dropped on Save).
	seen map[string]struct{}
	// newTrees collects the trees of the current run.
	newTrees map[chunk.ID]struct{}
	// savedAt is the file this cache was loaded from or last saved to, and
	// changed whether it differs from that file since: Save skips an
	// unchanged cache (a nightly run with nothing new writes nothing).
	savedAt string
	changed bool
}

type cachedFile struct {
	size, mtime, ctime int64
	ino                uint64
	mode               uint32
	chunks             []chunk.ID
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{files: map[string]cachedFile{}, trees: map[chunk.ID]struct{}{},
		seen: map[string]struct{}{}, newTrees: map[chunk.ID]struct{}{}}
}

const cacheMagic = "XSCACHE1"

// maxCacheFile caps the cache file LoadCache accepts (it is local, but may be damaged).
const maxCacheFile = 1 << 30

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
	if err := c.decode(bufio.NewReader(io.LimitReader(f, maxCacheFile))); err != nil {
		return nil, fmt.Errorf("file cache %s is damaged (%v); delete it and the next backup reads every file once", path, err)
	}
	c.savedAt = path
	return c, nil
}

func (c *Cache) decode(r *bufio.Reader) error {
	magic := make([]byte, len(cacheMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != cacheMagic {
		return errors.New("bad header")
	}
	nt, err := binary.ReadUvarint(r)
	if err != nil || nt > 1<<24 {
		return errors.New("bad tree count")
	}
	for i := uint64(0); i < nt; i++ {
		var id chunk.ID
		if _, err := io.ReadFull(r, id[:]); err != nil {
			return err
		}
		c.trees[id] = struct{}{}
	}
	nf, err := binary.ReadUvarint(r)
	if err != nil || nf > 1<<26 {
		return errors.New("bad file count")
	}
	for i := uint64(0); i < nf; i++ {
		var v [6]uint64
		for j := range v {
			if v[j], err = binary.ReadUvarint(r); err != nil {
				return err
			}
		}
		if v[0] > 4096 || v[5] > 1<<24 {
			return errors.New("bad entry")
		}
		name := make([]byte, v[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return err
		}
		cf := cachedFile{size: int64(v[1]), mtime: int64(v[2]), ctime: int64(v[3]), ino: v[4]}
		m, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		cf.mode = uint32(m)
		// Grow as IDs are actually read: a damaged count must not allocate.
		cf.chunks = make([]chunk.ID, 0, min(v[5], 1024))
		for j := uint64(0); j < v[5]; j++ {
			var id chunk.ID
			if _, err := io.ReadFull(r, id[:]); err != nil {
				return err
			}
			cf.chunks = append(cf.chunks, id)
		}
		c.files[string(name)] = cf
	}
	return nil
}

// Save writes the cache atomically and durably (atomicfile.WriteFile),
// keeping only the files the last run saw.
func (c *Cache) Save(path string) error {
	if path == c.savedAt && !c.changed && len(c.seen) == len(c.files) {
		return nil
	}
	var b bytes.Buffer
	b.WriteString(cacheMagic)
	buf := make([]byte, binary.MaxVarintLen64)
	uv := func(v uint64) { b.Write(buf[:binary.PutUvarint(buf, v)]) }
	uv(uint64(len(c.trees)))
	for id := range c.trees {
		b.Write(id[:])
	}
	n := 0
	for name := range c.files {
		if _, ok := c.seen[name]; ok {
			n++
		}
	}
	uv(uint64(n))
	for name, cf := range c.files {
		if _, ok := c.seen[name]; !ok {
			continue
		}
		for _, v := range []uint64{uint64(len(name)), uint64(cf.size), uint64(cf.mtime), uint64(cf.ctime), cf.ino, uint64(len(cf.chunks))} {
			uv(v)
		}
		b.WriteString(name)
		uv(uint64(cf.mode))
		for _, id := range cf.chunks {
			b.Write(id[:])
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return err
	}
	c.savedAt, c.changed = path, false
	return nil
}

// Reset forgets everything (used when the server no longer has what the
// cache promised, e.g. after a restore of the server or a move to a new one).
func (c *Cache) Reset() { *c = *NewCache() }

// Forget drops what the cache knows about the given blobs: files cut into
// one of the chunks are read again, and the trees are offered to the
// server again. The server names the blobs whose stored copy is damaged, so
// that the next backup sends them again and heals them.
func (c *Cache) Forget(refs []blob.Ref) {
	if len(refs) == 0 {
		return
	}
	chunks := map[chunk.ID]bool{}
	for _, r := range refs {
		if r.Type == blob.Tree {
			// Below a damaged tree the target may hold nothing it can
			// vouch for: offer every tree again (a Need round trip for a
			// few hundred small blobs), so that damaged ones below it are
			// sent too.
			clear(c.trees)
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
	c.seen = map[string]struct{}{}
	c.newTrees = map[chunk.ID]struct{}{}
}

func (c *Cache) lookup(name string, st fileStat) ([]chunk.ID, bool) {
	cf, ok := c.files[name]
	if !ok || cf.size != st.size || cf.mtime != st.mtime || cf.ctime != st.ctime || cf.ino != st.ino {
		return nil, false
	}
	c.seen[name] = struct{}{}
	return cf.chunks, true
}

func (c *Cache) store(name string, st fileStat, chunks []chunk.ID) {
	c.files[name] = cachedFile{size: st.size, mtime: st.mtime, ctime: st.ctime, ino: st.ino, chunks: chunks}
	c.seen[name] = struct{}{}
	c.changed = true
}

func (c *Cache) knownTree(id chunk.ID) bool {
	_, ok := c.trees[id]
	return ok
}

// committed records that the run's trees are now in a committed snapshot.
func (c *Cache) committed() {
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
