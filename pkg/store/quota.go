package store

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// canWrite checks that the user may back up.
func (s *Store) canWrite(user UserID) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[user]
	switch {
	case !ok:
		return fmt.Errorf("%w: user %s is not registered", ErrNotFound, user)
	case s.opts.Rebuild:
		return nil
	case u.Revoked:
		return fmt.Errorf("%w: laptop %s was revoked and may no longer back up", ErrRevoked, u.Serial)
	case !u.Approved:
		return fmt.Errorf("%w: laptop %s is waiting for staff approval", ErrRevoked, u.Serial)
	}
	return nil
}

// QuotaOf returns the quota that applies to a user: their own, else the store default.
func (s *Store) QuotaOf(user UserID) Quota {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u, ok := s.users[user]; ok && u.Quota != nil {
		return *u.Quota
	}
	return s.opts.DefaultQuota
}

// checkHardQuota refuses an upload that would take the user over their hard
// quota. Blobs the user already holds cost nothing; others cost their stored
// size as uploaded, whether or not another user has them (so the answer
// does not depend on what other users hold).
func (s *Store) checkHardQuota(user UserID, blobs []blob.Blob) error {
	q := s.QuotaOf(user)
	if q.Hard <= 0 || s.opts.Rebuild {
		return nil
	}
	var usage Usage
	var add int64
	err := s.view(func(txn *badger.Txn) error {
		var err error
		if usage, err = getUsage(txn, user); err != nil {
			return err
		}
		seen := map[blob.Ref]bool{}
		for i := range blobs {
			r := blobs[i].Ref
			if seen[r] {
				continue
			}
			seen[r] = true
			h, err := getHold(txn, user, r)
			if err != nil {
				return err
			}
			if !h.held() {
				add += int64(len(blobs[i].Data))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if usage.Bytes+add > q.Hard {
		return fmt.Errorf("%w: this backup needs %d more bytes but only %d of the %d-byte hard quota are left; ask staff to raise the quota or delete old documents",
			ErrOverQuota, add, max(0, q.Hard-usage.Bytes), q.Hard)
	}
	return nil
}
