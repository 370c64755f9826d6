package store

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// packIO is where the store's pack files are: the store's directory alone
// (remote nil: the default), or an object store, with the packs being
// written (and sealed ones not yet uploaded) staged in the directory.
//
// With a Remote, a pack is written locally by the usual pack writer
// (append, fsync), and uploaded whole once it is sealed; the local copy is
// removed only after the upload is confirmed (object present with the
// right size). Reads look in the directory first and then fetch byte
// ranges from the object store through a cache bounded in bytes.
type packIO struct {
	fs     FS
	remote Remote
	hook   func(string)

	cache *recordCache

	upMu    sync.Mutex
	pending map[uint64]*upload // sealed packs not yet confirmed in the bucket
	upWG    sync.WaitGroup
	upSem   chan struct{} // limits background uploads
	getSem  chan struct{} // limits parallel ranged reads
	ctx     context.Context
	cancel  context.CancelFunc
	lastErr error // last background upload error, for messages
}

type upload struct {
	mu   sync.Mutex
	done bool
}

// Read-ahead for a ranged read that misses the cache: the records that
// follow in the same pack are likely read next (a file's chunks were
// written one after the other).
const (
	remoteReadAhead = 1 << 20
	remoteCoalesce  = 256 << 10 // gap below which two wanted records share a read
	remoteMaxRead   = 8 << 20
)

func newPackIO(fs FS, remote Remote, cacheBytes int64, parallel int, hook func(string)) *packIO {
	p := &packIO{fs: fs, remote: remote, hook: hook, pending: map[uint64]*upload{}}
	if remote != nil {
		if parallel <= 0 {
			parallel = 8
		}
		if cacheBytes <= 0 {
			cacheBytes = 128 << 20
		}
		p.cache = newRecordCache(cacheBytes)
		p.upSem = make(chan struct{}, 2)
		p.getSem = make(chan struct{}, parallel)
		p.ctx, p.cancel = context.WithCancel(context.Background())
	}
	return p
}

func (p *packIO) close() {
	if p.remote == nil {
		return
	}
	p.cancel()
	p.upWG.Wait()
}

// list returns the sequence numbers of every pack, local or in the bucket.
func (p *packIO) list(ctx context.Context) ([]uint64, error) {
	m, err := p.sizes(ctx)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, 0, len(m))
	for seq := range m {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// sizes returns the size of every pack (the local copy's if it has one).
func (p *packIO) sizes(ctx context.Context) (map[uint64]int64, error) {
	seqs, err := pack.List(p.fs)
	if err != nil {
		return nil, err
	}
	m := map[uint64]int64{}
	for _, seq := range seqs {
		m[seq] = -1
		if f, err := p.fs.OpenFile(pack.Name(seq), os.O_RDONLY, 0); err == nil {
			if st, err := f.Stat(); err == nil {
				m[seq] = st.Size()
			}
			f.Close()
		}
	}
	if p.remote == nil {
		return m, nil
	}
	objs, err := p.remote.List(ctx, "packs/")
	if err != nil {
		return nil, fmt.Errorf("list packs in %s: %w", describeRemote(p.remote), remoteErr(err))
	}
	for _, o := range objs {
		var seq uint64
		if _, err := fmt.Sscanf(o.Name, "packs/%02x/%016x.pack", new(uint64), &seq); err != nil || pack.Name(seq) != o.Name {
			continue
		}
		if sz, ok := m[seq]; !ok || sz < 0 {
			m[seq] = o.Size
		}
	}
	return m, nil
}

// listedOrThere adds to a listing of packs those an object store's listing
// left out (it may lag behind the last uploads): every number up to a few
// past the highest listed that is not listed is looked up. A rebuild of
// the index from the packs must not take a pack the listing hid for lost.
func (p *packIO) listedOrThere(ctx context.Context, seqs []uint64) ([]uint64, error) {
	if p.remote == nil {
		return seqs, nil
	}
	listed := map[uint64]bool{}
	var high uint64
	for _, seq := range seqs {
		listed[seq] = true
		high = max(high, seq)
	}
	for seq := uint64(1); seq <= high+8; seq++ {
		if listed[seq] {
			continue
		}
		_, err := p.remote.Stat(ctx, pack.Name(seq))
		if err == nil {
			seqs = append(seqs, seq)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("look up pack %016x in %s: %w", seq, describeRemote(p.remote), remoteErr(err))
		}
	}
	return seqs, nil
}

// gone reports whether pack seq is truly not there: neither a local copy
// nor (with an object store) an object that a stat finds. A stat that
// fails otherwise counts as there: the object store's failure is never
// taken for a lost pack.
func (p *packIO) gone(ctx context.Context, seq uint64) bool {
	if f, err := p.fs.OpenFile(pack.Name(seq), os.O_RDONLY, 0); err == nil {
		f.Close()
		return false
	}
	if p.remote == nil {
		return true
	}
	_, err := p.remote.Stat(ctx, pack.Name(seq))
	return errors.Is(err, os.ErrNotExist)
}

// readRecord reads and CRC-checks one record, from the local copy of its
// pack if there is one, else from the object store (through the cache).
func (p *packIO) readRecord(ctx context.Context, seq uint64, off int64, stored uint32) (pack.Header, []byte, error) {
	h, data, err := pack.ReadRecord(p.fs, seq, off, stored)
	if p.remote == nil || !errors.Is(err, os.ErrNotExist) {
		return h, data, err
	}
	n := pack.RecordHeaderLen + int(stored)
	if rec, ok := p.cache.get(seq, off); ok && len(rec) == n {
		return pack.DecodeRecord(seq, off, stored, rec)
	}
	if err := p.fetch(ctx, seq, []span{{off, int64(n)}}, remoteReadAhead); err != nil {
		return pack.Header{}, nil, err
	}
	rec, ok := p.cache.get(seq, off)
	if !ok || len(rec) != n {
		return pack.Header{}, nil, fmt.Errorf("pack %016x at %d: %w", seq, off, pack.ErrBadRecord)
	}
	return pack.DecodeRecord(seq, off, stored, rec)
}

type span struct{ off, n int64 }

// fetch reads the wanted records of one pack from the object store in as
// few ranged reads as sensible (records closer than remoteCoalesce share
// one), plus readAhead bytes past the last, and caches every whole record
// found in what was read. Wanted spans must be sorted by offset.
func (p *packIO) fetch(ctx context.Context, seq uint64, want []span, readAhead int64) error {
	var reads []span
	for _, w := range want {
		if k := len(reads) - 1; k >= 0 && w.off >= reads[k].off && w.off-(reads[k].off+reads[k].n) <= remoteCoalesce && w.off+w.n-reads[k].off <= remoteMaxRead {
			reads[k].n = max(reads[k].n, w.off+w.n-reads[k].off)
			continue
		}
		reads = append(reads, w)
	}
	if readAhead > 0 && len(reads) > 0 {
		reads[len(reads)-1].n += readAhead
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, rd := range reads {
		g.Go(func() error { return p.fetchRange(gctx, seq, rd.off, rd.n, readAhead > 0) })
	}
	return g.Wait()
}

// fetchRange reads n bytes at off (fewer at the pack's end) and caches the
// whole records in them.
func (p *packIO) fetchRange(ctx context.Context, seq uint64, off, n int64, mayBeShort bool) error {
	select {
	case p.getSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.getSem }()
	buf := make([]byte, n)
	got, err := p.remote.ReadAt(ctx, pack.Name(seq), buf, off)
	if err == nil && got < len(buf) && !mayBeShort {
		err = fmt.Errorf("%w: the object ends at %d", pack.ErrBadRecord, off+int64(got))
	}
	buf = buf[:got] // read-ahead past the end: cache what came
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pack %016x: %w", seq, os.ErrNotExist)
		}
		return fmt.Errorf("read pack %016x at %d from %s: %w", seq, off, describeRemote(p.remote), remoteErr(err))
	}
	for pos := int64(0); pos+pack.RecordHeaderLen <= int64(len(buf)); {
		h, err := pack.DecodeHeader(buf[pos:])
		if err != nil {
			break
		}
		end := pos + pack.RecordHeaderLen + int64(h.Stored)
		if end > int64(len(buf)) {
			break
		}
		p.cache.put(seq, off+pos, buf[pos:end:end])
		pos = end
	}
	return nil
}

// prefetch fetches, in parallel, the records at locs that are neither in
// a local pack nor cached.
func (p *packIO) prefetch(ctx context.Context, locs []objRec) {
	if p.remote == nil || len(locs) < 2 {
		return
	}
	byPack := map[uint64][]span{}
	for _, o := range locs {
		if _, ok := p.cache.get(o.Pack, o.Off); ok || o.Stored > pack.MaxStored || o.Off < 0 {
			continue // cached, or no record (a damaged index entry: the read says so)
		}
		byPack[o.Pack] = append(byPack[o.Pack], span{o.Off, pack.RecordHeaderLen + int64(o.Stored)})
	}
	g, gctx := errgroup.WithContext(ctx)
	for seq, want := range byPack {
		if f, err := p.fs.OpenFile(pack.Name(seq), os.O_RDONLY, 0); err == nil {
			f.Close()
			continue
		}
		slices.SortFunc(want, func(a, b span) int { return int(a.off - b.off) })
		g.Go(func() error { return p.fetch(gctx, seq, want, 0) })
	}
	g.Wait() // a failure is met again, and reported, by the read itself
}

// scan is pack.Scan over the local copy or the object.
func (p *packIO) scan(ctx context.Context, seq uint64, fn func(h pack.Header, off int64, data []byte) error, onBad func(pack.DamagedSpan)) (int64, error) {
	good, err := pack.Scan(p.fs, seq, fn, onBad)
	if p.remote == nil || !errors.Is(err, os.ErrNotExist) {
		return good, err
	}
	st, err := p.remote.Stat(ctx, pack.Name(seq))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		return 0, fmt.Errorf("pack %016x in %s: %w", seq, describeRemote(p.remote), remoteErr(err))
	}
	ra := &remoteReaderAt{ctx: ctx, p: p, name: pack.Name(seq), size: st.Size}
	good, err = pack.ScanReader(ra, st.Size, fn, onBad)
	if err == nil && ra.err != nil {
		err = ra.err // a read the scan took for damage was the object store failing
	}
	return good, err
}

// remoteReaderAt reads an object in blocks, keeping the last one.
type remoteReaderAt struct {
	ctx      context.Context
	p        *packIO
	name     string
	size     int64
	blockOff int64
	block    []byte
	err      error
}

const scanBlock = 8 << 20

func (r *remoteReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		if r.block == nil || pos < r.blockOff || pos >= r.blockOff+int64(len(r.block)) {
			start := pos - pos%scanBlock
			blk := make([]byte, min(scanBlock, r.size-start))
			got, err := r.p.remote.ReadAt(r.ctx, r.name, blk, start)
			if err != nil {
				r.err = fmt.Errorf("read %s from %s: %w", r.name, describeRemote(r.p.remote), remoteErr(err))
				return n, r.err
			}
			if got == 0 {
				return n, io.EOF
			}
			r.block, r.blockOff = blk[:got], start
		}
		n += copy(b[n:], r.block[pos-r.blockOff:])
	}
	return n, nil
}

// remove deletes a pack: its local copy and its object.
func (p *packIO) remove(ctx context.Context, seq uint64) error {
	name := pack.Name(seq)
	if err := p.fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pack %016x: %w", seq, err)
	}
	if err := p.fs.SyncDir(name[:len("packs/00")]); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if p.remote == nil {
		return nil
	}
	p.cache.dropPack(seq)
	if err := p.remote.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete pack %016x from %s: %w", seq, describeRemote(p.remote), remoteErr(err))
	}
	return nil
}

// sealed is the pack writer's callback: seq will not change again, so it
// is queued for upload and uploaded in the background.
func (p *packIO) sealed(seq uint64) {
	if p.remote == nil {
		return
	}
	p.upMu.Lock()
	if _, ok := p.pending[seq]; !ok {
		p.pending[seq] = &upload{}
	}
	p.upMu.Unlock()
	p.upWG.Add(1)
	go func() {
		defer p.upWG.Done()
		select {
		case p.upSem <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		defer func() { <-p.upSem }()
		err := p.upload(p.ctx, seq)
		p.upMu.Lock()
		if err != nil && p.ctx.Err() == nil {
			p.lastErr = err
		} else if err == nil {
			p.lastErr = nil
		}
		p.upMu.Unlock()
	}()
}

// queueLocal queues every pack staged in the directory for upload (Open:
// they were left by the last run, uploaded or not).
func (p *packIO) queueLocal() error {
	seqs, err := pack.List(p.fs)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		p.sealed(seq)
	}
	return nil
}

// waitUploads uploads (or waits for) every sealed pack that is not yet
// confirmed in the bucket, in parallel, and returns the first failure.
func (p *packIO) waitUploads(ctx context.Context) error {
	if p.remote == nil {
		return nil
	}
	p.upMu.Lock()
	var seqs []uint64
	for seq := range p.pending {
		seqs = append(seqs, seq)
	}
	p.upMu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, seq := range seqs {
		g.Go(func() error { return p.upload(gctx, seq) })
	}
	return g.Wait()
}

// upload makes sure pack seq is whole in the bucket, then removes its
// local copy. Idempotent: a pack already there (the last run uploaded it
// and crashed before removing the copy) is not sent again.
func (p *packIO) upload(ctx context.Context, seq uint64) error {
	p.upMu.Lock()
	u := p.pending[seq]
	p.upMu.Unlock()
	if u == nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	name := pack.Name(seq)
	f, err := p.fs.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		p.finish(seq, u) // removed after its upload, or by compaction
		return nil
	}
	if err != nil {
		return fmt.Errorf("upload pack %016x: %w", seq, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("upload pack %016x: %w", seq, err)
	}
	size := st.Size()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return fmt.Errorf("upload pack %016x: read the local copy: %w", seq, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	there, err := p.remote.Stat(ctx, name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("upload pack %016x to %s: %w", seq, describeRemote(p.remote), remoteErr(err))
	}
	if err != nil || there.Size != size || (there.SHA256 != "" && there.SHA256 != sum) {
		p.hook("remote:before-upload")
		if err := p.remote.Put(ctx, name, io.NewSectionReader(f, 0, size), size, sum); err != nil {
			return fmt.Errorf("upload pack %016x to %s: %w", seq, describeRemote(p.remote), remoteErr(err))
		}
		there, err = p.remote.Stat(ctx, name)
		if err != nil {
			return fmt.Errorf("confirm upload of pack %016x to %s: %w", seq, describeRemote(p.remote), remoteErr(err))
		}
		if there.Size != size || (there.SHA256 != "" && there.SHA256 != sum) {
			return fmt.Errorf("%w: pack %016x in %s has %d bytes (sha256 %s) after its upload, the local copy %d (sha256 %s)",
				&remoteError{errors.New("upload not confirmed")}, seq, describeRemote(p.remote), there.Size, there.SHA256, size, sum)
		}
	}
	p.hook("remote:after-upload")
	if err := p.fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the uploaded local copy of pack %016x: %w", seq, err)
	}
	p.fs.SyncDir(name[:len("packs/00")])
	p.finish(seq, u)
	return nil
}

func (p *packIO) finish(seq uint64, u *upload) {
	u.done = true
	p.upMu.Lock()
	delete(p.pending, seq)
	p.upMu.Unlock()
}

// recordCache keeps recently read pack records, bounded in bytes (LRU).
type recordCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List
	items map[recKey]*list.Element
}

type recKey struct {
	seq uint64
	off int64
}

type recEntry struct {
	k   recKey
	rec []byte
}

func newRecordCache(max int64) *recordCache {
	return &recordCache{max: max, ll: list.New(), items: map[recKey]*list.Element{}}
}

func (c *recordCache) get(seq uint64, off int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[recKey{seq, off}]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*recEntry).rec, true
}

func (c *recordCache) put(seq uint64, off int64, rec []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := recKey{seq, off}
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return
	}
	if int64(len(rec)) > c.max {
		return
	}
	c.items[k] = c.ll.PushFront(&recEntry{k, rec})
	c.size += int64(len(rec))
	for c.size > c.max {
		e := c.ll.Back()
		re := e.Value.(*recEntry)
		c.ll.Remove(e)
		delete(c.items, re.k)
		c.size -= int64(len(re.rec))
	}
}

func (c *recordCache) dropPack(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.items {
		if k.seq == seq {
			c.ll.Remove(e)
			delete(c.items, k)
			c.size -= int64(len(e.Value.(*recEntry).rec))
		}
	}
}
