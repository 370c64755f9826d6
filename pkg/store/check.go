package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
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
	// missing or damaged blobs), "count" (a reference count, owner count
	// or usage figure differs from a recount), or "metadata" (a user or
	// snapshot file was damaged: rebuilt, or left out if it could not be).
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
	// Damaged counts blobs with no intact copy (bit rot, lost packs). They
	// are recorded (on a writable store) so that the next backup of a laptop
	// that has them sends them again; Repair cannot bring them back.
	Damaged int `json:"damaged"`
	// IndexProblems counts "missing" and "count" problems: the index
	// disagrees with the packs and snapshots, and Repair rebuilds it.
	// Garbage collection refuses to run until then.
	IndexProblems int `json:"index_problems"`
	// CountsNotCompared: backups changed the index all through the check,
	// so reference counts, owners and usage were not compared (run it
	// again when the school is quieter).
	CountsNotCompared bool `json:"counts_not_compared,omitempty"`
	// TreesRestored counts directory trees whose stored record was damaged
	// or lost and that were written back from their copy in the index:
	// every file below them is reachable again, with no laptop's help.
	TreesRestored int `json:"trees_restored,omitempty"`
	// Restored lists user and snapshot files that were damaged or missing
	// when the store opened and were rebuilt whole and written back (a
	// user from its copy, a snapshot from the index): not problems any
	// more; each damaged file is kept beside it (*.damaged) to look at or
	// delete.
	Restored []MetaDamage `json:"restored,omitempty"`
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
// from scratch. What it changes is damage: it marks the blobs it finds
// damaged (every blob of a pack file that is gone or cut short among them),
// which the laptops' next backups heal, and writes damaged trees back from
// their copies (see treecopy.go); see Repair for the index.
func (s *Store) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	// No sweep or compaction while the walk reads: a blob of a snapshot
	// deleted meanwhile, swept, or a record moved, would read as missing
	// from the index, and that false index problem would stop garbage
	// collection until a repair. (Backups and deletions go on.)
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	c := &checker{s: s, ctx: ctx, opts: opts, rep: &CheckReport{Problems: []Problem{}},
		status: map[blob.Ref]string{}, bad: map[chunk.ID][]blob.Ref{}, kids: map[chunk.ID][]blob.Ref{}}
	gone, err := s.markMissingPacks(ctx)
	if err != nil {
		return nil, fmt.Errorf("look for lost pack files: %w", err)
	}
	if c.rep.TreesRestored, err = s.healTreesFromCopies(ctx); err != nil {
		return nil, fmt.Errorf("write damaged trees back from their copies: %w", err)
	}
	for _, r := range gone {
		if o, err := s.Stat(ctx, r); err != nil || o.Damaged {
			c.status[r] = "damaged" // also those below a lost tree, which no walk reaches
		}
	}
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
					Detail: fmt.Sprintf("uses %d missing or damaged blob(s), first %s; its other files can still be restored, and it is whole again once the laptop backs up the same files", len(bad), bad[0])})
			}
		}
	}
	if opts.ReadData {
		// What someone holds and no walk reached (below a damaged tree,
		// or uploads not committed yet) is read too: damage below a lost
		// tree is found and marked now, so that the laptops' next backups
		// send it again with the tree, not one directory level a night.
		var more []blob.Ref
		err := s.eachObj(func(r blob.Ref, o objRec, derr error) error {
			if _, seen := c.status[r]; derr == nil && !seen && o.Owners > 0 && !o.lost() {
				more = append(more, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, r := range more {
			if _, err := c.blobStatus(r); err != nil {
				return nil, err
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
	for _, md := range s.metaDamage {
		if md.Restored {
			c.rep.Restored = append(c.rep.Restored, md)
			continue
		}
		c.rep.Problems = append(c.rep.Problems, Problem{Kind: "metadata", Ref: md.File, Detail: md.Detail})
	}
	// Backups go on while a check runs: a commit between reading the
	// snapshots and reading the counts would look like a wrong count, and
	// stop GC until a repair. The recount holds off commits and deletions
	// (briefly: it reads the index only), and is made again while uploads
	// change the index under it: a count is never judged on a view that
	// changed.
	for attempt := 0; ; attempt++ {
		before := s.writes.Load()
		n := len(c.rep.Problems)
		users = s.Users()
		for _, u := range users {
			for _, sn := range s.Snapshots(u.ID) {
				if _, seen := c.status[blob.Ref{Type: blob.Tree, ID: sn.Root}]; !seen {
					if _, err := c.badBelow(blob.Ref{Type: blob.Tree, ID: sn.Root}, 0); err != nil {
						return nil, err
					}
				}
			}
		}
		// Under refMu: a commit publishes its snapshot before the job that
		// counts it, and a deletion is the other way round; uploads change
		// only owners and usage, and the write count tells.
		s.refMu.Lock()
		err := c.recount(users)
		s.refMu.Unlock()
		if err != nil {
			return nil, err
		}
		if s.writes.Load() == before || !slices.ContainsFunc(c.rep.Problems[n:], func(p Problem) bool { return p.Kind == "count" }) {
			break
		}
		c.rep.Problems = c.rep.Problems[:n]
		if attempt == 9 {
			c.rep.CountsNotCompared = true
			break
		}
		time.Sleep(time.Duration(20*(attempt+1)) * time.Millisecond)
	}
	sort.SliceStable(c.rep.Problems, func(i, j int) bool { return c.rep.Problems[i].Kind < c.rep.Problems[j].Kind })
	for _, p := range c.rep.Problems {
		switch p.Kind {
		case "damaged":
			c.rep.Damaged++
		case "missing", "count":
			c.rep.IndexProblems++
		}
	}
	// Trees the walk found damaged read from their copies: written back now.
	n, err := s.healTreesFromCopies(ctx)
	c.rep.TreesRestored += n
	if err != nil {
		return nil, fmt.Errorf("write damaged trees back from their copies: %w", err)
	}
	// Garbage collection trusts the index: it refuses to run while the last
	// check found the index inconsistent (Repair, or a clean check, clears it).
	if c.rep.IndexProblems > 0 {
		s.setSuspect(ctx, fmt.Sprintf("%d index problem(s), first: %s %s", c.rep.IndexProblems, c.rep.firstIndexProblem().Kind, c.rep.firstIndexProblem().Detail))
	} else {
		s.setSuspect(ctx, "")
	}
	return c.rep, nil
}

func (r *CheckReport) firstIndexProblem() Problem {
	for _, p := range r.Problems {
		if p.Kind == "missing" || p.Kind == "count" {
			return p
		}
	}
	return Problem{}
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
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrIndexDamaged), errors.Is(err, errRecordElsewhere):
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
	} else if bi, err := c.s.Stat(c.ctx, r); errors.Is(err, ErrNotFound) || errors.Is(err, ErrIndexDamaged) {
		st = "missing"
	} else if err != nil {
		return "", err
	} else if bi.Damaged {
		st = "damaged"
		if c.s.lostElsewhere(r) {
			st = "missing" // found by a read before: the index, not the data
		}
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
		// uncertain: a damaged tree hides what is below it, so counts the
		// recount finds lower than the index's cannot be judged (the index
		// counted them when the tree was intact, and keeps them until an
		// upload heals it).
		uncertain := false
		var stack []chunk.ID
		for _, sn := range s.Snapshots(u.ID) {
			r := blob.Ref{Type: blob.Tree, ID: sn.Root}
			if st, _ := c.blobStatus(r); st == "missing" {
				continue
			} else if st == "damaged" {
				uncertain = true
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
				} else if st == "damaged" && k.Type == blob.Tree {
					uncertain = true
				}
				refs[k]++
				if k.Type == blob.Tree && !reached[k.ID] {
					reached[k.ID] = true
					stack = append(stack, k.ID)
				}
			}
		}
		var usage Usage
		err := s.view(func(txn *badger.Txn) error {
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
				if h.Refs != want && !(uncertain && h.Refs > want) {
					c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", User: u.Serial, Ref: r.String(),
						Detail: fmt.Sprintf("index counts %d references, recount %d", h.Refs, want)})
				}
				if uncertain {
					want = h.Refs
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
	return s.eachObj(func(r blob.Ref, o objRec, derr error) error {
		if derr != nil {
			c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", Ref: r.String(), Detail: derr.Error()})
		} else if o.Owners != owners[r] {
			c.rep.Problems = append(c.rep.Problems, Problem{Kind: "count", Ref: r.String(),
				Detail: fmt.Sprintf("index says %d owners, recount %d", o.Owners, owners[r])})
		}
		return nil
	})
}

// RepairReport says what Repair rebuilt.
type RepairReport struct {
	Packs int   `json:"packs"`
	Blobs int64 `json:"blobs"`
	// Damaged counts pack records that failed their checksum or hash: each
	// is left out of the index (its neighbours are not) and listed in Spans.
	Damaged int64 `json:"damaged_records_skipped"`
	// Lost counts blobs that snapshots reference and no pack holds intact:
	// they are marked damaged and heal when a laptop sends them again.
	Lost      int64 `json:"lost"`
	Snapshots int   `json:"snapshots"`
	// TornBytes are bytes at the end of packs after the last intact record
	// (a write cut short by a crash, or damage at the very end).
	TornBytes int64 `json:"torn_bytes"`
	// KeptBelowDamagedTrees counts blobs that no snapshot was found to
	// reference while some snapshot's tree could not be read: what is
	// below such a tree cannot be counted, so these are kept from garbage
	// collection until every such tree is healed or deleted.
	KeptBelowDamagedTrees int64 `json:"kept_below_damaged_trees,omitempty"`
	// TreesRestored counts trees no pack held intact that were written
	// back from their copies.
	TreesRestored int `json:"trees_restored,omitempty"`
	// Spans lists each damaged stretch of a pack, at most 1000.
	Spans []string `json:"damaged_spans,omitempty"`
	// IndexMovedAside names where a damaged index that would not open was
	// moved (see OpenForRepair); it can be deleted once the store checks clean.
	IndexMovedAside string `json:"index_moved_aside,omitempty"`
}

// Repair rebuilds the whole index from the pack files and the user and
// snapshot files: every blob whose record is intact is indexed again and
// every snapshot's references are recounted. A damaged record costs only
// itself: the scan finds the records after it. A blob that snapshots
// reference but no pack holds intact is marked damaged, to be healed by the
// next backup of a laptop that has it. Pending uploads that no snapshot
// references are forgotten (the laptop uploads them again if needed). The
// store must not be serving backups while Repair runs.
func (s *Store) Repair(ctx context.Context) (*RepairReport, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	rep, err := s.repair(ctx)
	if err != nil {
		return rep, err
	}
	// Trees no pack holds intact come back from their copies, which the
	// rebuild kept.
	n, err := s.healTreesFromCopies(ctx)
	rep.TreesRestored = n
	if err != nil {
		return rep, fmt.Errorf("index rebuilt; writing damaged trees back from their copies: %w", err)
	}
	return rep, nil
}

func (s *Store) repair(ctx context.Context) (*RepairReport, error) {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	// Until the rebuild is whole, the store must not open for anything but
	// Repair: an index cleared half way has lost the accounting that keeps
	// GC from taking every pack for garbage.
	if err := fsys.WriteFileAtomic(s.fsys, repairingFile, []byte("an index rebuild (Repair) began and has not finished\n")); err != nil {
		return nil, fmt.Errorf("mark the index rebuild: %w", err)
	}
	// Everything but the trees' copies, which are checked against their
	// IDs when used and may be all that is left of a tree.
	var drop [][]byte
	for p := range 256 {
		if byte(p) != pCopy {
			drop = append(drop, []byte{byte(p)})
		}
	}
	if err := s.db.DropPrefix(drop...); err != nil {
		return nil, fmt.Errorf("clear index: %w", err)
	}
	seqs, err := s.pio.list(ctx)
	if err != nil {
		return nil, err
	}
	if seqs, err = s.pio.listedOrThere(ctx, seqs); err != nil {
		return nil, err
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	rep := &RepairReport{Packs: len(seqs), IndexMovedAside: s.movedAside}
	intact := map[blob.Ref]bool{} // indexed from an intact record (true) or a damaged one (false)
	// unattributed counts, per pack, the damaged stretches no blob can be
	// tied to (no readable header): garbage from now on, so that the audit
	// of compaction finds them accounted for (they stopped GC for good).
	unattributed := map[uint64]uint64{}
	for _, seq := range seqs {
		wb := s.db.NewWriteBatch()
		var scratch []byte
		var keepErr error
		// keepLost indexes a damaged record (unless an intact copy is known)
		// as lost, where it is: its snapshots count it, Need asks for it
		// again, and compaction keeps its pack until it is healed. An entry
		// whose ID was itself damaged has no owners and is swept by GC.
		keepLost := func(h pack.Header, off int64) error {
			r := blob.Ref{Type: h.Type, ID: h.ID}
			if _, seen := intact[r]; seen || !h.Type.Valid() {
				return nil
			}
			intact[r] = false
			o := objRec{Type: h.Type, Flags: h.Flags | flagLost, Pack: seq, Off: off, Stored: h.Stored, Raw: h.Raw}
			rec, _ := json.Marshal(lostRec{Since: s.opts.Now().Unix(), Reason: fmt.Sprintf("repair: record in pack %016x at %d is damaged", seq, off)})
			if err := wb.Set(objKey(r), o.encode()); err != nil {
				return err
			}
			return wb.Set(lostKey(r), rec)
		}
		_, err := s.pio.scan(ctx, seq, func(h pack.Header, off int64, data []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := blob.Ref{Type: h.Type, ID: h.ID}
			if intact[r] {
				return nil
			}
			raw := data
			if h.Flags&pack.FlagZstd != 0 {
				var err error
				if raw, err = s.codec.Decompress(scratch[:0], data, int(h.Raw)); err != nil {
					rep.Damaged++
					rep.addSpan(seq, off, off+pack.RecordHeaderLen+int64(h.Stored), r, "does not decompress")
					return keepLost(h, off)
				}
				scratch = raw
			}
			if chunk.Sum(raw) != h.ID {
				rep.Damaged++
				rep.addSpan(seq, off, off+pack.RecordHeaderLen+int64(h.Stored), r, "fails its hash check")
				return keepLost(h, off)
			}
			if _, dup := intact[r]; !dup {
				rep.Blobs++
			}
			intact[r] = true
			o := objRec{Type: h.Type, Flags: h.Flags, Pack: seq, Off: off, Stored: h.Stored, Raw: h.Raw}
			if err := wb.Set(objKey(r), o.encode()); err != nil {
				return err
			}
			return wb.Delete(lostKey(r))
		}, func(sp pack.DamagedSpan) {
			if sp.Header == nil {
				unattributed[seq]++
			}
			if sp.Tail && sp.Header == nil {
				rep.TornBytes += sp.End - sp.Off
				rep.addSpan(seq, sp.Off, sp.End, blob.Ref{}, "torn tail")
				return
			}
			rep.Damaged++
			var r blob.Ref
			if sp.Header != nil {
				r = blob.Ref{Type: sp.Header.Type, ID: sp.Header.ID}
				if err := keepLost(*sp.Header, sp.Off); err != nil && keepErr == nil {
					keepErr = err
				}
			}
			rep.addSpan(seq, sp.Off, sp.End, r, "fails its checksum")
		})
		if err == nil {
			err = keepErr
		}
		if err != nil {
			wb.Cancel()
			return nil, fmt.Errorf("scan pack %016x: %w", seq, err)
		}
		if err := wb.Flush(); err != nil {
			return nil, fmt.Errorf("index pack %016x: %w", seq, err)
		}
	}
	for _, u := range s.Users() {
		rep.Snapshots += len(s.Snapshots(u.ID))
	}
	// Every record of every pack is now indexed or a copy of one indexed
	// elsewhere: the accounting starts over from here, for all packs.
	if err := s.update(ctx, func(txn *badger.Txn) error {
		if err := setU64(txn, acctFromKey, 0); err != nil {
			return err
		}
		for seq, n := range unattributed {
			if err := setU64(txn, acctKey(seq), n); err != nil {
				return err
			}
		}
		return setU64(txn, runningKey, s.packs.NextSeq())
	}); err != nil {
		return rep, err
	}
	if err := s.reconcileLocked(ctx); err != nil {
		return rep, fmt.Errorf("recount references: %w", err)
	}
	if err := s.dropStrayCopies(ctx); err != nil {
		return rep, fmt.Errorf("drop copies of trees no longer stored: %w", err)
	}
	if rep.KeptBelowDamagedTrees, err = s.keepUnclaimed(ctx); err != nil {
		return rep, fmt.Errorf("keep what damaged trees may reference: %w", err)
	}
	lost, err := s.Damaged(ctx)
	if err != nil {
		return rep, err
	}
	rep.Lost = int64(len(lost))
	if err := s.db.Sync(); err != nil {
		return rep, fmt.Errorf("index rebuilt but not synced: %w", err)
	}
	if err := s.fsys.Remove(repairingFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("index rebuilt, but its marker stays: %w", err)
	}
	if err := s.fsys.SyncDir("."); err != nil {
		return rep, err
	}
	return rep, nil
}

// repairingFile marks an index rebuild under way (see Repair): Open refuses
// the store while it is there.
const repairingFile = "REPAIRING"

func (rep *RepairReport) addSpan(seq uint64, off, end int64, r blob.Ref, why string) {
	if len(rep.Spans) >= 1000 {
		return
	}
	what := ""
	if r.ID != (chunk.ID{}) {
		what = " (record of " + r.String() + ")"
	}
	rep.Spans = append(rep.Spans, fmt.Sprintf("pack %016x bytes %d-%d%s: %s", seq, off, end, what, why))
}
