package store

import (
	"context"
	"encoding/binary"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Copies of directory trees.
//
// A tree is what names the files below it. When its record is lost (a pack
// file deleted or cut short, a bad block), every file below it is out of
// reach though their chunks are intact, and only a laptop that still has
// that very directory can send it again: an old snapshot's directories no
// laptop has any more. So each tree also has a copy in the index (a 'c'
// entry holding the record's stored bytes), as file systems keep two copies
// of their metadata. A read of a damaged tree falls back to its copy; check
// and the nightly scrub write a tree found damaged back into a pack from
// its copy. Trees are about 1% of what a Journal stores. A tree stored by
// an earlier release gets its copy when the scrub reads it. An index
// rebuild (Repair) starts without copies, and the scrub makes them again.

// copyKey is the index key of tree id's copy.
func copyKey(id chunk.ID) []byte {
	k := make([]byte, 1+32)
	k[0] = pCopy
	copy(k[1:], id[:])
	return k
}

// encodeCopy is a copy's value: the record's flags, its raw length and
// its stored bytes.
func encodeCopy(flags uint8, raw uint32, stored []byte) []byte {
	v := make([]byte, 5+len(stored))
	v[0] = flags
	binary.LittleEndian.PutUint32(v[1:], raw)
	copy(v[5:], stored)
	return v
}

// setCopy records the copy of tree r inside txn.
func setCopy(txn *badger.Txn, r blob.Ref, flags uint8, raw uint32, stored []byte) error {
	if r.Type != blob.Tree {
		return nil
	}
	return txn.Set(copyKey(r.ID), encodeCopy(flags&pack.FlagZstd, raw, stored))
}

// copyTrees records the copies of the trees an upload just wrote (those
// in locs), after the upload's own transaction: a batch of trees can be
// larger than a transaction may be. Best effort: a tree left without a copy
// (a crash, a full disk) gets one when the scrub reads it.
func (s *Store) copyTrees(ctx context.Context, blobs []blob.Blob, locs map[blob.Ref]packLoc) {
	const most = 256 << 10 // bytes of copies a transaction
	var part []*blob.Blob
	n := 0
	flush := func() {
		if len(part) == 0 {
			return
		}
		s.update(ctx, func(txn *badger.Txn) error {
			for _, b := range part {
				var flags uint8
				if b.Compressed {
					flags = pack.FlagZstd
				}
				if err := setCopy(txn, b.Ref, flags, uint32(b.RawLen), b.Data); err != nil {
					return err
				}
			}
			return nil
		})
		part, n = part[:0], 0
	}
	seen := map[blob.Ref]bool{}
	for i := range blobs {
		b := &blobs[i]
		if _, written := locs[b.Ref]; b.Type != blob.Tree || !written || seen[b.Ref] {
			continue
		}
		seen[b.Ref] = true
		if n+len(b.Data) > most {
			flush()
		}
		part = append(part, b)
		n += len(b.Data)
	}
	flush()
}

// treeCopy returns the copy of tree r, verified against its ID: raw bytes,
// stored bytes and the flags of the stored form.
func (s *Store) treeCopy(r blob.Ref) (raw, stored []byte, flags uint8, ok bool) {
	if r.Type != blob.Tree {
		return nil, nil, 0, false
	}
	var v []byte
	if err := s.view(func(txn *badger.Txn) (err error) {
		v, ok, err = get(txn, copyKey(r.ID))
		return err
	}); err != nil || !ok || len(v) < 5 {
		return nil, nil, 0, false
	}
	flags, n, stored := v[0], binary.LittleEndian.Uint32(v[1:]), v[5:]
	raw = stored
	if flags&pack.FlagZstd != 0 {
		var err error
		if raw, err = s.codec.Decompress(nil, stored, int(n)); err != nil {
			return nil, nil, 0, false
		}
	}
	if len(raw) != int(n) || chunk.Sum(raw) != r.ID {
		return nil, nil, 0, false
	}
	return raw, stored, flags, true
}

// hasCopy reports whether tree r has a copy (not checking it).
func (s *Store) hasCopy(r blob.Ref) bool {
	ok := false
	s.view(func(txn *badger.Txn) (err error) {
		_, ok, err = get(txn, copyKey(r.ID))
		return err
	})
	return ok
}

// healTreesFromCopies writes every tree marked lost that has an intact
// copy back into a pack, as an upload of it would: its snapshots are whole
// again without any laptop. It reports how many it healed. It takes putMu
// and then refMu (for the reference walks a healed tree owes): the caller
// must hold neither.
func (s *Store) healTreesFromCopies(ctx context.Context) (int, error) {
	if s.opts.ReadOnly {
		return 0, nil
	}
	var lost []blob.Ref
	if err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pLost, byte(blob.Tree)}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 34 {
				continue
			}
			r := blob.Ref{Type: blob.Tree}
			copy(r.ID[:], k[2:])
			lost = append(lost, r)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	healed, jobs := 0, false
	for len(lost) > 0 {
		part := lost[:min(len(lost), 256)]
		lost = lost[len(part):]
		n, j, err := s.healFromCopies(ctx, part)
		healed += n
		jobs = jobs || j
		if err != nil {
			return healed, err
		}
	}
	if jobs {
		s.refMu.Lock()
		err := s.runJobs(ctx)
		s.refMu.Unlock()
		if err != nil {
			return healed, err
		}
	}
	return healed, nil
}

// healFromCopies writes the trees of part that have an intact copy back
// into a pack (one fsync for all), then points each one still marked lost
// at its new record. It reports how many it healed, and whether
// reference-counting jobs were added.
func (s *Store) healFromCopies(ctx context.Context, part []blob.Ref) (healed int, jobs bool, err error) {
	type cp struct {
		raw, stored []byte
		flags       uint8
	}
	copies := map[blob.Ref]cp{}
	var need int64
	for _, r := range part {
		if raw, stored, flags, ok := s.treeCopy(r); ok {
			copies[r] = cp{raw, stored, flags}
			need += int64(len(stored) + pack.RecordHeaderLen)
		}
	}
	if len(copies) == 0 {
		return 0, false, nil
	}
	if err := s.reserveSpace(need); err != nil {
		return 0, false, nil // the next check or scrub tries again
	}
	s.putMu.RLock()
	defer s.putMu.RUnlock()
	type heal struct {
		r     blob.Ref
		h     pack.Header
		at    packLoc
		flags uint8
	}
	var todo []heal
	for _, r := range part {
		c, ok := copies[r]
		if !ok {
			continue
		}
		h := pack.Header{Type: blob.Tree, Flags: c.flags, Stored: uint32(len(c.stored)), Raw: uint32(len(c.raw)), ID: r.ID}
		seq, off, err := s.packs.Append(h, c.stored)
		if err != nil {
			return 0, false, s.diskErr(err)
		}
		if s.pio.remote != nil {
			s.pio.cache.put(seq, off, h.Encode(c.stored))
		}
		todo = append(todo, heal{r, h, packLoc{seq, off}, c.flags})
	}
	if err := s.packs.Sync(); err != nil {
		return 0, false, s.diskErr(err)
	}
	// One transaction for all, as an upload indexes its batch: a crash
	// leaves them all indexed or all the pack's garbage (counted at the
	// next start, as an upload's).
	var done []packLoc
	err = s.update(ctx, func(txn *badger.Txn) error {
		healed, jobs, done = 0, false, done[:0]
		for _, t := range todo {
			o, ok, err := getObj(txn, t.r)
			if err != nil {
				return err
			}
			if !ok || !o.lost() {
				continue // healed or swept meanwhile
			}
			if err := txn.Set(deadKey(o.Pack, o.Off), nil); err != nil {
				return err
			}
			n := objRec{Type: blob.Tree, Flags: t.flags, Pack: t.at.pack, Off: t.at.off, Stored: t.h.Stored, Raw: t.h.Raw, Owners: o.Owners}
			if err := txn.Set(objKey(t.r), n.encode()); err != nil {
				return err
			}
			j, err := healLocked(txn, t.r)
			if err != nil {
				return err
			}
			jobs = jobs || j
			healed++
			done = append(done, t.at)
		}
		return nil
	})
	orphans := map[blob.Ref]packLoc{}
	for _, t := range todo {
		if err != nil || !slices.Contains(done, t.at) {
			orphans[t.r] = t.at // written, not indexed: the pack's garbage
		}
	}
	if len(orphans) > 0 {
		s.countOrphans(ctx, orphans)
	}
	if err != nil {
		return 0, false, err
	}
	return healed, jobs, nil
}

// dropStrayCopies removes the copies of trees the index no longer has
// (garbage collection removed the tree while an earlier release ran, or
// the rebuild found nothing that uses it).
func (s *Store) dropStrayCopies(ctx context.Context) error {
	var stray [][]byte
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pCopy}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			r := blob.Ref{Type: blob.Tree}
			if len(k) != 33 {
				stray = append(stray, k)
				continue
			}
			copy(r.ID[:], k[1:])
			if _, ok, err := getObj(txn, r); err != nil {
				return err
			} else if !ok {
				stray = append(stray, k)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.deleteKeys(ctx, stray)
}

// ensureCopy gives tree r, just read intact at o with its stored bytes,
// a copy if it has none (a tree stored by an earlier release).
func (s *Store) ensureCopy(ctx context.Context, r blob.Ref, o objRec, stored []byte) {
	if r.Type != blob.Tree || s.opts.ReadOnly {
		return
	}
	s.update(ctx, func(txn *badger.Txn) error {
		if _, ok, err := get(txn, copyKey(r.ID)); err != nil || ok {
			return err
		}
		return setCopy(txn, r, o.Flags, o.Raw, stored)
	})
}
