package store

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Pack accounting: compaction never removes a pack holding a record it
// cannot account for.
//
// Before a pack is removed, every record in it is looked up: a record the
// index points at elsewhere is a copy, one the index still points at here
// was not copied (the index iteration missed it: the pack is kept), and one
// the index does not know at all must be garbage the store itself made: a
// blob garbage collection swept from this pack, or an upload written but
// never indexed (its request failed, or the process died before the index
// commit). The store counts those per pack ('m' "acct" seq): a pack with
// more unknown records than its count is kept, and garbage collection stops
// until the index is rebuilt, because the index has lost entries.
//
// Packs written before a store had this accounting (sequence numbers below
// 'm' "acctfrom") are checked only for records the index still points at.

var (
	acctFromKey = []byte{pMeta, 'a', 'c', 'c', 't', 'f', 'r', 'o', 'm'}
	runningKey  = []byte{pMeta, 'r', 'u', 'n', 'n', 'i', 'n', 'g'}
)

func acctKey(seq uint64) []byte {
	k := append([]byte{pMeta, 'a', 'c', 'c', 't', '/'}, make([]byte, 8)...)
	binary.BigEndian.PutUint64(k[6:], seq)
	return k
}

func getU64(txn *badger.Txn, key []byte) (uint64, bool, error) {
	v, ok, err := get(txn, key)
	if err != nil || !ok || len(v) != 8 {
		return 0, false, err
	}
	return binary.BigEndian.Uint64(v), true, nil
}

func setU64(txn *badger.Txn, key []byte, n uint64) error {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return txn.Set(key, b)
}

// addGarbage counts n more records of pack seq that the index will never
// point at, inside txn.
func addGarbage(txn *badger.Txn, seq uint64, n int) error {
	if seq == 0 || n == 0 {
		return nil
	}
	cur, _, err := getU64(txn, acctKey(seq))
	if err != nil {
		return err
	}
	return setU64(txn, acctKey(seq), cur+uint64(n))
}

// countOrphans records, best effort, the records an upload wrote but could
// not index.
func (s *Store) countOrphans(ctx context.Context, locs map[blob.Ref]packLoc) {
	per := map[uint64]int{}
	for _, l := range locs {
		per[l.pack]++
	}
	s.update(ctx, func(txn *badger.Txn) error {
		for seq, n := range per {
			if err := addGarbage(txn, seq, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// startAccounting runs at Open: it starts the accounting on a store that
// has none yet (from the next pack on), and after an unclean stop counts the
// records the interrupted run wrote but never indexed.
func (s *Store) startAccounting(ctx context.Context, seqs []uint64) error {
	next := s.packs.NextSeq()
	var from, lastRun uint64
	var hadFrom, unclean bool
	err := s.view(func(txn *badger.Txn) (err error) {
		if from, hadFrom, err = getU64(txn, acctFromKey); err != nil {
			return err
		}
		lastRun, unclean, err = getU64(txn, runningKey)
		return err
	})
	if err != nil {
		return err
	}
	orphans := map[uint64]int{}
	if unclean && hadFrom {
		// Only the last packs of the interrupted run can hold records whose
		// upload never reached the index (every pack of an earlier run was
		// never appended to again).
		var last []uint64
		for _, seq := range seqs {
			if seq >= lastRun && seq >= from {
				last = append(last, seq)
			}
		}
		if len(last) > 2 {
			last = last[len(last)-2:]
		}
		for _, seq := range last {
			n, err := s.unknownRecords(seq)
			if err != nil {
				return err
			}
			orphans[seq] = n - s.garbageCount(seq)
		}
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		if !hadFrom {
			if err := setU64(txn, acctFromKey, next); err != nil {
				return err
			}
		}
		// A count of a pack number not in use any more (GC removed the
		// newest pack, a crash came before its count went): the number is
		// given out again, and the new pack must not inherit the count.
		prefix := acctKey(0)[:6]
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var stale [][]byte
		for it.Seek(acctKey(next)); it.ValidForPrefix(prefix); it.Next() {
			stale = append(stale, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range stale {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for seq, n := range orphans {
			if n > 0 {
				if err := addGarbage(txn, seq, n); err != nil {
					return err
				}
			}
		}
		return setU64(txn, runningKey, next)
	})
}

// stopAccounting records a clean stop.
func (s *Store) stopAccounting() {
	if s.opts.ReadOnly || s.db == nil {
		return
	}
	// Called by Close once the store is marked closed: straight to the
	// index (dbUpdate refuses a closed store), or the marker stays and the
	// next Open takes a clean stop for a crash.
	func() {
		defer recoverIndex(new(error))
		s.db.Update(func(txn *badger.Txn) error { return txn.Delete(runningKey) })
	}()
}

func (s *Store) garbageCount(seq uint64) int {
	var n uint64
	s.view(func(txn *badger.Txn) (err error) {
		n, _, err = getU64(txn, acctKey(seq))
		return err
	})
	return int(n)
}

// packAudit is what a pack holds, as the index sees it.
type packAudit struct {
	stillHere  int // records the index points at in this pack
	unknown    int // records (intact, or damaged with a readable header) the index does not know
	unreadable int // damaged stretches with no readable header
	// intactOfLost: intact records of blobs the index has as damaged (or
	// at another place): maybe their only intact copy.
	intactOfLost int
	firstProblem string
}

func (s *Store) auditPack(seq uint64) (packAudit, error) {
	var a packAudit
	lookup := func(r blob.Ref, off int64, intact bool) error {
		return s.view(func(txn *badger.Txn) error {
			o, ok, err := getObj(txn, r)
			if err != nil {
				return err
			}
			switch {
			case !ok:
				// Unknown, unless it is a damaged record whose blob was
				// healed elsewhere (and since swept): garbage already.
				if _, dead, err := get(txn, deadKey(seq, off)); err != nil {
					return err
				} else if !dead {
					a.unknown++
				}
			case o.Pack == seq:
				a.stillHere++
				if a.firstProblem == "" {
					a.firstProblem = fmt.Sprintf("the index still points at %s at offset %d", r, off)
				}
			case intact && o.lost():
				// The index has the blob as damaged: this intact record may
				// be its only good copy (compaction's leftover, a pack file
				// renamed), never garbage.
				a.intactOfLost++
				if a.firstProblem == "" {
					a.firstProblem = fmt.Sprintf("an intact copy of %s, which the index has as damaged, is at offset %d", r, off)
				}
			}
			return nil
		})
	}
	var lerr error
	_, err := s.pio.scan(context.Background(), seq, func(h pack.Header, off int64, _ []byte) error {
		return lookup(blob.Ref{Type: h.Type, ID: h.ID}, off, true)
	}, func(sp pack.DamagedSpan) {
		if sp.Header != nil {
			if err := lookup(blob.Ref{Type: sp.Header.Type, ID: sp.Header.ID}, sp.Off, false); err != nil && lerr == nil {
				lerr = err
			}
			return
		}
		var dead bool
		s.view(func(txn *badger.Txn) (err error) {
			_, dead, err = get(txn, deadKey(seq, sp.Off))
			return err
		})
		if dead {
			return // a damaged record whose blob was healed elsewhere
		}
		a.unreadable++
		if a.firstProblem == "" {
			a.firstProblem = fmt.Sprintf("bytes %d-%d are damaged beyond reading", sp.Off, sp.End)
		}
	})
	if err == nil {
		err = lerr
	}
	return a, err
}

// unknownRecords counts the records of a pack the index does not know,
// counting a torn tail as one.
func (s *Store) unknownRecords(seq uint64) (int, error) {
	a, err := s.auditPack(seq)
	// An intact record of a blob the index has as damaged, in a pack the
	// interrupted run wrote, is a heal (an upload, a tree written back from
	// its copy) cut off before its index commit: the next heal writes the
	// blob again, so this record is garbage (a repair, which could index
	// it, starts the accounting over).
	return a.unknown + a.unreadable + a.intactOfLost, err
}

// mayRemovePack says why pack seq must be kept, or "" if every record in it
// is accounted for. It runs after compaction moved its live records.
func (s *Store) mayRemovePack(ctx context.Context, seq uint64) (string, error) {
	a, err := s.auditPack(seq)
	if err != nil {
		return "", err
	}
	if a.stillHere > 0 {
		return fmt.Sprintf("%d record(s) the index still points at were not copied (%s)", a.stillHere, a.firstProblem), nil
	}
	if a.intactOfLost > 0 {
		return fmt.Sprintf("it holds %d intact record(s) of blobs the index has as damaged (%s): a repair indexes them again", a.intactOfLost, a.firstProblem), nil
	}
	var from uint64
	s.view(func(txn *badger.Txn) (err error) {
		from, _, err = getU64(txn, acctFromKey)
		return err
	})
	if seq < from {
		return "", nil // written before the accounting: only the check above
	}
	if known := s.garbageCount(seq); a.unknown+a.unreadable > known {
		if a.unreadable > 0 {
			return fmt.Sprintf("it holds damage that cannot be attributed to a blob (%s)", a.firstProblem), nil
		}
		return fmt.Sprintf("it holds %d record(s) the index does not know, %d more than the garbage counted for it", a.unknown, a.unknown-known), nil
	}
	return "", nil
}
