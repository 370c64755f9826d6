package store

import (
	"context"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// Adopt gives user a hold on blobs that are stored intact, without their
// bytes, as if user had uploaded them (a pending upload until a snapshot
// references them). A school server rebuilt from its mothership uses it: the
// recovery bundle carries a chunk that many laptops share once. It returns
// the refs that are not stored, or stored only damaged: those must be Put.
//
// Adopt is never offered to laptops: it would let one laptop learn, and
// read, what another holds. Only code that has already decided the user may
// have these blobs calls it.
func (s *Store) Adopt(ctx context.Context, user UserID, refs []blob.Ref) (missing []blob.Ref, err error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if err := s.canWrite(user); err != nil {
		return nil, err
	}
	// Garbage collection takes putMu for writing before it removes blobs: a
	// blob seen here stays until the hold is recorded.
	s.putMu.RLock()
	defer s.putMu.RUnlock()
	seen := make(map[blob.Ref]bool, len(refs))
	for len(refs) > 0 {
		part := refs[:min(len(refs), 2000)]
		refs = refs[len(part):]
		var miss []blob.Ref
		err := s.update(ctx, func(txn *badger.Txn) error {
			miss = miss[:0]
			now := s.opts.Now().Unix()
			if err := s.noteStamp(txn, now); err != nil {
				return err
			}
			usage, err := getUsage(txn, user)
			if err != nil {
				return err
			}
			for _, r := range part {
				if seen[r] {
					continue
				}
				o, ok, err := getObj(txn, r)
				if err != nil {
					return err
				}
				if !ok || o.lost() {
					miss = append(miss, r)
					continue
				}
				h, err := getHold(txn, user, r)
				if err != nil {
					return err
				}
				if !h.held() {
					o.Owners++
					h.Size = o.Stored
					usage.Bytes += int64(h.Size)
					usage.Blobs++
					if err := txn.Set(objKey(r), o.encode()); err != nil {
						return err
					}
				}
				if h.Refs == 0 {
					h.Pending = now
				}
				if err := txn.Set(holdKey(user, r), h.encode()); err != nil {
					return err
				}
			}
			return txn.Set(usageKey(user), usage.encode())
		})
		if err != nil {
			return nil, err
		}
		for _, r := range part {
			seen[r] = true
		}
		missing = append(missing, miss...)
	}
	return missing, nil
}
