package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
)

// Reference counting.
//
// A user holds a blob while it is referenced by one of the user's snapshots
// or is a pending upload. References are counted hierarchically: a snapshot
// references its root tree; a tree the user references (Refs going 0 -> 1)
// references its children; when a tree's Refs drops to 0 its children lose
// that reference. Committing an unchanged Journal therefore costs one counter
// update, and a changed one only the trees on the path to the change.
//
// Applying a snapshot's references may take more writes than one Badger
// transaction holds, so it runs as a job: a walk whose cursor (a stack of
// tree positions, at most manifest.MaxDepth deep) is saved in the same
// transaction as each batch of counter updates. After a crash the job
// resumes exactly where its last batch committed.

type frame struct {
	Tree chunk.ID `json:"tree"`
	Next int      `json:"next"`
}

type job struct {
	Seq     uint64     `json:"-"`
	User    UserID     `json:"user"`
	Delta   int32      `json:"delta"`
	Root    chunk.ID   `json:"root"`
	Started bool       `json:"started"`
	Stack   []frame    `json:"stack,omitempty"`
	Snap    SnapshotID `json:"snap"`
}

func jobKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = pJob
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

var jobSeqKey = []byte{pMeta, 'j', 'o', 'b', 's', 'e', 'q'}

// addJob records a job in txn.
func addJob(txn *badger.Txn, j *job) error {
	b, _, err := get(txn, jobSeqKey)
	if err != nil {
		return err
	}
	var seq uint64
	if len(b) == 8 {
		seq = binary.BigEndian.Uint64(b)
	}
	seq++
	nb := make([]byte, 8)
	binary.BigEndian.PutUint64(nb, seq)
	if err := txn.Set(jobSeqKey, nb); err != nil {
		return err
	}
	j.Seq = seq
	jb, _ := json.Marshal(j)
	return txn.Set(jobKey(seq), jb)
}

// runJobs applies every recorded job, oldest first. s.refMu must be held.
func (s *Store) runJobs(ctx context.Context) error {
	for {
		var jobs []*job
		err := s.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pJob}, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(jobs) < 64; it.Next() {
				j := new(job)
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(v, j); err != nil {
					return fmt.Errorf("%w: a reference-counting job record does not decode: %v", ErrIndexDamaged, err)
				}
				j.Seq = binary.BigEndian.Uint64(it.Item().Key()[1:])
				jobs = append(jobs, j)
			}
			return nil
		})
		if err != nil || len(jobs) == 0 {
			return err
		}
		for _, j := range jobs {
			if err := s.runJob(ctx, j); err != nil {
				return fmt.Errorf("count references of snapshot %s: %w", j.Snap, err)
			}
		}
	}
}

// childCache keeps the children of the trees on the walk's stack.
type childCache map[chunk.ID][]blob.Ref

func (s *Store) children(ctx context.Context, cache childCache, id chunk.ID) ([]blob.Ref, error) {
	if c, ok := cache[id]; ok {
		return c, nil
	}
	t, err := s.ReadTree(ctx, id)
	if err != nil {
		return nil, err
	}
	c := treeRefs(t)
	cache[id] = c
	return c, nil
}

// treeRefs lists the blobs a tree references, in order, repeats included.
func treeRefs(t *manifest.Tree) []blob.Ref {
	var refs []blob.Ref
	for i := range t.Entries {
		e := &t.Entries[i]
		switch e.Type {
		case manifest.File:
			for _, id := range e.Chunks {
				refs = append(refs, blob.Ref{Type: blob.Chunk, ID: id})
			}
		case manifest.Dir:
			refs = append(refs, blob.Ref{Type: blob.Tree, ID: e.Subtree})
		}
	}
	return refs
}

func (s *Store) runJob(ctx context.Context, j *job) error {
	cache := childCache{}
	for {
		saved := *j
		saved.Stack = append([]frame(nil), j.Stack...)
		var done bool
		err := s.update(ctx, func(txn *badger.Txn) error {
			*j = saved
			j.Stack = append([]frame(nil), saved.Stack...)
			b := &refBatch{txn: txn, user: j.User, usage: map[UserID]Usage{}}
			if !j.Started {
				down, err := b.ref(blob.Ref{Type: blob.Tree, ID: j.Root}, j.Delta)
				if err != nil {
					return err
				}
				j.Started = true
				if down {
					j.Stack = append(j.Stack, frame{Tree: j.Root})
				}
			}
			for ops := 0; len(j.Stack) > 0 && ops < s.opts.JobBatch; {
				top := &j.Stack[len(j.Stack)-1]
				kids, err := s.children(ctx, cache, top.Tree)
				if err != nil {
					if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
						return err
					}
					// A lost tree cannot be descended: its children keep
					// their counts, and the descent is owed to them until an
					// upload heals the tree (see healLocked).
					if top.Next == 0 {
						if err := oweDescent(txn, top.Tree, j.User, j.Delta); err != nil {
							return err
						}
					}
					kids = nil
				}
				if top.Next >= len(kids) {
					delete(cache, top.Tree)
					j.Stack = j.Stack[:len(j.Stack)-1]
					continue
				}
				r := kids[top.Next]
				top.Next++
				ops++
				down, err := b.ref(r, j.Delta)
				if err != nil {
					return err
				}
				if down && len(j.Stack) <= manifest.MaxDepth {
					j.Stack = append(j.Stack, frame{Tree: r.ID})
				}
			}
			if err := b.flush(); err != nil {
				return err
			}
			done = len(j.Stack) == 0
			if done {
				return txn.Delete(jobKey(j.Seq))
			}
			jb, _ := json.Marshal(j)
			return txn.Set(jobKey(j.Seq), jb)
		})
		if err != nil {
			return err
		}
		s.hook("refs:after-batch")
		if done {
			return nil
		}
	}
}

// refBatch applies reference changes inside one transaction.
type refBatch struct {
	txn   *badger.Txn
	user  UserID
	usage map[UserID]Usage // deltas, written by flush
}

// ref adds delta to the user's references to r and updates the blob's owner
// count and the user's usage when the user starts or stops holding it. It
// reports whether the walk must descend into r (a tree whose Refs crossed 0).
func (b *refBatch) ref(r blob.Ref, delta int32) (descend bool, err error) {
	o, ok, err := getObj(b.txn, r)
	if err != nil {
		return false, err
	}
	created := false
	if !ok {
		// A blob no pack holds (data lost, found by Repair or an old
		// store's check). It is counted like any other, marked lost, so that
		// the holders' next backups send it again and heal it.
		if delta <= 0 {
			return false, nil
		}
		o, created = objRec{Type: r.Type, Flags: flagLost}, true
		rec, _ := json.Marshal(lostRec{Since: time.Now().Unix(), Reason: "referenced by a snapshot, in no pack"})
		if err := b.txn.Set(lostKey(r), rec); err != nil {
			return false, err
		}
	}
	h, err := getHold(b.txn, b.user, r)
	if err != nil {
		return false, err
	}
	was := h.held()
	old := h.Refs
	if !was {
		// A hold that starts from a reference, not an upload (only after
		// Repair forgot pending uploads): charge the copy on disk.
		h.Size = o.Stored
	}
	switch {
	case h.Refs == math.MaxUint32:
		// Saturated (a client that made billions of references to one
		// chunk): it stays held rather than wrap and be swept while
		// still referenced; a repair counts again.
	case delta < 0 && uint32(-delta) > h.Refs:
		h.Refs = 0
	default:
		h.Refs = uint32(min(int64(h.Refs)+int64(delta), math.MaxUint32))
	}
	if h.Refs > 0 {
		h.Pending = 0 // committed: no longer a pending upload
	}
	now := h.held()
	if now {
		err = b.txn.Set(holdKey(b.user, r), h.encode())
	} else {
		err = b.txn.Delete(holdKey(b.user, r))
	}
	if err != nil {
		return false, err
	}
	if was != now || created {
		u := b.usage[b.user]
		if now {
			o.Owners++
			u.Bytes += int64(h.Size)
			u.Blobs++
		} else {
			if o.Owners > 0 {
				o.Owners--
			}
			u.Bytes -= int64(h.Size)
			u.Blobs--
		}
		b.usage[b.user] = u
		if err := b.txn.Set(objKey(r), o.encode()); err != nil {
			return false, err
		}
	}
	return r.Type == blob.Tree && (old == 0) != (h.Refs == 0), nil
}

// releasePending ends a user's pending hold on r (expired upload).
func (b *refBatch) releasePending(r blob.Ref) error {
	h, err := getHold(b.txn, b.user, r)
	if err != nil || h.Pending == 0 {
		return err
	}
	h.Pending = 0
	if h.Refs > 0 {
		return b.txn.Set(holdKey(b.user, r), h.encode())
	}
	if err := b.txn.Delete(holdKey(b.user, r)); err != nil {
		return err
	}
	o, ok, err := getObj(b.txn, r)
	if err != nil || !ok {
		return err
	}
	if o.Owners > 0 {
		o.Owners--
	}
	u := b.usage[b.user]
	u.Bytes -= int64(h.Size)
	u.Blobs--
	b.usage[b.user] = u
	return b.txn.Set(objKey(r), o.encode())
}

func (b *refBatch) flush() error {
	for user, d := range b.usage {
		u, err := getUsage(b.txn, user)
		if err != nil {
			return err
		}
		u.Bytes += d.Bytes
		u.Blobs += d.Blobs
		if u.Bytes < 0 || u.Blobs < 0 {
			u = Usage{}
		}
		if err := b.txn.Set(usageKey(user), u.encode()); err != nil {
			return err
		}
	}
	clear(b.usage)
	return nil
}

// treeStats summarise a tree (cached in the index under 't').
type treeStats struct {
	Files, Dirs, Size, Stored int64
}

// CommitInfo describes a snapshot being committed (the same type as
// proto.CommitInfo).
type CommitInfo = manifest.CommitInfo

// Commit records a snapshot of the tree root for user. Every blob the tree
// references must exist and be held by this user (uploaded by them, in this
// or an earlier session, or referenced by one of their snapshots): a
// manifest cannot point at another user's chunks (ErrNotOwned). File sizes
// must equal the sum of their chunks. The snapshot gets its time from the
// store's clock. When Commit returns, the snapshot is durable.
func (s *Store) Commit(ctx context.Context, user UserID, root chunk.ID, info CommitInfo) (*Snapshot, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if err := s.canWrite(user); err != nil {
		return nil, err
	}
	if len(info.Host) > 256 || len(info.Source) > 4096 {
		return nil, fmt.Errorf("%w: host or source too long", ErrInvalid)
	}
	if err := validOrigin(info.Origin); err != nil {
		return nil, err
	}
	// On an object store, every pack this snapshot may need goes to the
	// bucket before the snapshot file is written (and so before it is
	// acknowledged).
	if err := s.flushRemote(ctx); err != nil {
		return nil, err
	}
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if o := info.Origin; o != nil {
		// Replication is repeated after an interruption: the same origin
		// answers the snapshot already made from it.
		if sn := s.fromOrigin(user, o); sn != nil {
			if sn.Root != root {
				return nil, fmt.Errorf("%w: snapshot %s of laptop %d was already replicated with another content", ErrExists, o.Snapshot, o.User)
			}
			return sn, nil
		}
	}
	st, err := s.validate(ctx, user, root)
	if err != nil {
		return nil, err
	}
	s.hook("commit:after-validate")
	now := s.opts.Now().UTC()
	sn := &Snapshot{ID: newSnapshotID(now), User: user, Time: now, Root: root,
		Files: st.Files, Dirs: st.Dirs, Size: st.Size, Stored: st.Stored, Host: info.Host, Source: info.Source}
	s.mu.RLock()
	sn.Seq = s.nextSeq(user)
	s.mu.RUnlock()
	if o := info.Origin; o != nil {
		oc := *o
		oc.Time = o.Time.UTC()
		sn.Origin, sn.Time, sn.Pinned, sn.PinReason = &oc, oc.Time, o.Pinned, o.PinReason
		sn.ID = SnapshotID(o.Snapshot)
		if s.hasSnapshot(user, sn.ID) {
			sn.ID = newSnapshotID(oc.Time) // another laptop's snapshot of the same second
		}
	}
	if sn.Origin == nil {
		s.noteTime(now)
	}
	// The snapshot file is the commit point: once it is on disk, Open will
	// count its references even if we crash before the job below.
	b, _ := json.MarshalIndent(sn, "", "  ")
	if err := fsys.WriteFileAtomic(s.fsys, snapFile(user, sn.ID), b); err != nil {
		return nil, fmt.Errorf("save snapshot: %w", s.diskErr(err))
	}
	s.hook("commit:after-snapshot-file")
	// Once published, the snapshot is changed in place under s.mu (a
	// pin): what this function reads and returns is a copy made before.
	c := *sn
	s.mu.Lock()
	s.snaps[user] = append(s.snaps[user], sn)
	sortSnaps(s.snaps[user])
	s.mu.Unlock()
	if err := s.update(ctx, func(txn *badger.Txn) error {
		if err := txn.Set(applyKey(user, c.ID), root[:]); err != nil {
			return err
		}
		return addJob(txn, &job{User: user, Delta: 1, Root: root, Snap: c.ID})
	}); err != nil {
		return nil, fmt.Errorf("snapshot %s is saved but its references are not counted yet (they will be at the next start): %w", c.ID, err)
	}
	s.hook("commit:after-job-record")
	if err := s.runJobs(ctx); err != nil {
		return nil, fmt.Errorf("snapshot %s is saved but its references are not counted yet (they will be at the next start): %w", c.ID, err)
	}
	s.hook("commit:before-ack")
	return &c, nil
}

// validate walks the parts of the tree that are new to this user, checking
// existence, ownership, names and sizes, and returns the tree's statistics.
func (s *Store) validate(ctx context.Context, user UserID, root chunk.ID) (treeStats, error) {
	cache := map[chunk.ID]treeStats{}
	var st treeStats
	err := s.view(func(txn *badger.Txn) error {
		var err error
		st, err = s.walkValidate(ctx, txn, user, root, true, 0, cache)
		return err
	})
	if err != nil {
		return st, err
	}
	// Cache the statistics of the trees we computed (best effort).
	s.update(ctx, func(txn *badger.Txn) error {
		for id, ts := range cache {
			var b [32]byte
			binary.LittleEndian.PutUint64(b[0:], uint64(ts.Files))
			binary.LittleEndian.PutUint64(b[8:], uint64(ts.Dirs))
			binary.LittleEndian.PutUint64(b[16:], uint64(ts.Size))
			binary.LittleEndian.PutUint64(b[24:], uint64(ts.Stored))
			if err := txn.Set(tstatKey(id), b[:]); err != nil {
				return err
			}
		}
		return nil
	})
	return st, nil
}

func (s *Store) walkValidate(ctx context.Context, txn *badger.Txn, user UserID, id chunk.ID, check bool, depth int, cache map[chunk.ID]treeStats) (treeStats, error) {
	if err := ctx.Err(); err != nil {
		return treeStats{}, err
	}
	if depth > manifest.MaxDepth {
		return treeStats{}, fmt.Errorf("%w: directories nested deeper than %d", ErrInvalid, manifest.MaxDepth)
	}
	tref := blob.Ref{Type: blob.Tree, ID: id}
	// A tree validated earlier in this walk (a tree may name the same
	// subtree many times: without this, a few kilobytes of trees cost a
	// walk of exponential length, holding every other commit back).
	if st, ok := cache[id]; ok {
		return st, nil
	}
	// Whether this user holds it is asked first, and answered alike
	// whether or not the blob exists or is damaged: a refused commit must
	// not tell a laptop what other laptops hold.
	if check {
		h, err := getHold(txn, user, tref)
		if err != nil {
			return treeStats{}, err
		}
		if !h.held() {
			return treeStats{}, notOwned(tref, "")
		}
		// A tree already referenced by this user's snapshots was fully
		// validated when that snapshot was committed.
		check = h.Refs == 0
	}
	if o, ok, err := getObj(txn, tref); err != nil {
		return treeStats{}, err
	} else if !ok {
		return treeStats{}, notOwned(tref, "")
	} else if o.lost() && !s.hasCopy(tref) {
		// (A lost tree with a copy reads from it: the commit goes on, and
		// check or the scrub writes the tree back.)
		return treeStats{}, errLostInCommit(tref, "")
	}
	if !check {
		if b, ok, err := get(txn, tstatKey(id)); err == nil && ok && len(b) == 32 {
			return treeStats{Files: int64(binary.LittleEndian.Uint64(b)), Dirs: int64(binary.LittleEndian.Uint64(b[8:])),
				Size: int64(binary.LittleEndian.Uint64(b[16:])), Stored: int64(binary.LittleEndian.Uint64(b[24:]))}, nil
		}
	}
	t, err := s.ReadTree(ctx, id)
	if errors.Is(err, ErrCorrupt) {
		return treeStats{}, errLostInCommit(tref, "")
	}
	if err != nil {
		return treeStats{}, err
	}
	var st treeStats
	for i := range t.Entries {
		e := &t.Entries[i]
		switch e.Type {
		case manifest.File:
			st.Files++
			var sum int64
			for _, cid := range e.Chunks {
				r := blob.Ref{Type: blob.Chunk, ID: cid}
				if check {
					h, err := getHold(txn, user, r)
					if err != nil {
						return st, err
					}
					if !h.held() {
						return st, notOwned(r, e.Name)
					}
				}
				o, ok, err := getObj(txn, r)
				if err != nil {
					return st, err
				}
				if !ok {
					return st, notOwned(r, e.Name)
				}
				if o.lost() {
					return st, errLostInCommit(r, e.Name)
				}
				sum += int64(o.Raw)
				st.Stored += int64(o.Stored)
			}
			if sum != e.Size {
				return st, fmt.Errorf("%w: file %q says %d bytes but its chunks hold %d", ErrInvalid, e.Name, e.Size, sum)
			}
			st.Size += e.Size
		case manifest.Dir:
			st.Dirs++
			sub, err := s.walkValidate(ctx, txn, user, e.Subtree, check, depth+1, cache)
			if err != nil {
				return st, err
			}
			st.Files += sub.Files
			st.Dirs += sub.Dirs
			st.Size += sub.Size
			st.Stored += sub.Stored
		}
	}
	cache[id] = st
	return st, nil
}

// notOwned is a commit's answer for a blob this user has not uploaded: the
// same whether another laptop holds it or nobody does.
func notOwned(r blob.Ref, name string) error {
	if name != "" {
		return fmt.Errorf("%w: %s %s of %q is not among this laptop's uploads; upload it before committing", ErrNotOwned, r.Type, r.ID.Short(), name)
	}
	return fmt.Errorf("%w: %s %s is not among this laptop's uploads; upload it before committing", ErrNotOwned, r.Type, r.ID.Short())
}

// errLostInCommit is a commit's answer when the snapshot uses a blob whose
// stored copy is damaged: the laptop's next session is told which blobs to
// send again (DamagedHeld), so the next attempt heals it and commits.
func errLostInCommit(r blob.Ref, file string) error {
	what := r.String()
	if file != "" {
		what = fmt.Sprintf("%s of %q", r, file)
	}
	return fmt.Errorf("%w: %s is damaged on the server; the next backup sends it again", ErrCorrupt, what)
}

// DeleteSnapshot removes a snapshot. Its blobs stay on disk until garbage
// collection finds that nobody holds them any more.
func (s *Store) DeleteSnapshot(ctx context.Context, user UserID, id SnapshotID) error {
	if err := s.writable(); err != nil {
		return err
	}
	s.refMu.Lock()
	defer s.refMu.Unlock()
	return s.deleteSnapshotLocked(ctx, user, id, false)
}

// errPinnedSince is deleteSnapshotLocked's answer, with unlessPinned, for a
// snapshot pinned since the caller chose to delete it.
var errPinnedSince = errors.New("pinned since")

// deleteSnapshotLocked is DeleteSnapshot; s.refMu must be held. With
// unlessPinned (retention and quota, which chose the snapshot a moment
// ago), a snapshot pinned meanwhile is kept (errPinnedSince). From the
// moment it is marked, a pin (SetPin) no longer finds the snapshot: a pin
// written after the file's removal would bring it back without its data.
func (s *Store) deleteSnapshotLocked(ctx context.Context, user UserID, id SnapshotID, unlessPinned bool) (err error) {
	s.mu.Lock()
	var sn *Snapshot
	if id != "latest" {
		for _, x := range s.snaps[user] {
			if x.ID == id && !x.deleting {
				sn = x
			}
		}
	}
	switch {
	case sn == nil:
		err = fmt.Errorf("%w: snapshot %s of %s", ErrNotFound, id, s.nameLocked(user))
	case unlessPinned && sn.Pinned:
		err = errPinnedSince
	default:
		sn.deleting = true
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.mu.Lock()
			sn.deleting = false
			s.mu.Unlock()
		}
	}()
	// The intent first: a snapshot file found missing later without it
	// was lost (a disk, a person), and its blobs are not garbage.
	if err := s.update(ctx, func(txn *badger.Txn) error { return txn.Set(deletingKey(user, id), nil) }); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if err := s.fsys.Remove(snapFile(user, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if err := s.fsys.SyncDir("snapshots/" + user.String()); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	s.hook("delete:after-file-remove")
	s.mu.Lock()
	list := s.snaps[user]
	for i, sn := range list {
		if sn.ID == id {
			s.snaps[user] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	key := applyKey(user, id)
	err = s.update(ctx, func(txn *badger.Txn) error {
		if err := txn.Delete(deletingKey(user, id)); err != nil {
			return err
		}
		v, ok, err := get(txn, key)
		if err != nil || !ok || len(v) != 32 {
			return err // never counted: nothing to undo
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		var root chunk.ID
		copy(root[:], v)
		return addJob(txn, &job{User: user, Delta: -1, Root: root, Snap: id})
	})
	if err == nil {
		err = s.runJobs(ctx)
	}
	if err != nil {
		return fmt.Errorf("snapshot %s is deleted; its space is released at the next start: %w", id, err)
	}
	return nil
}

// reconcile brings the index in line with the snapshot files after a crash
// (or a Repair): snapshots whose references were never counted get a +1
// job, deleted snapshots whose references are still counted get a -1 job,
// then all jobs run.
func (s *Store) reconcile(ctx context.Context) error {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	return s.reconcileLocked(ctx)
}

func (s *Store) reconcileLocked(ctx context.Context) error {
	applied := map[string]bool{}
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pApply}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			applied[string(it.Item().KeyCopy(nil))] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	var adds []*Snapshot
	s.mu.RLock()
	for _, list := range s.snaps {
		for _, sn := range list {
			k := string(applyKey(sn.User, sn.ID))
			if applied[k] {
				delete(applied, k)
			} else {
				adds = append(adds, sn)
			}
		}
	}
	s.mu.RUnlock()
	for k := range applied {
		kb := []byte(k)
		if len(kb) < 9 {
			continue
		}
		user := UserID(binary.BigEndian.Uint64(kb[1:9]))
		snapID := SnapshotID(kb[9:])
		var deleting bool
		if err := s.view(func(txn *badger.Txn) (err error) {
			_, deleting, err = get(txn, deletingKey(user, snapID))
			return err
		}); err != nil {
			return err
		}
		if !deleting && !s.opts.ReadOnly {
			// Counted, its file gone, and no deletion began: the file was
			// lost. Rebuilt from the index (and reported), its blobs stay.
			if sn := s.recoverSnapshot(user, string(snapID)+".json", errors.New("the file is missing")); sn != nil {
				s.mu.Lock()
				s.snaps[user] = append(s.snaps[user], sn)
				s.placeRebuilt(s.snaps[user])
				sortSnaps(s.snaps[user])
				s.mu.Unlock()
				continue
			}
		}
		// The snapshot file is gone; its root is needed to undo its references.
		root, err := s.appliedRoot(kb)
		if err != nil {
			return err
		}
		if err := s.update(ctx, func(txn *badger.Txn) error {
			if err := txn.Delete(kb); err != nil {
				return err
			}
			if err := txn.Delete(deletingKey(user, snapID)); err != nil {
				return err
			}
			return addJob(txn, &job{User: user, Delta: -1, Root: root, Snap: snapID})
		}); err != nil {
			return err
		}
	}
	for _, sn := range adds {
		if err := s.update(ctx, func(txn *badger.Txn) error {
			if err := txn.Set(applyKey(sn.User, sn.ID), sn.Root[:]); err != nil {
				return err
			}
			return addJob(txn, &job{User: sn.User, Delta: 1, Root: sn.Root, Snap: sn.ID})
		}); err != nil {
			return err
		}
	}
	return s.runJobs(ctx)
}

// appliedRoot returns the root stored with an 'a' key.
func (s *Store) appliedRoot(key []byte) (chunk.ID, error) {
	var root chunk.ID
	err := s.view(func(txn *badger.Txn) error {
		v, _, err := get(txn, key)
		if err != nil {
			return err
		}
		if len(v) != len(root) {
			return fmt.Errorf("%w: an applied-snapshot record has no root", ErrIndexDamaged)
		}
		copy(root[:], v)
		return nil
	})
	return root, err
}

// validOrigin checks the origin a replicated commit carries.
func validOrigin(o *Origin) error {
	if o == nil {
		return nil
	}
	switch {
	case !ValidSnapshotID(SnapshotID(o.Snapshot)):
		return fmt.Errorf("%w: replicated snapshot ID %q is not one this software makes", ErrInvalid, o.Snapshot)
	case o.Time.IsZero() || o.Time.Year() < 1970 || o.Time.Year() > 9999:
		// A school server whose clock reset (to 1970, or 2000 in local
		// time) still made real backups then.
		return fmt.Errorf("%w: replicated snapshot %s has no valid time", ErrInvalid, o.Snapshot)
	case o.Seq < 0 || o.Seq > 1<<53:
		return fmt.Errorf("%w: replicated snapshot %s has an impossible number %d", ErrInvalid, o.Snapshot, o.Seq)
	case len(o.Serial) > 64 || len(o.PinReason) > 1024:
		return fmt.Errorf("%w: replicated snapshot %s: serial or pin reason too long", ErrInvalid, o.Snapshot)
	}
	return nil
}

// fromOrigin returns a copy of user's snapshot replicated from o, or nil.
func (s *Store) fromOrigin(user UserID, o *Origin) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.snaps[user] {
		if sn.Origin != nil && sn.Origin.User == o.User && sn.Origin.Snapshot == o.Snapshot {
			c := *sn
			return &c
		}
	}
	return nil
}

func (s *Store) hasSnapshot(user UserID, id SnapshotID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.snaps[user] {
		if sn.ID == id {
			return true
		}
	}
	return false
}
