package store

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// CheckOptions choose how deep Check looks.
type CheckOptions struct {
	// ReadData reads every referenced blob back from its pack and re-hashes
	// it. Without it, Check verifies the index and the trees only.
	ReadData bool
}

// Problem is one inconsistency Check found.
type Problem struct {
	// Kind is "missing" (a referenced blob is not in the index), "damaged"
	// (its bytes fail their checksum or hash), "snapshot" (a snapshot uses
	// missing or damaged blobs), or "count" (a reference count, owner count
	// or usage figure differs from a recount).
	Kind     string     `json:"kind"`
	Ref      string     `json:"ref,omitempty"`
	User     string     `json:"user,omitempty"`
	Snapshot SnapshotID `json:"snapshot,omitempty"`
	Detail   string     `json:"detail"`
}

// CheckReport is what Check found.
type CheckReport struct {
	Users     int       `json:"users"`
	Snapshots int       `json:"snapshots"`
	Trees     int       `json:"trees"`
	Chunks    int       `json:"chunks"`
	BytesRead int64     `json:"bytes_read"`
	Problems  []Problem `json:"problems"`
}

// OK reports whether Check found nothing wrong.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

type checker struct {
	s      *Store
	ctx    context.Context
	opts   CheckOptions
	rep    *CheckReport
	status map[blob.Ref]string     // "" ok, "missing", "damaged"
	bad    map[chunk.ID][]blob.Ref // trees: bad blobs at or below them
	kids   map[chunk.ID][]blob.Ref // trees: their children
}

// Check verifies that every snapshot's blobs exist (and, with ReadData, are
// intact), and that reference counts, owner counts and usage equal a recount
// from scratch. It changes nothing; see Repair.
func (s *Store) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	c := &checker{s: s, ctx: ctx, opts: opts, rep: &CheckReport{},
		status: map[blob.Ref]string{}, bad: map[chunk.ID][]blob.Ref{}, kids: map[chunk.ID][]blob.Ref{}}
	users := s.Users()
	c.rep.Users = len(users)
	for _, u := range users {
		for _, sn := range s.Snapshots(u.ID) {
			c.rep.Snapshots++
			bad, err := c.badBelow(blob.Ref{Type: blob.Tree, ID: sn.Root}, 0)
			if err != nil {
				return nil, err
			}
			if len(bad) > 0 {
				c.rep.Problems = append(c.rep.Problems, Problem{Kind: "snapshot", User: u.Serial, Snapshot: sn.ID,
					Detail: fmt.Sprintf("uses %d missing or damaged blob(s), first %s; its other files can still be restored", len(bad), bad[0])})
			}
		}
	}
	for r, st := range c.status {
		if r.Type == blob.Tree {
			c.rep.Trees++
		} else {
			c.rep.Chunks++
		}
		if st != "" {
			c.rep.Problems = append(c.rep.Problems, Problem{Kind: st, Ref: r.String(), Detail: st + " blob"})
		}
	}
	if err := c.recount(users); err != nil {
		return nil, err
	}
	sort.SliceStable(c.rep.Problems, func(i, j int) bool { return c.rep.Problems[i].Kind < c.rep.Problems[j].Kind })
	return c.rep, nil
}

// blobStatus checks one blob (memoised).
func (c *checker) blobStatus(r blob.Ref) (string, error) {
	if st, ok := c.status[r]; ok {
		return st, nil
	}
	st := ""
	if c.opts.ReadData || r.Type == blob.Tree {
		raw, err := c.s.ReadBlob(c.ctx, r)
		switch {
		case errors.Is(err, ErrNotFound):
			st = "missing"
		case errors.Is(err, ErrCorrupt):
			st = "damaged"
		case err != nil:
			return "", err
		default:
			c.rep.BytesRead += int64(len(raw))
			if r.Type == blob.Tree {
				t, err := manifest.Decode(raw)
				if err != nil {
					st = "damaged"
				} else {
					c.kids[r.ID] = treeRefs(t)
				}
			}
		}
	} else if _, err := c.s.Stat(c.ctx, r); errors.Is(err, ErrNotFound) {
		st = "missing"
	} else if err != nil {
		return "", err
	}
	c.status[r] = st
	return st, nil
}

func (c *checker) badBelow(r blob.Ref, depth int) ([]blob.Ref, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	if bad, ok := c.bad[r.ID]; ok && r.Type == blob.Tree {
		return bad, nil
	}
	st, err := c.blobStatus(r)
	if err != nil {
		return nil, err
	}
	if st != "" {
		return []blob.Ref{r}, nil
	}
	if r.Type != blob.Tree || depth > manifest.MaxDepth {
		return nil, nil
	}
	var bad []blob.Ref
	for _, k := range c.kids[r.ID] {
		b, err := c.badBelow(k, depth+1)
		if err != nil {
			return nil, err
		}
		bad = append(bad, b...)
	}
	c.bad[r.ID] = bad
	return bad, nil
}

// recount recomputes every user's holds from their snapshots (plus the
// pending uploads recorded in the index) and compares them, the blobs'
// owner counts and the users' usage with what the index says.
func (c *checker) recount(users []*User) error {
	owners := map[blob.Ref]uint32{}
	s := c.s
	for _, u := range users {
		refs := map[blob.Ref]uint32{}
		reached := map[chunk.ID]bool{}
		var stack []chunk.ID
		for _, sn := range s.Snapshots(u.ID) {
			r := blob.Ref{Type: blob.Tree, ID: sn.Root}
			if st, _ := c.blobStatus(r); st == "missing" {
				continue
			}
			refs[r]++
			if !reached[sn.Root] {
				reached[sn.Root] = true
				stack = append(stack, sn.Root)
			}
		}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, k := range c.kids[id] {
				if st, err := c.blobStatus(k); err != nil {
					return err
				} else if st == "missing" {
					continue
				}
				refs[k]++
				if k.Type == blob.Tree && !reached[k.ID] {
					reached[k.ID] = true
					stack = append(stack, k.ID)
				}
			}
		}
		var usage Usage
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: holdPrefix(u.ID), PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				var r blob.Ref
				r.Type = blob.Type(k[9])
				copy(r.ID[:], k[10:])
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				h := decodeHold(v)
				want := refs[r]
				delete(refs, r)
				if h.Refs != want {
					c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", User: u.Serial, Ref: r.String(),
						Detail: fmt.Sprintf("index counts %d references, recount %d", h.Refs, want)})
				}
				if want > 0 || h.Pending != 0 {
					owners[r]++
					_, ok, err := getObj(txn, r)
					if err != nil {
						return err
					}
					if ok {
						usage.Bytes += int64(h.Size)
						usage.Blobs++
					}
				}
			}
			for r, n := range refs {
				c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", User: u.Serial, Ref: r.String(),
					Detail: fmt.Sprintf("index has no hold, recount %d references", n)})
			}
			got, err := getUsage(txn, u.ID)
			if err != nil {
				return err
			}
			if got != usage {
				c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", User: u.Serial,
					Detail: fmt.Sprintf("index usage %d bytes in %d blobs, recount %d bytes in %d blobs", got.Bytes, got.Blobs, usage.Bytes, usage.Blobs)})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pObj}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			var r blob.Ref
			r.Type = blob.Type(k[1])
			copy(r.ID[:], k[2:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			o, err := decodeObj(v)
			if err != nil {
				c.rep.Problems = append(c.rep.Problems, Problem{Kind: "damaged", Ref: r.String(), Detail: err.Error()})
				continue
			}
			if o.Owners != owners[r] {
				c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", Ref: r.String(),
					Detail: fmt.Sprintf("index says %d owners, recount %d", o.Owners, owners[r])})
			}
		}
		return nil
	})
}

// RepairReport says what Repair rebuilt.
type RepairReport struct {
	Packs     int   `json:"packs"`
	Blobs     int64 `json:"blobs"`
	Damaged   int64 `json:"damaged_records_skipped"`
	Snapshots int   `json:"snapshots"`
	TornBytes int64 `json:"torn_bytes"`
}

// Repair rebuilds the whole index from the pack files and the user and
// snapshot files: every blob whose record is intact is indexed again and
// every snapshot's references are recounted. Pending uploads that no snapshot
// references are forgotten (the laptop uploads them again if needed). The
// store must not be serving backups while Repair runs.
func (s *Store) Repair(ctx context.Context) (*RepairReport, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if err := s.db.DropAll(); err != nil {
		return nil, fmt.Errorf("clear index: %w", err)
	}
	seqs, err := listPacks(s.fsys)
	if err != nil {
		return nil, err
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	rep := &RepairReport{Packs: len(seqs)}
	seen := map[blob.Ref]bool{}
	for _, seq := range seqs {
		wb := s.db.NewWriteBatch()
		var scratch []byte
		good, err := scanPack(s.fsys, seq, func(h recordHeader, off int64, data []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := blob.Ref{Type: h.Type, ID: h.ID}
			if seen[r] {
				return nil
			}
			raw := data
			if h.Flags&flagZstd != 0 {
				var err error
				if raw, err = s.codec.Decompress(scratch[:0], data, int(h.Raw)); err != nil {
					rep.Damaged++
					return nil
				}
				scratch = raw
			}
			if chunk.Sum(raw) != h.ID {
				rep.Damaged++
				return nil
			}
			seen[r] = true
			rep.Blobs++
			o := objRec{Type: h.Type, Flags: h.Flags, Pack: seq, Off: off, Stored: h.Stored, Raw: h.Raw}
			return wb.Set(objKey(r), o.encode())
		})
		if err != nil {
			wb.Cancel()
			return nil, fmt.Errorf("scan pack %016x: %w", seq, err)
		}
		if err := wb.Flush(); err != nil {
			return nil, fmt.Errorf("index pack %016x: %w", seq, err)
		}
		if f, err := s.fsys.OpenFile(packName(seq), 0, 0); err == nil {
			if st, err := f.Stat(); err == nil && st.Size() > good {
				rep.TornBytes += st.Size() - good
			}
			f.Close()
		}
	}
	for _, u := range s.Users() {
		rep.Snapshots += len(s.Snapshots(u.ID))
	}
	if err := s.reconcileLocked(ctx); err != nil {
		return rep, fmt.Errorf("recount references: %w", err)
	}
	return rep, nil
}
