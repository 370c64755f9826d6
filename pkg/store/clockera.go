package store

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// Pending uploads are stamped with the server's clock as it reads, and
// released Options.PendingExpiry after their stamp. A school server whose
// clock battery died boots at 2000-01-01 (after a power cut, with no
// network to correct it): uploads stamped then would look 26 years old once
// the clock is corrected, and the night's lifecycle would release, as
// abandoned, what a laptop sent an hour before.
//
// The store therefore knows the newest time it has seen (its creation and
// the snapshots it committed itself), and an upload stamped while the clock
// reads more than clockSlack behind that time is noted as such: one index
// key per second stamped (pEra + the stamp), written blind so that uploads
// of the same second never conflict on it. While the clock stays behind,
// those uploads expire by their stamps as any other (both are of the same
// clock). Once the clock has caught up, the lifecycle stamps them again
// with its own time, so they are kept for PendingExpiry from the
// correction, and forgets the note. An upload stamped in the future (a
// clock that jumped forward, then was set right) is stamped again with the
// lifecycle's time too, instead of being kept until that future comes.
// The notes of a clock still behind are forgotten once their uploads are
// past expiry on that clock. Repair drops the notes with the rest of the
// index (its holds are rebuilt from snapshots).
const clockSlack = int64(time.Hour / time.Second)

// eraKey notes a stamp given while the clock was behind: pEra + stamp (8
// bytes, big-endian) → the newest time known then (8 bytes).
func eraKey(stamp int64) []byte {
	k := make([]byte, 9)
	k[0] = pEra
	binary.BigEndian.PutUint64(k[1:], uint64(stamp))
	return k
}

// noteTime raises the newest time the store knows to t.
func (s *Store) noteTime(t time.Time) {
	u := t.Unix()
	for {
		old := s.clockHigh.Load()
		if u <= old || s.clockHigh.CompareAndSwap(old, u) {
			return
		}
	}
}

// noteStamp records, in txn, that holds stamped now were stamped by a
// clock behind the newest time the store knows, if they were.
func (s *Store) noteStamp(txn *badger.Txn, now int64) error {
	high := s.clockHigh.Load()
	if now >= high-clockSlack {
		return nil
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(high))
	return txn.Set(eraKey(now), v[:])
}

// clockEras reads the notes of stamps given by a clock that was behind.
func (s *Store) clockEras() (map[int64]int64, error) {
	eras := map[int64]int64{}
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEra}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				continue
			}
			eras[int64(binary.BigEndian.Uint64(k[1:]))] = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return eras, err
}

// restamp is a pending hold found with stamp.
type restamp struct {
	user  UserID
	ref   blob.Ref
	stamp int64
}

// restampHolds stamps the given users' pending holds again with now, each
// only if it is still pending with the stamp it was found with, and then
// forgets the notes in drop. It returns how many holds it stamped.
func (s *Store) restampHolds(ctx context.Context, holds []restamp, now int64, drop []int64) (int64, error) {
	var n int64
	for len(holds) > 0 {
		part := holds[:min(len(holds), 1000)]
		holds = holds[len(part):]
		var done int64
		err := s.update(ctx, func(txn *badger.Txn) error {
			done = 0
			for _, r := range part {
				h, err := getHold(txn, r.user, r.ref)
				if err != nil {
					return err
				}
				if h.Refs > 0 || h.Pending != r.stamp {
					continue // committed or stamped again since
				}
				h.Pending = now
				if err := txn.Set(holdKey(r.user, r.ref), h.encode()); err != nil {
					return err
				}
				done++
			}
			if done > 0 {
				return s.noteStamp(txn, now)
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += done
	}
	keys := make([][]byte, len(drop))
	for i, st := range drop {
		keys[i] = eraKey(st)
	}
	return n, s.deleteKeys(ctx, keys)
}
