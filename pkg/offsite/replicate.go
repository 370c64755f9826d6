package offsite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Sink is where a school's snapshots are replicated to: the mothership over
// the network (what Sync replicates to), a mothership's store importing a bundle (StoreSink),
// or a bundle being written (the export's sink).
type Sink interface {
	// Need reports for each ref whether the sink lacks it.
	Need(ctx context.Context, refs []blob.Ref) ([]bool, error)
	// Put stores blobs (their stored form, verified by the receiver).
	Put(ctx context.Context, blobs []blob.Blob) error
	// Commit records a snapshot of root made where info.Origin says. It
	// may be called by several goroutines at once.
	Commit(ctx context.Context, root chunk.ID, info manifest.CommitInfo) error
}

// Item is one snapshot of the school's store to replicate.
type Item struct {
	User   store.UserID
	Serial string
	Snap   *store.Snapshot
}

// Key names the item in a State's confirmed set.
func (it Item) Key() string { return snapKey(it.User, it.Snap.ID) }

func snapKey(u store.UserID, id store.SnapshotID) string { return u.String() + "/" + string(id) }

// Origin is what the mothership records about where the item was made.
func (it Item) Origin() *manifest.Origin {
	return &manifest.Origin{User: uint64(it.User), Serial: it.Serial, Snapshot: string(it.Snap.ID),
		Time: it.Snap.Time, Pinned: it.Snap.Pinned, PinReason: it.Snap.PinReason, Seq: it.Snap.Order()}
}

// Pending lists the snapshots of st that confirmed does not hold, oldest
// first (so that an interrupted run has sent the oldest history, and a
// rate-capped link catches up in order).
func Pending(st *store.Store, confirmed map[string]time.Time) []Item {
	var out []Item
	for _, u := range st.Users() {
		for _, sn := range st.Snapshots(u.ID) {
			it := Item{User: u.ID, Serial: u.Serial, Snap: sn}
			if _, ok := confirmed[it.Key()]; !ok {
				out = append(out, it)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Item) int { return a.Snap.Time.Compare(b.Snap.Time) })
	return out
}

// Report says what a replication did.
type Report struct {
	// Snapshots were committed on the sink (or already there).
	Snapshots int `json:"snapshots"`
	// Failed snapshots could not be sent whole (a damaged blob here); the
	// next run tries them again.
	Failed []string `json:"failed,omitempty"`
	// Blobs and Bytes were sent (stored bytes, as on disk).
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Asked is how many blobs the sink was asked about.
	Asked int `json:"asked"`
	// Registry is true when a new copy of the school's registry was sent.
	Registry bool          `json:"registry,omitempty"`
	Took     time.Duration `json:"took"`
}

// replicator sends snapshots of a store to a sink.
type replicator struct {
	st   *store.Store
	sink Sink
	rep  *Report
	// done: blobs the sink is known to hold in this run (sent, or answered
	// "not needed"); a tree in done has every descendant there too.
	done  map[blob.Ref]bool
	batch []blob.Blob
	bytes int
}

func newReplicator(st *store.Store, sink Sink, rep *Report) *replicator {
	return &replicator{st: st, sink: sink, rep: rep, done: map[blob.Ref]bool{}}
}

// sendSnapshot sends what the sink lacks of root and commits it. When
// trusting is true, a tree the sink holds is taken to hold its whole
// subtree (true of trees this code sent: children go first); the retry after
// a commit refused for a missing blob walks everything.
func (r *replicator) sendSnapshot(ctx context.Context, root chunk.ID, info manifest.CommitInfo) error {
	err := r.sendTree(ctx, []chunk.ID{root}, true)
	if err == nil {
		err = r.sink.Commit(ctx, root, info)
	}
	if errors.Is(err, blob.ErrNotHeld) {
		// The mothership let go of part of an earlier interrupted upload
		// (pending uploads expire): walk the whole tree this time.
		clear(r.done)
		if err = r.sendTree(ctx, []chunk.ID{root}, false); err == nil {
			err = r.sink.Commit(ctx, root, info)
		}
	}
	return err
}

// groupSnapshots is how many snapshots Replicate walks together.
const groupSnapshots = 64

// prefetch sends what the sink lacks of the snapshots of items, walking
// their trees together; commits are left to sendSnapshot, which then finds
// every blob done.
func (r *replicator) prefetch(ctx context.Context, items []Item) error {
	roots := make([]chunk.ID, 0, len(items))
	for _, it := range items {
		roots = append(roots, it.Snap.Root)
	}
	err := r.sendTree(ctx, roots, true)
	if err != nil {
		r.drop()
	}
	return err
}

// drop forgets the batch not sent yet: its blobs are not done.
func (r *replicator) drop() {
	for _, b := range r.batch {
		delete(r.done, b.Ref)
	}
	r.batch, r.bytes = r.batch[:0], 0
}

// sendTree sends what the sink lacks of the trees under roots (walked
// together, level by level: one question per level for all of them).
func (r *replicator) sendTree(ctx context.Context, roots []chunk.ID, trusting bool) error {
	var levels [][]blob.Ref // trees to send, by depth
	var frontier []chunk.ID
	seen := map[chunk.ID]bool{}
	for _, root := range roots {
		if !seen[root] {
			seen[root] = true
			frontier = append(frontier, root)
		}
	}
	for len(frontier) > 0 {
		refs := make([]blob.Ref, 0, len(frontier))
		for _, id := range frontier {
			ref := blob.Ref{Type: blob.Tree, ID: id}
			if trusting && r.done[ref] {
				continue
			}
			refs = append(refs, ref)
		}
		need, err := r.need(ctx, refs)
		if err != nil {
			return err
		}
		var level []blob.Ref
		var next []chunk.ID
		var chunks []blob.Ref
		chunkSeen := map[chunk.ID]bool{}
		for i, ref := range refs {
			if !need[i] {
				r.done[ref] = true
				if trusting {
					continue
				}
			} else {
				level = append(level, ref)
			}
			t, err := r.st.ReadTree(ctx, ref.ID)
			if err != nil {
				return local(ctx, fmt.Errorf("read directory %s: %w", ref.ID, err))
			}
			for j := range t.Entries {
				e := &t.Entries[j]
				switch e.Type {
				case manifest.File:
					for _, c := range e.Chunks {
						cr := blob.Ref{Type: blob.Chunk, ID: c}
						if !chunkSeen[c] && !r.done[cr] {
							chunkSeen[c] = true
							chunks = append(chunks, cr)
						}
					}
				case manifest.Dir:
					if !seen[e.Subtree] {
						seen[e.Subtree] = true
						next = append(next, e.Subtree)
					}
				}
			}
		}
		cneed, err := r.need(ctx, chunks)
		if err != nil {
			return err
		}
		for i, cr := range chunks {
			if !cneed[i] {
				r.done[cr] = true
				continue
			}
			if err := r.put(ctx, cr); err != nil {
				return err
			}
		}
		levels = append(levels, level)
		frontier = next
	}
	// Chunks first, then directories from the deepest up: a directory on
	// the sink always has what it points at.
	if err := r.flush(ctx); err != nil {
		return err
	}
	for i := len(levels) - 1; i >= 0; i-- {
		for _, ref := range levels[i] {
			if r.done[ref] {
				continue
			}
			if err := r.put(ctx, ref); err != nil {
				return err
			}
		}
		if err := r.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *replicator) need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	r.rep.Asked += len(refs)
	need, err := r.sink.Need(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("ask which blobs are missing off-site: %w", err)
	}
	if len(need) != len(refs) {
		return nil, fmt.Errorf("off-site answered %d of %d questions", len(need), len(refs))
	}
	return need, nil
}

// batchBytes is how much one Put carries.
const batchBytes = 4 << 20

func (r *replicator) put(ctx context.Context, ref blob.Ref) error {
	b, err := r.st.ReadStored(ctx, ref)
	if err != nil {
		return local(ctx, fmt.Errorf("read %s: %w", ref, err))
	}
	r.batch = append(r.batch, b)
	r.bytes += len(b.Data)
	r.done[ref] = true
	if r.bytes >= batchBytes {
		return r.flush(ctx)
	}
	return nil
}

func (r *replicator) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	if err := r.sink.Put(ctx, r.batch); err != nil {
		r.drop()
		return fmt.Errorf("send blobs off-site: %w", err)
	}
	r.rep.Blobs += len(r.batch)
	r.rep.Bytes += int64(r.bytes)
	r.batch, r.bytes = r.batch[:0], 0
	return nil
}

// local marks a failure to read this server's own store (unless the run
// was cancelled).
func local(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &localErr{err}
}
