package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// The nightly lifecycle: retention, then expiry of abandoned uploads, then
// quota, then garbage collection and pack compaction.
//
// Lifecycle work that takes holds away from a user (deleting snapshots,
// expiring pending uploads) never runs for a user whose backup session is
// open (BeginSession): a session was told by Need which blobs it already
// holds, and those must still be held when it commits. Such users are
// reported as busy and handled at the next run. Garbage collection only
// deletes blobs that nobody holds, inside index transactions that conflict
// with any concurrent upload of the same blob, so it needs no such lock.

// BeginSession marks user as backing up until end is called: lifecycle work
// that would release what the user holds skips them meanwhile. The server
// calls it when it grants a session. It waits if the lifecycle is working on
// this user (briefly: one user's retention or expiry).
func (s *Store) BeginSession(user UserID) (end func()) {
	l := s.sessionLock(user)
	l.RLock()
	var once sync.Once
	return func() { once.Do(l.RUnlock) }
}

func (s *Store) sessionLock(user UserID) *sync.RWMutex {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	l, ok := s.sessions[user]
	if !ok {
		l = new(sync.RWMutex)
		s.sessions[user] = l
	}
	return l
}

// whileIdle runs fn unless the user has an open session (then ran is false).
func (s *Store) whileIdle(user UserID, fn func() error) (ran bool, err error) {
	l := s.sessionLock(user)
	if !l.TryLock() {
		return false, nil
	}
	defer l.Unlock()
	return true, fn()
}

// PolicyOf returns the retention policy that applies to a user.
func (s *Store) PolicyOf(user UserID) Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u, ok := s.users[user]; ok && u.Retention != nil {
		return *u.Retention
	}
	return *s.opts.Retention
}

// ServerPolicy is the retention policy of every user without one of its
// own (Options.Retention).
func (s *Store) ServerPolicy() Policy { return *s.opts.Retention }

func (s *Store) now(t time.Time) time.Time {
	if t.IsZero() {
		return s.opts.Now()
	}
	return t
}

// usersFor returns one user, or every user if id is 0.
func (s *Store) usersFor(id UserID) ([]*User, error) {
	if id == 0 {
		return s.Users(), nil
	}
	u, err := s.User(id)
	if err != nil {
		return nil, err
	}
	return []*User{u}, nil
}

// RetentionOptions choose what Retention does.
type RetentionOptions struct {
	// User limits the run to one user; 0 means every user.
	User UserID
	// Now is the time the policy is evaluated at (zero: the store's clock);
	// its location decides where calendar days and months begin.
	Now time.Time
	// DryRun only reports what would be deleted.
	DryRun bool
}

// UserRetention is what retention decided for one user.
type UserRetention struct {
	Serial    string    `json:"serial"`
	Policy    Policy    `json:"policy"`
	Snapshots []Verdict `json:"snapshots"`
	Deleted   int       `json:"deleted"`
	// Busy: the user was backing up, so nothing was deleted; the next run
	// does it.
	Busy bool `json:"busy,omitempty"`
}

// RetentionReport is what Retention did (or, in a dry run, would do).
type RetentionReport struct {
	At      time.Time       `json:"at"`
	DryRun  bool            `json:"dry_run,omitempty"`
	Kept    int             `json:"kept"`
	Deleted int             `json:"deleted"`
	Users   []UserRetention `json:"users"`
}

// Retention applies each user's retention policy and deletes the snapshots
// it does not keep. The latest and pinned snapshots are always kept.
func (s *Store) Retention(ctx context.Context, opts RetentionOptions) (*RetentionReport, error) {
	if !opts.DryRun {
		if err := s.writable(); err != nil {
			return nil, err
		}
	}
	now := s.now(opts.Now)
	users, err := s.usersFor(opts.User)
	if err != nil {
		return nil, err
	}
	rep := &RetentionReport{At: now, DryRun: opts.DryRun, Users: []UserRetention{}}
	for _, u := range users {
		snaps := s.Snapshots(u.ID)
		if len(snaps) == 0 {
			continue
		}
		ur := UserRetention{Serial: u.Serial, Policy: s.PolicyOf(u.ID)}
		ur.Snapshots = ur.Policy.Apply(snaps, now)
		var drop []SnapshotID
		for _, v := range ur.Snapshots {
			if v.Keep {
				rep.Kept++
			} else {
				drop = append(drop, v.ID)
			}
		}
		if !opts.DryRun && len(drop) > 0 {
			ran, err := s.whileIdle(u.ID, func() error {
				for _, id := range drop {
					deleted, err := s.deleteLocked(ctx, u.ID, id)
					if err != nil {
						return err
					}
					if deleted {
						ur.Deleted++
					}
				}
				return nil
			})
			if err != nil {
				return rep, fmt.Errorf("retention of %s: %w", u.Serial, err)
			}
			ur.Busy = !ran
		} else if opts.DryRun {
			ur.Deleted = len(drop)
		}
		rep.Deleted += ur.Deleted
		rep.Users = append(rep.Users, ur)
	}
	return rep, nil
}

// deleteLocked deletes one snapshot that retention or quota chose, taking
// s.refMu for just that deletion so that commits interleave with a long
// lifecycle run. It reports false, and deletes nothing, for a snapshot
// pinned or deleted (by staff) since it was chosen.
func (s *Store) deleteLocked(ctx context.Context, user UserID, id SnapshotID) (bool, error) {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	err := s.deleteSnapshotLocked(ctx, user, id, true)
	if errors.Is(err, errPinnedSince) || errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// QuotaOptions choose what EnforceQuota does.
type QuotaOptions struct {
	// User limits the run to one user; 0 means every user.
	User UserID
	// DryRun only reports what would be deleted.
	DryRun bool
}

// QuotaEviction is what the soft quota did to one user.
type QuotaEviction struct {
	Serial  string       `json:"serial"`
	Soft    int64        `json:"soft"`
	Before  int64        `json:"before"`
	After   int64        `json:"after"`
	Deleted []SnapshotID `json:"deleted"`
	// StillOver: only the latest and pinned snapshots are left and they
	// alone are over the soft quota.
	StillOver bool `json:"still_over,omitempty"`
	Busy      bool `json:"busy,omitempty"`
}

// QuotaReport lists the users that were over their soft quota.
type QuotaReport struct {
	DryRun  bool            `json:"dry_run,omitempty"`
	Deleted int             `json:"deleted"`
	Users   []QuotaEviction `json:"users"`
}

// EnforceQuota deletes, for every user over their soft quota, their oldest
// snapshots that are neither pinned nor the latest, until the user is under
// the quota again (or only the latest and pinned snapshots are left).
func (s *Store) EnforceQuota(ctx context.Context, opts QuotaOptions) (*QuotaReport, error) {
	return s.enforceQuota(ctx, opts, nil, 0)
}

// enforceQuota is EnforceQuota; gone lists snapshots a dry run of retention
// would already have deleted, and uploads pending since before expired
// (Unix seconds, 0: none) those a dry run of ExpirePending would release.
func (s *Store) enforceQuota(ctx context.Context, opts QuotaOptions, gone map[SnapshotID]bool, expired int64) (*QuotaReport, error) {
	if !opts.DryRun {
		if err := s.writable(); err != nil {
			return nil, err
		}
	}
	users, err := s.usersFor(opts.User)
	if err != nil {
		return nil, err
	}
	rep := &QuotaReport{DryRun: opts.DryRun, Users: []QuotaEviction{}}
	for _, u := range users {
		q := s.QuotaOf(u.ID)
		if q.Soft <= 0 {
			continue
		}
		var drop []SnapshotID
		dropped := map[SnapshotID]bool{}
		for id := range gone {
			dropped[id] = true
		}
		before, err := s.usageWithout(ctx, u.ID, dropped, expired)
		if err != nil {
			return rep, err
		}
		if before <= q.Soft {
			continue
		}
		ev := QuotaEviction{Serial: u.Serial, Soft: q.Soft, Before: before, After: before, Deleted: []SnapshotID{}}
		snaps := s.Snapshots(u.ID)
		for i, sn := range snaps {
			if ev.After <= q.Soft {
				break
			}
			if i == len(snaps)-1 || sn.Pinned || dropped[sn.ID] {
				continue
			}
			dropped[sn.ID] = true
			drop = append(drop, sn.ID)
			if ev.After, err = s.usageWithout(ctx, u.ID, dropped, expired); err != nil {
				return rep, err
			}
		}
		ev.StillOver = ev.After > q.Soft
		if !opts.DryRun {
			ran, err := s.whileIdle(u.ID, func() error {
				for _, id := range drop {
					deleted, err := s.deleteLocked(ctx, u.ID, id)
					if err != nil {
						return err
					}
					if deleted {
						ev.Deleted = append(ev.Deleted, id)
					}
				}
				return nil
			})
			if err != nil {
				return rep, fmt.Errorf("quota of %s: %w", u.Serial, err)
			}
			ev.Busy = !ran
			if ran {
				us, err := s.Usage(ctx, u.ID)
				if err != nil {
					return rep, err
				}
				ev.After = us.Bytes
			} else {
				ev.After = before
			}
		} else {
			ev.Deleted = drop
		}
		rep.Deleted += len(ev.Deleted)
		rep.Users = append(rep.Users, ev)
	}
	return rep, nil
}

// usageWithout computes what the user's usage would be if the snapshots in
// drop were deleted: the charged size of every blob the remaining snapshots
// reach, plus pending uploads (but those pending since before expired).
func (s *Store) usageWithout(ctx context.Context, user UserID, drop map[SnapshotID]bool, expired int64) (int64, error) {
	reach := map[blob.Ref]bool{}
	var stack []chunk.ID
	for _, sn := range s.Snapshots(user) {
		r := blob.Ref{Type: blob.Tree, ID: sn.Root}
		if drop[sn.ID] || reach[r] {
			continue
		}
		reach[r] = true
		stack = append(stack, sn.Root)
	}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		t, err := s.ReadTree(ctx, id)
		if err != nil {
			continue // a damaged tree: check reports it; count what we can
		}
		for _, r := range treeRefs(t) {
			if !reach[r] {
				reach[r] = true
				if r.Type == blob.Tree {
					stack = append(stack, r.ID)
				}
			}
		}
	}
	var total int64
	err := s.eachHold(user, func(r blob.Ref, h holdRec) error {
		if reach[r] || h.Pending != 0 && h.Pending >= expired {
			total += int64(h.Size)
		}
		return nil
	})
	return total, err
}

// eachHold calls fn for every hold of a user.
func (s *Store) eachHold(user UserID, fn func(r blob.Ref, h holdRec) error) error {
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: holdPrefix(user), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			r := blob.Ref{Type: blob.Type(k[9])}
			copy(r.ID[:], k[10:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(r, decodeHold(v)); err != nil {
				return err
			}
		}
		return nil
	})
}

// FairShare is a user's share of the disk: each blob they hold counts its
// stored size divided by the number of users holding it. The fair shares of
// all users add up to the stored size of everything held. Staff see it next
// to usage; it is never shown to students, since it depends on what others
// hold.
func (s *Store) FairShare(ctx context.Context, user UserID) (int64, error) {
	var share float64
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: holdPrefix(user), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			r := blob.Ref{Type: blob.Type(k[9])}
			copy(r.ID[:], k[10:])
			o, ok, err := getObj(txn, r)
			if err != nil {
				return err
			}
			if ok && o.Owners > 0 {
				share += float64(o.Stored) / float64(o.Owners)
			}
		}
		return nil
	})
	return int64(share + 0.5), err
}

// ExpireReport says which abandoned uploads were released.
type ExpireReport struct {
	DryRun bool  `json:"dry_run,omitempty"`
	Holds  int64 `json:"holds"`
	Bytes  int64 `json:"bytes"`
	Users  int   `json:"users"`
	Busy   int   `json:"busy_users,omitempty"`
	// Restamped counts uploads stamped again with this run's time: they
	// were stamped by a clock that read behind (or ahead of) the time and
	// has been set right since, so their age was unknown. Each is kept
	// Options.PendingExpiry from now.
	Restamped int64 `json:"restamped,omitempty"`
}

// ExpirePending releases uploads that no snapshot references and that are
// older than Options.PendingExpiry at now (zero: the store's clock): an
// abandoned session does not keep its chunks for ever. Garbage collection
// then removes the chunks nobody else holds.
func (s *Store) ExpirePending(ctx context.Context, now time.Time, dryRun bool) (*ExpireReport, error) {
	if !dryRun {
		if err := s.writable(); err != nil {
			return nil, err
		}
	}
	nowU := s.now(now).Unix()
	cutoff := nowU - int64(s.opts.PendingExpiry/time.Second)
	eras, err := s.clockEras()
	if err != nil {
		return nil, err
	}
	// Stamps of a clock that was behind and has caught up are stamped
	// again with this run's time (clockera.go); notes of a clock still
	// behind are kept until their uploads are past expiry on that clock.
	var drop []int64
	for st, high := range eras {
		if nowU >= high-clockSlack || st < cutoff {
			drop = append(drop, st)
		}
		if nowU < high-clockSlack {
			delete(eras, st)
		}
	}
	type item struct {
		r    blob.Ref
		size int64
	}
	old := map[UserID][]item{}
	var again []restamp
	err = s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pHold}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			h := decodeHold(v)
			if h.Pending == 0 || h.Refs > 0 {
				continue
			}
			_, behind := eras[h.Pending]
			if !behind && h.Pending >= cutoff && h.Pending <= nowU+clockSlack {
				continue
			}
			u := UserID(binary.BigEndian.Uint64(k[1:9]))
			r := blob.Ref{Type: blob.Type(k[9])}
			copy(r.ID[:], k[10:])
			if behind || h.Pending > nowU+clockSlack {
				again = append(again, restamp{u, r, h.Pending})
				continue
			}
			old[u] = append(old[u], item{r, int64(h.Size)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep := &ExpireReport{DryRun: dryRun}
	if dryRun {
		rep.Restamped = int64(len(again))
	} else if len(again) > 0 || len(drop) > 0 {
		if rep.Restamped, err = s.restampHolds(ctx, again, nowU, drop); err != nil {
			return rep, fmt.Errorf("stamp again the uploads of a clock set right: %w", err)
		}
	}
	ids := make([]UserID, 0, len(old))
	for u := range old {
		ids = append(ids, u)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, u := range ids {
		items := old[u]
		if dryRun {
			rep.Users++
			for _, it := range items {
				rep.Holds++
				rep.Bytes += it.size
			}
			continue
		}
		ran, err := s.whileIdle(u, func() error {
			rep.Users++
			for len(items) > 0 {
				part := items[:min(len(items), 1000)]
				items = items[len(part):]
				var holds, bytes int64
				err := s.withRefs(ctx, func(txn *badger.Txn) error {
					holds, bytes = 0, 0
					b := &refBatch{txn: txn, user: u, usage: map[UserID]Usage{}}
					for _, it := range part {
						released, err := b.expire(it.r, cutoff)
						if err != nil {
							return err
						}
						if released {
							holds++
							bytes += it.size
						}
					}
					return b.flush()
				})
				if err != nil {
					return err
				}
				rep.Holds += holds
				rep.Bytes += bytes
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("expire uploads of user %s: %w", u, err)
		}
		if !ran {
			rep.Busy++
		}
	}
	return rep, nil
}

// withRefs runs fn in an index transaction with s.refMu held.
func (s *Store) withRefs(ctx context.Context, fn func(txn *badger.Txn) error) error {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	return s.update(ctx, fn)
}

// expire ends the user's pending hold on r if it is still older than cutoff
// and no snapshot references r.
func (b *refBatch) expire(r blob.Ref, cutoff int64) (bool, error) {
	h, err := getHold(b.txn, b.user, r)
	if err != nil || h.Pending == 0 || h.Pending >= cutoff || h.Refs > 0 {
		return false, err
	}
	return true, b.releasePending(r)
}

// LifecycleOptions choose what Lifecycle does.
type LifecycleOptions struct {
	// Now is the time retention and expiry are evaluated at (zero: the
	// store's clock).
	Now time.Time
	// DryRun reports what each step would do and changes nothing. Garbage
	// collection's figures then cover only what is garbage already, not
	// what the simulated deletions would free.
	DryRun bool
	// ScrubDays overrides Options.ScrubDays for this run (0: keep;
	// negative: no scrub).
	ScrubDays int
}

// LifecycleReport is what the nightly run did.
type LifecycleReport struct {
	Started    time.Time        `json:"started"`
	DurationMS int64            `json:"duration_ms"`
	DryRun     bool             `json:"dry_run,omitempty"`
	Retention  *RetentionReport `json:"retention"`
	Quota      *QuotaReport     `json:"quota"`
	Expired    *ExpireReport    `json:"expired_uploads"`
	GC         *GCReport        `json:"gc"`
	Scrub      *ScrubReport     `json:"scrub,omitempty"`
}

// Lifecycle runs the nightly maintenance: retention, expiry of abandoned
// uploads, soft quota, the scrub of a rolling share of the packs, then
// garbage collection with pack compaction. Backups
// keep running meanwhile; users in the middle of a backup are skipped by the
// steps that delete (and reported busy).
func (s *Store) Lifecycle(ctx context.Context, opts LifecycleOptions) (*LifecycleReport, error) {
	start := time.Now()
	rep := &LifecycleReport{Started: start.UTC(), DryRun: opts.DryRun}
	var err error
	defer func() { rep.DurationMS = time.Since(start).Milliseconds() }()
	if rep.Retention, err = s.Retention(ctx, RetentionOptions{Now: opts.Now, DryRun: opts.DryRun}); err != nil {
		return rep, err
	}
	var gone map[SnapshotID]bool
	if opts.DryRun {
		gone = map[SnapshotID]bool{}
		for _, u := range rep.Retention.Users {
			for _, v := range u.Snapshots {
				if !v.Keep {
					gone[v.ID] = true
				}
			}
		}
	}
	// Expired uploads go before the quota is weighed: they would count
	// against it, and snapshots be deleted for room they free anyway.
	if rep.Expired, err = s.ExpirePending(ctx, opts.Now, opts.DryRun); err != nil {
		return rep, err
	}
	var expired int64
	if opts.DryRun {
		expired = s.now(opts.Now).Add(-s.opts.PendingExpiry).Unix() // as ExpirePending's cutoff
	}
	if rep.Quota, err = s.enforceQuota(ctx, QuotaOptions{DryRun: opts.DryRun}, gone, expired); err != nil {
		return rep, err
	}
	// The scrub comes before compaction, so that a damaged record is known
	// (and its pack kept) before any pack is rewritten.
	days := s.opts.ScrubDays
	if opts.ScrubDays != 0 {
		days = opts.ScrubDays
	}
	if !opts.DryRun && days > 0 {
		if rep.Scrub, err = s.Scrub(ctx, ScrubOptions{Days: days}); err != nil {
			return rep, err
		}
	}
	rep.GC, err = s.GC(ctx, GCOptions{DryRun: opts.DryRun})
	return rep, err
}
