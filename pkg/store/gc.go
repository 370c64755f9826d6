package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
	"os"
)

// Garbage collection.
//
// Sweep: a blob whose owner count is 0 (no user's snapshot references it and
// it is nobody's pending upload) is removed from the index. Each removal
// re-reads the owner count inside the deleting transaction; Badger's conflict
// detection aborts it if an upload of the same blob touched the entry
// meanwhile, and the upload, if it lost the race instead, finds the blob gone
// and writes it again (Put's errMissingLoc). So a blob a user holds, or is
// being given, is never swept.
//
// Compaction: a pack file whose live records (those the index points at) are
// a small fraction of it is rewritten: the live records are copied to the
// current pack and fsynced, the index entries still pointing at the old copy
// are moved (again conflict-checked), and only then is the old pack removed.
// A reader that looked a blob up just before the move retries when the old
// pack is gone. A crash at any step leaves both copies valid and the old
// pack is finished by the next run. A pack with a live record that fails
// its checksum is left in place for check and repair to report.

// GCOptions choose what GC does.
type GCOptions struct {
	// DryRun counts what would be deleted and rewritten, changing nothing.
	DryRun bool
	// CompactBelow overrides Options.CompactBelow for this run (0: keep).
	CompactBelow float64
}

// GCReport is what GC did.
type GCReport struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Blobs and bytes (stored size) no longer referenced, removed from the index.
	BlobsDeleted int64 `json:"blobs_deleted"`
	BytesDeleted int64 `json:"bytes_deleted"`
	// Packs rewritten (their live records copied) and removed.
	PacksRewritten int   `json:"packs_rewritten"`
	PacksRemoved   int   `json:"packs_removed"`
	BytesCopied    int64 `json:"bytes_copied"`
	// BytesReclaimed is the disk space given back: the size of the removed
	// packs less what was copied out of them.
	BytesReclaimed int64 `json:"bytes_reclaimed"`
	// KeptBelowDamagedTrees counts blobs nobody holds that were not swept:
	// an index rebuild (Repair) could not read some snapshot's tree, so
	// they may be what is below it (see RepairReport).
	KeptBelowDamagedTrees int64 `json:"kept_below_damaged_trees,omitempty"`
	// PacksKept lists packs that should have been rewritten but were not
	// (damaged live record, storage full); the reason is in the text.
	PacksKept  []string `json:"packs_kept,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

const gcBatch = 1000

// GC removes blobs that nobody holds and compacts pack files whose live
// fraction is below the threshold. Backups and restores run on meanwhile.
func (s *Store) GC(ctx context.Context, opts GCOptions) (*GCReport, error) {
	if !opts.DryRun {
		if err := s.writable(); err != nil {
			return nil, err
		}
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	// GC deletes what the index says nobody holds: it must not run on an
	// index that a check found inconsistent with the snapshots.
	for _, md := range s.metaDamage {
		if !md.Recovered {
			return nil, fmt.Errorf("%w: garbage collection will not run while %s is damaged and not rebuilt (its blobs may be all that is left of it): put back a good copy, or move it away and rebuild the index", ErrCorrupt, md.File)
		}
	}
	if why := s.suspect(); why != "" {
		return nil, fmt.Errorf("%w: garbage collection will not run until the index is rebuilt (the last check found %s)", ErrIndexDamaged, why)
	}
	start := time.Now()
	rep := &GCReport{DryRun: opts.DryRun}
	defer func() { rep.DurationMS = time.Since(start).Milliseconds() }()
	if err := s.sweep(ctx, opts.DryRun, rep); err != nil {
		return rep, fmt.Errorf("garbage collection: %w", err)
	}
	below := s.opts.CompactBelow
	if opts.CompactBelow != 0 {
		below = opts.CompactBelow
	}
	if err := s.compact(ctx, below, opts.DryRun, rep); err != nil {
		return rep, fmt.Errorf("pack compaction: %w", err)
	}
	return rep, nil
}

// sweep removes (or counts) unowned blobs, a batch per transaction.
func (s *Store) sweep(ctx context.Context, dryRun bool, rep *GCReport) error {
	owed, err := s.owesDescents(ctx, dryRun)
	if err != nil {
		return err
	}
	var from []byte
	for {
		var cands []blob.Ref
		var sizes []int64
		err := s.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pObj}, PrefetchValues: true})
			defer it.Close()
			if from == nil {
				it.Rewind()
			} else {
				it.Seek(from)
			}
			for ; it.Valid() && len(cands) < gcBatch; it.Next() {
				k := it.Item().KeyCopy(nil)
				from = append(k, 0)
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				o, err := decodeObj(v)
				if err != nil {
					return err // never delete on an index we cannot read
				}
				if o.Owners > 0 {
					continue
				}
				r := blob.Ref{Type: blob.Type(k[1])}
				copy(r.ID[:], k[2:])
				if owed {
					if _, kept, err := get(txn, keepKey(r)); err != nil {
						return err
					} else if kept {
						rep.KeptBelowDamagedTrees++
						continue
					}
				}
				cands = append(cands, r)
				sizes = append(sizes, int64(o.Stored))
			}
			if !it.Valid() {
				from = nil
			}
			return nil
		})
		if err != nil {
			return err
		}
		if dryRun {
			for _, n := range sizes {
				rep.BlobsDeleted++
				rep.BytesDeleted += n
			}
		} else if len(cands) > 0 {
			var blobs, bytes int64
			err := s.update(ctx, func(txn *badger.Txn) error {
				blobs, bytes = 0, 0
				for _, r := range cands {
					o, ok, err := getObj(txn, r)
					if err != nil {
						return err
					}
					if !ok || o.Owners > 0 {
						continue
					}
					if err := txn.Delete(objKey(r)); err != nil {
						return err
					}
					if err := addGarbage(txn, o.Pack, 1); err != nil {
						return err
					}
					if o.lost() {
						if err := txn.Delete(lostKey(r)); err != nil {
							return err
						}
					}
					if r.Type == blob.Tree {
						if err := txn.Delete(tstatKey(r.ID)); err != nil {
							return err
						}
						if err := txn.Delete(copyKey(r.ID)); err != nil {
							return err
						}
					}
					blobs++
					bytes += int64(o.Stored)
				}
				return nil
			})
			if err != nil {
				return err
			}
			rep.BlobsDeleted += blobs
			rep.BytesDeleted += bytes
			s.hook("gc:after-sweep-batch")
		}
		if from == nil {
			return nil
		}
	}
}

// keepUnclaimed is Repair's last step: when the recount could not descend
// into some lost tree (a descent is owed), every blob nobody was found to
// hold may be below it, and is kept from the sweep (a 'k' entry) until no
// descent is owed any more. Without it, GC after the advised repair would
// sweep what the damaged tree references, and only the laptop's next upload
// of each file could bring it back (never for a file it no longer has).
func (s *Store) keepUnclaimed(ctx context.Context) (int64, error) {
	owed, err := s.owesDescents(ctx, true)
	if err != nil || !owed {
		return 0, err
	}
	wb := s.db.NewWriteBatch()
	var n int64
	err = s.eachObj(func(r blob.Ref, o objRec, derr error) error {
		if derr != nil || o.Owners > 0 {
			return nil
		}
		n++
		return wb.Set(keepKey(r), nil)
	})
	if err != nil {
		wb.Cancel()
		return 0, err
	}
	return n, wb.Flush()
}

// owesDescents reports whether any reference walk still owes a descent into
// a lost tree, or a walk is still to run (a healed tree turns what it owed
// into jobs: until they have run, its children are not counted). When
// neither, the keep marks of the last Repair are no longer needed and are
// removed (unless dryRun).
func (s *Store) owesDescents(ctx context.Context, dryRun bool) (bool, error) {
	owed := false
	var keeps [][]byte
	err := s.view(func(txn *badger.Txn) error {
		for _, p := range []byte{pDebt, pJob} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{p}})
			it.Rewind()
			owed = owed || it.Valid()
			it.Close()
		}
		if owed || dryRun {
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pKeep}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keeps = append(keeps, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil || owed {
		return owed, err
	}
	return false, s.deleteKeys(ctx, keeps)
}

// deleteKeys deletes index keys, gcBatch to a transaction.
func (s *Store) deleteKeys(ctx context.Context, keys [][]byte) error {
	for len(keys) > 0 {
		part := keys[:min(len(keys), gcBatch)]
		keys = keys[len(part):]
		if err := s.update(ctx, func(txn *badger.Txn) error {
			for _, k := range part {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// liveRec is one indexed record of a pack.
type liveRec struct {
	ref    blob.Ref
	off    int64
	stored uint32
}

type packUse struct {
	seq  uint64
	size int64 // file size
	live int64 // bytes of indexed records
	recs []liveRec
	lost int // indexed records marked lost (damaged, not yet healed)
}

// compact rewrites packs whose live fraction is below `below`.
func (s *Store) compact(ctx context.Context, below float64, dryRun bool, rep *GCReport) error {
	if below < 0 {
		return nil
	}
	// Close the pack being written, so that it can be compacted too, and
	// wait for uploads in flight: once putMu is ours, every upload that
	// appended to an existing pack has indexed its records, and every later
	// one writes to a pack numbered next or above, which we leave alone.
	var next uint64
	if dryRun {
		next = s.packs.Current() // the open pack and newer ones stay
		if next == 0 {
			next = s.packs.NextSeq()
		}
	} else {
		s.putMu.Lock()
		err := s.packs.Roll()
		next = s.packs.NextSeq()
		s.putMu.Unlock()
		if err != nil {
			return s.diskErr(err)
		}
		// On an object store, every pack considered is in the bucket
		// first: none is removed while its upload may still need it.
		if err := s.pio.waitUploads(ctx); err != nil {
			return err
		}
	}
	sizes, err := s.pio.sizes(ctx)
	if err != nil {
		return err
	}
	use := map[uint64]*packUse{}
	for seq, size := range sizes {
		if seq >= next || size < 0 {
			continue
		}
		use[seq] = &packUse{seq: seq, size: size}
	}
	err = s.eachObj(func(r blob.Ref, o objRec, derr error) error {
		if derr != nil {
			return derr // never compact on an index we cannot read
		}
		p := use[o.Pack]
		switch {
		case p == nil:
		case o.lost():
			// A damaged record stays where it is until an upload heals
			// it: its pack is not removed meanwhile.
			p.lost++
		default:
			p.live += pack.RecordHeaderLen + int64(o.Stored)
			p.recs = append(p.recs, liveRec{ref: r, off: o.Off, stored: o.Stored})
		}
		return nil
	})
	if err != nil {
		return err
	}
	var todo, small []*packUse
	for _, p := range use {
		body := p.size - pack.HeaderLen
		switch {
		case p.lost > 0:
			// Keep it whole: it holds a damaged record not yet healed.
			if len(p.recs) > 0 && float64(p.live)/float64(max(1, body)) < below {
				rep.PacksKept = append(rep.PacksKept, fmt.Sprintf("%016x: holds %d damaged blob(s) not yet healed", p.seq, p.lost))
			}
		case p.live == 0 || (body > 0 && float64(p.live)/float64(body) < below):
			todo = append(todo, p)
		case p.size < s.opts.PackSize/4:
			small = append(small, p)
		}
	}
	// Small packs (each GC run closes the pack being written) are merged
	// once there are several.
	if len(small) >= 2 {
		todo = append(todo, small...)
	}
	// Empty packs first (they free space without needing any), then the
	// emptiest.
	sort.Slice(todo, func(i, j int) bool {
		fi := float64(todo[i].live) / float64(max(1, todo[i].size))
		fj := float64(todo[j].live) / float64(max(1, todo[j].size))
		if fi != fj {
			return fi < fj
		}
		return todo[i].seq < todo[j].seq
	})
	// Without a Remote each pack is copied and removed in turn. With one,
	// the copies of several packs share a new pack, which goes to the
	// bucket before the index points at it: they are finished together.
	var batch []copied
	var batchBytes int64
	finish := func() (stop bool, err error) {
		if len(batch) == 0 {
			return false, nil
		}
		defer func() { batch, batchBytes = nil, 0 }()
		if s.pio.remote != nil {
			if err := s.flushRemote(ctx); err != nil {
				return false, err
			}
		}
		for _, c := range batch {
			err := s.finishPack(ctx, c.p, c.moved, rep)
			if errors.Is(err, ErrIndexDamaged) {
				rep.PacksKept = append(rep.PacksKept, fmt.Sprintf("%016x: %v", c.p.seq, err))
				return true, nil
			}
			if err != nil {
				return false, err
			}
		}
		return false, nil
	}
	for _, p := range todo {
		if err := ctx.Err(); err != nil {
			return err
		}
		if dryRun {
			rep.PacksRewritten++
			rep.PacksRemoved++
			rep.BytesCopied += p.live
			rep.BytesReclaimed += p.size - p.live
			continue
		}
		moved, err := s.copyPack(ctx, p)
		if errors.Is(err, ErrStorageFull) || errors.Is(err, ErrCorrupt) {
			rep.PacksKept = append(rep.PacksKept, fmt.Sprintf("%016x: %v", p.seq, err))
			continue
		}
		if errors.Is(err, errGone) {
			continue
		}
		if err != nil {
			return err
		}
		batch = append(batch, copied{p, moved})
		batchBytes += p.live
		if s.pio.remote == nil || batchBytes >= s.opts.PackSize {
			if stop, err := finish(); stop || err != nil {
				return err
			}
		}
	}
	_, err = finish()
	return err
}

type copied struct {
	p     *packUse
	moved []packLoc
}

// errGone: the pack was removed by an earlier, interrupted run's last step.
var errGone = errors.New("pack already removed")

// copyPack copies a pack's live records to the current pack and fsyncs
// them; finishPack then points the index at the copies and removes the
// old pack.
func (s *Store) copyPack(ctx context.Context, p *packUse) ([]packLoc, error) {
	sort.Slice(p.recs, func(i, j int) bool { return p.recs[i].off < p.recs[j].off })
	if p.live > 0 {
		if err := s.reserveSpace(p.live); err != nil {
			return nil, err
		}
	}
	if s.pio.remote != nil {
		locs := make([]objRec, len(p.recs))
		for i, rc := range p.recs {
			locs[i] = objRec{Pack: p.seq, Off: rc.off, Stored: rc.stored}
		}
		s.pio.prefetch(ctx, locs)
	}
	moved := make([]packLoc, len(p.recs))
	for i, rc := range p.recs {
		h, data, err := s.pio.readRecord(ctx, p.seq, rc.off, rc.stored)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, errGone // removed by an earlier, interrupted run's last step
			}
			if isRemoteErr(err) {
				return nil, err // the object store failed, not the data
			}
			// Record the damage (the blob heals from the next upload) and
			// keep the pack: nothing is copied, nothing removed.
			s.markLost(rc.ref, objRec{Pack: p.seq, Off: rc.off}, err.Error())
			return nil, fmt.Errorf("%w: %s in pack %016x: %v", ErrCorrupt, rc.ref, p.seq, err)
		}
		if h.ID != rc.ref.ID || h.Type != rc.ref.Type {
			s.markLost(rc.ref, objRec{Pack: p.seq, Off: rc.off}, "the record there holds another blob")
			return nil, fmt.Errorf("%w: pack %016x at %d holds %s, the index says %s", ErrCorrupt, p.seq, rc.off, h.ID.Short(), rc.ref)
		}
		seq, off, err := s.packs.Append(h, data)
		if err != nil {
			return nil, s.diskErr(err)
		}
		moved[i] = packLoc{seq, off}
	}
	if err := s.packs.Sync(); err != nil {
		return nil, s.diskErr(err)
	}
	return moved, nil
}

func (s *Store) finishPack(ctx context.Context, p *packUse, moved []packLoc, rep *GCReport) error {
	s.hook("compact:after-copy-sync")
	for i := 0; i < len(p.recs); i += gcBatch {
		part := p.recs[i:min(len(p.recs), i+gcBatch)]
		locs := moved[i : i+len(part)]
		err := s.update(ctx, func(txn *badger.Txn) error {
			for j, rc := range part {
				o, ok, err := getObj(txn, rc.ref)
				if err != nil {
					return err
				}
				if !ok || o.Pack != p.seq || o.Off != rc.off {
					continue // swept or moved meanwhile; the copy is garbage
				}
				o.Pack, o.Off = locs[j].pack, locs[j].off
				if err := txn.Set(objKey(rc.ref), o.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.hook("compact:after-index")
	// Remove the pack only if every record in it is accounted for.
	why, err := s.mayRemovePack(ctx, p.seq)
	if err != nil {
		return err
	}
	if why != "" {
		s.setSuspect(ctx, fmt.Sprintf("pack %016x: %s", p.seq, why))
		return fmt.Errorf("%w: pack %016x kept: %s", ErrIndexDamaged, p.seq, why)
	}
	if err := s.pio.remove(ctx, p.seq); err != nil {
		return err
	}
	// Its count goes with it: a number may be given out again (the newest
	// pack's, after a restart), and Open clears what a crash left here.
	s.update(ctx, func(txn *badger.Txn) error {
		prefix := deadKey(p.seq, 0)[:14]
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var dead [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			dead = append(dead, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range dead {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return txn.Delete(acctKey(p.seq))
	})
	rep.PacksRemoved++
	if len(p.recs) > 0 {
		rep.PacksRewritten++
	}
	rep.BytesCopied += p.live
	rep.BytesReclaimed += p.size - p.live
	return nil
}
