package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
	"os"
)

// Damage and healing.
//
// A blob with no intact copy stays in the index, marked lost (flagLost), with
// a 'd' entry saying since when and why. It is marked when a read fails its
// checksum or hash (a restore, a check with ReadData, the nightly scrub,
// compaction, a commit's validation), when its pack file is gone, and when a
// snapshot references a blob no pack holds (after Repair). Nothing else
// changes: its holders keep holding it, so reference counts, usage and
// garbage collection stay exactly as they were, and no neighbouring blob is
// touched.
//
// Healing: Need answers "send it" to every holder of a lost blob, the
// session's Grant lists the lost blobs the laptop holds (so a laptop whose
// file cache would skip the unchanged file reads it again), and Put of a
// verified copy points the entry at the new record and clears the mark: every
// snapshot that uses the blob is whole again. A tree that was lost when a
// reference walk had to descend into it records the descent it owes its
// children ('x' entries); healing the tree runs those walks, so counts end up
// exactly as if it had never been lost.

// markLost records that r, found at where, has no intact copy. It is best
// effort (a read-only store, or one being closed, cannot record it) and does
// nothing if the index meanwhile points r elsewhere (compaction moved it, or
// an upload healed it).
// lostElsewhere reports whether r was marked damaged because an intact
// record of another blob is where the index has it (errRecordElsewhere).
func (s *Store) lostElsewhere(r blob.Ref) bool {
	var lr lostRec
	s.view(func(txn *badger.Txn) error {
		b, ok, err := get(txn, lostKey(r))
		if err == nil && ok {
			json.Unmarshal(b, &lr)
		}
		return err
	})
	return strings.Contains(lr.Reason, errRecordElsewhere.Error())
}

func (s *Store) markLost(r blob.Ref, where objRec, reason string) {
	if s.opts.ReadOnly {
		return
	}
	rec, _ := json.Marshal(lostRec{Since: s.opts.Now().Unix(), Reason: reason})
	for attempt := 0; attempt < 5; attempt++ {
		err := s.dbUpdate(func(txn *badger.Txn) error {
			o, ok, err := getObj(txn, r)
			if err != nil || !ok || o.lost() || o.Pack != where.Pack || o.Off != where.Off {
				return err
			}
			o.Flags |= flagLost
			if err := txn.Set(objKey(r), o.encode()); err != nil {
				return err
			}
			return txn.Set(lostKey(r), rec)
		})
		if !errors.Is(err, badger.ErrConflict) {
			return
		}
	}
}

// markMissingPacks marks lost every indexed blob whose pack file is gone
// (deleted, lost to a file system check, never copied back from a backup of
// the disk) or ends before the blob's record does (a pack cut short). A
// read of each would find it (and mark it) too, but nothing reads what is
// below a lost tree: marking them all at once tells the laptops every blob
// to send again, so one backup heals every level. A record counts as gone
// only when a read of it fails (for a missing pack: finds no file or no
// object): a listing that lags, or a pack written since the listing, is
// never taken for lost, nor is an object store that fails. It returns the
// blobs it marked that someone holds.
func (s *Store) markMissingPacks(ctx context.Context) ([]blob.Ref, error) {
	if s.opts.ReadOnly {
		return nil, nil
	}
	sizes, err := s.pio.sizes(ctx)
	if err != nil {
		return nil, err
	}
	type rec struct {
		r blob.Ref
		o objRec
	}
	absent := map[uint64][]rec{}
	var short []rec
	err = s.eachObj(func(r blob.Ref, o objRec, derr error) error {
		if derr != nil || o.lost() {
			return nil
		}
		size, ok := sizes[o.Pack]
		if !ok {
			absent[o.Pack] = append(absent[o.Pack], rec{r, o})
		} else if size >= 0 && o.Off+pack.RecordHeaderLen+int64(o.Stored) > size {
			short = append(short, rec{r, o})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var held []blob.Ref
	mark := func(rc rec, why string) {
		s.markLost(rc.r, rc.o, why)
		if rc.o.Owners > 0 {
			held = append(held, rc.r)
		}
	}
	for seq, recs := range absent {
		if err := ctx.Err(); err != nil {
			return held, err
		}
		if _, _, err := s.pio.readRecord(ctx, seq, recs[0].o.Off, recs[0].o.Stored); !errors.Is(err, os.ErrNotExist) {
			continue // there after all (written since the listing), or the object store failed
		}
		for _, rc := range recs {
			mark(rc, fmt.Sprintf("pack file %016x missing", rc.o.Pack))
		}
	}
	for _, rc := range short {
		_, _, err := s.pio.readRecord(ctx, rc.o.Pack, rc.o.Off, rc.o.Stored)
		if err == nil || isRemoteErr(err) || errors.Is(err, context.Canceled) {
			continue // it grew since (being written), or the object store failed
		}
		mark(rc, fmt.Sprintf("pack file %016x ends before its record at %d", rc.o.Pack, rc.o.Off))
	}
	return held, nil
}

// DamagedBlob is a blob with no intact copy on the server.
type DamagedBlob struct {
	Ref    blob.Ref  `json:"ref"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// Owners is how many users hold it (their snapshots or uploads).
	Owners int `json:"owners"`
}

// Damaged lists the blobs that have no intact copy, oldest first. Each
// heals when a laptop that holds it uploads it again.
func (s *Store) Damaged(ctx context.Context) ([]DamagedBlob, error) {
	var out []DamagedBlob
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pLost}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if len(k) != 34 {
				continue
			}
			r := blob.Ref{Type: blob.Type(k[1])}
			copy(r.ID[:], k[2:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			var lr lostRec
			json.Unmarshal(v, &lr) // a damaged record still names the blob
			o, ok, err := getObj(txn, r)
			if err != nil {
				return err
			}
			if !ok || !o.lost() {
				continue // healed or swept since
			}
			out = append(out, DamagedBlob{Ref: r, Since: time.Unix(lr.Since, 0).UTC(), Reason: lr.Reason, Owners: int(o.Owners)})
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, err
}

// maxDamagedList caps how many damaged blobs one session is told about; a
// laptop told about that many forgets its whole file cache instead.
const maxDamagedList = 4096

// DamagedHeld lists the damaged blobs this user holds (at most 4096; more
// reports true in all, and the laptop should read every file again). Its
// next backup sends them again and heals them for everyone.
func (s *Store) DamagedHeld(ctx context.Context, user UserID) (refs []blob.Ref, all bool, err error) {
	err = s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pLost}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 34 {
				continue
			}
			r := blob.Ref{Type: blob.Type(k[1])}
			copy(r.ID[:], k[2:])
			h, err := getHold(txn, user, r)
			if err != nil {
				return err
			}
			if !h.held() {
				continue
			}
			if len(refs) == maxDamagedList {
				all = true
				return nil
			}
			refs = append(refs, r)
		}
		return nil
	})
	return refs, all, err
}

// healLocked is called inside an upload's transaction when a verified copy
// of the lost blob r replaces it: it clears the mark and, for a tree, turns
// the descents it owes into reference-counting jobs. It reports whether jobs
// were added (the caller runs them).
func healLocked(txn *badger.Txn, r blob.Ref) (jobs bool, err error) {
	if err := txn.Delete(lostKey(r)); err != nil {
		return false, err
	}
	if r.Type != blob.Tree {
		return false, nil
	}
	prefix := append([]byte{pDebt}, r.ID[:]...)
	type debt struct {
		key   []byte
		user  UserID
		delta int32
	}
	var debts []debt
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			it.Close()
			return false, err
		}
		if len(k) != 41 || len(v) != 4 {
			continue
		}
		debts = append(debts, debt{k, UserID(binary.BigEndian.Uint64(k[33:])), int32(binary.LittleEndian.Uint32(v))})
	}
	it.Close()
	for _, d := range debts {
		if err := txn.Delete(d.key); err != nil {
			return false, err
		}
		if d.delta == 0 {
			continue
		}
		j := &job{User: d.user, Delta: d.delta, Root: r.ID, Started: true, Stack: []frame{{Tree: r.ID}}, Snap: "heal"}
		if err := addJob(txn, j); err != nil {
			return false, err
		}
		jobs = true
	}
	return jobs, nil
}

// oweDescent records, inside a reference walk's transaction, that the walk
// could not descend into the lost tree id for user with delta.
func oweDescent(txn *badger.Txn, id chunk.ID, user UserID, delta int32) error {
	k := debtKey(id, user)
	v, ok, err := get(txn, k)
	if err != nil {
		return err
	}
	var cur int32
	if ok && len(v) == 4 {
		cur = int32(binary.LittleEndian.Uint32(v))
	}
	cur += delta
	if cur == 0 {
		return txn.Delete(k)
	}
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, uint32(cur))
	return txn.Set(k, b)
}

// ScrubOptions choose how much the scrub reads.
type ScrubOptions struct {
	// Days is how many nightly runs it takes to read every pack once
	// (default Options.ScrubDays, or 30 when that turns the nightly scrub
	// off): each run reads the next 1/Days of the packs, in a rolling
	// order that resumes where the last run stopped.
	Days int
	// All reads every pack now.
	All bool
}

// ScrubReport is what a scrub read and found.
type ScrubReport struct {
	Packs     int   `json:"packs"`
	Blobs     int64 `json:"blobs"`
	BytesRead int64 `json:"bytes_read"`
	// Damaged lists the blobs found damaged by this run (newly marked).
	Damaged []string `json:"damaged,omitempty"`
	// TreesRestored counts damaged trees written back from their copies.
	TreesRestored int `json:"trees_restored,omitempty"`
	// MetaCopiesPut counts copies of user and snapshot files in the bucket
	// that differed from the files (damaged there) and were put again.
	MetaCopiesPut int   `json:"meta_copies_put,omitempty"`
	DurationMS    int64 `json:"duration_ms"`
}

var scrubCursorKey = []byte{pMeta, 's', 'c', 'r', 'u', 'b'}

// maxRecheck caps the stored copies waiting for the next scrub to verify
// them (those another user just deduplicated against).
const maxRecheck = 1 << 16

// recheckLater queues the stored copy of r (at o) for the next scrub.
func (s *Store) recheckLater(r blob.Ref, o objRec) {
	s.recheckMu.Lock()
	defer s.recheckMu.Unlock()
	if s.recheck == nil {
		s.recheck = map[blob.Ref]objRec{}
	}
	if len(s.recheck) < maxRecheck {
		s.recheck[r] = o
	}
}

// Scrub reads back the next share of the pack files and verifies every blob
// the index points at in them (checksum, decompression, hash). A blob that
// fails is marked damaged, so that the next backup of a laptop that holds it
// sends it again. The nightly lifecycle scrubs 1/Days of the packs, so every
// pack is read at least once every Days nights.
func (s *Store) Scrub(ctx context.Context, opts ScrubOptions) (*ScrubReport, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if opts.Days <= 0 {
		opts.Days = s.opts.ScrubDays // the nightly run's share
	}
	if opts.Days <= 0 {
		opts.Days = 30 // no nightly scrub: a share of 30 nights
	}
	start := time.Now()
	rep := &ScrubReport{}
	defer func() { rep.DurationMS = time.Since(start).Milliseconds() }()
	gone, err := s.markMissingPacks(ctx)
	if err != nil {
		return rep, err
	}
	for _, r := range gone {
		rep.Damaged = append(rep.Damaged, r.String())
	}
	seqs, err := s.pio.list(ctx)
	if err != nil {
		return rep, err
	}
	slices.Sort(seqs)
	if len(seqs) == 0 {
		return rep, nil
	}
	var cursor uint64
	s.view(func(txn *badger.Txn) error {
		if v, ok, _ := get(txn, scrubCursorKey); ok && len(v) == 8 {
			cursor = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	n := len(seqs)
	if !opts.All {
		n = (len(seqs) + opts.Days - 1) / opts.Days
	}
	// The next n packs after the cursor, wrapping around.
	i := sort.Search(len(seqs), func(i int) bool { return seqs[i] > cursor })
	chosen := map[uint64]bool{}
	for k := 0; k < n; k++ {
		chosen[seqs[(i+k)%len(seqs)]] = true
	}
	last := seqs[(i+n-1)%len(seqs)]
	type rec struct {
		r blob.Ref
		o objRec
	}
	var recs []rec
	err = s.eachObj(func(r blob.Ref, o objRec, derr error) error {
		if derr == nil && !o.lost() && chosen[o.Pack] {
			recs = append(recs, rec{r, o})
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].o.Pack != recs[j].o.Pack {
			return recs[i].o.Pack < recs[j].o.Pack
		}
		return recs[i].o.Off < recs[j].o.Off
	})
	rep.Packs = len(chosen)
	// First the copies new uploads were deduplicated against since the last
	// scrub, wherever they are: bit rot must not spread through dedup.
	s.recheckMu.Lock()
	queued := s.recheck
	s.recheck = nil
	s.recheckMu.Unlock()
	for r, o := range queued {
		if !chosen[o.Pack] {
			recs = append(recs, rec{r, o})
		}
	}
	var scratch []byte
	fetched := 0 // on an object store: recs[:fetched] were read ahead
	for i, rc := range recs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if s.pio.remote != nil && i >= fetched {
			// The next 32 MiB of records, in a few parallel ranged reads.
			var locs []objRec
			var n int64
			for fetched = i; fetched < len(recs) && n < 32<<20; fetched++ {
				locs = append(locs, recs[fetched].o)
				n += int64(recs[fetched].o.Stored) + pack.RecordHeaderLen
			}
			s.pio.prefetch(ctx, locs)
		}
		rep.Blobs++
		rep.BytesRead += int64(rc.o.Stored) + pack.RecordHeaderLen
		var rerr error
		reason := s.verifyAt(rc.r, rc.o, &scratch, &rerr)
		if rerr != nil {
			return rep, rerr
		}
		if reason != "" {
			// Compaction may have moved it meanwhile: only a blob still
			// at the place read is marked.
			if s.stillAt(rc.r, rc.o) {
				s.markLost(rc.r, rc.o, "scrub: "+reason)
				rep.Damaged = append(rep.Damaged, rc.r.String())
			}
		} else if rc.r.Type == blob.Tree {
			if !s.hasCopy(rc.r) {
				if _, data, err := s.pio.readRecord(ctx, rc.o.Pack, rc.o.Off, rc.o.Stored); err == nil {
					s.ensureCopy(ctx, rc.r, rc.o, data)
				}
			}
		}
	}
	if rep.TreesRestored, err = s.healTreesFromCopies(ctx); err != nil {
		return rep, err
	}
	if s.opts.Remote != nil {
		if rep.MetaCopiesPut, err = s.scrubMetaCopies(ctx, opts); err != nil {
			return rep, err
		}
	}
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, last)
	if err := s.update(ctx, func(txn *badger.Txn) error { return txn.Set(scrubCursorKey, b) }); err != nil {
		return rep, err
	}
	return rep, nil
}

// verifyAt reads the record of r at o and checks it all the way (CRC, ID,
// decompression, hash). It returns why it failed, or "".
func (s *Store) verifyAt(r blob.Ref, o objRec, scratch *[]byte, remoteFail *error) string {
	h, data, err := s.pio.readRecord(context.Background(), o.Pack, o.Off, o.Stored)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && s.pio.gone(context.Background(), o.Pack) {
			return "pack file missing"
		}
		if errors.Is(err, os.ErrNotExist) {
			err = &remoteError{fmt.Errorf("pack %016x: a read found no object, though the object store has it (%v)", o.Pack, err)}
		}
		if isRemoteErr(err) {
			// The object store failed, not the data: nothing is marked,
			// and the scrub stops (its cursor stays) with this error.
			*remoteFail = err
			return ""
		}
		return err.Error()
	}
	if h.ID != r.ID || h.Type != r.Type {
		return fmt.Sprintf("record holds %s", h.ID.Short())
	}
	raw := data
	if o.Flags&pack.FlagZstd != 0 {
		if raw, err = s.codec.Decompress((*scratch)[:0], data, int(o.Raw)); err != nil {
			return "does not decompress"
		}
		*scratch = raw
	}
	if len(raw) != int(o.Raw) || chunk.Sum(raw) != r.ID {
		return "fails its hash check"
	}
	return ""
}

// stillAt reports whether the index still points r at o's place.
func (s *Store) stillAt(r blob.Ref, o objRec) bool {
	var cur objRec
	var ok bool
	s.view(func(txn *badger.Txn) (err error) {
		cur, ok, err = getObj(txn, r)
		return err
	})
	return ok && cur.Pack == o.Pack && cur.Off == o.Off
}

var suspectKey = []byte{pMeta, 's', 'u', 's', 'p', 'e', 'c', 't'}

// setSuspect records (or clears) that the last check found the index
// inconsistent with the packs and snapshots: garbage collection refuses to
// run until Repair (or a clean check) clears it.
func (s *Store) setSuspect(ctx context.Context, why string) {
	if s.opts.ReadOnly {
		return
	}
	s.update(ctx, func(txn *badger.Txn) error {
		if why == "" {
			return txn.Delete(suspectKey)
		}
		return txn.Set(suspectKey, []byte(why))
	})
}

// suspect returns why the index is not trusted, or "".
func (s *Store) suspect() string {
	var why string
	s.view(func(txn *badger.Txn) error {
		v, ok, _ := get(txn, suspectKey)
		if ok {
			why = string(v)
		}
		return nil
	})
	return why
}

// MetaDamage is a user or snapshot file that could not be read.
type MetaDamage struct {
	File string `json:"file"`
	// Recovered: rebuilt from what the index and the file's name say (a
	// snapshot's root and time; a user's ID, under a placeholder serial).
	Recovered bool `json:"recovered"`
	// Restored: rebuilt whole (from a copy, or a snapshot from the index)
	// and written back: nothing is left to do but delete the damaged file
	// kept beside it (*.damaged).
	Restored bool   `json:"restored,omitempty"`
	Detail   string `json:"detail"`
}

// recoverSnapshot rebuilds a snapshot whose file is damaged from its name
// (user, ID and so time) and the index, which records every counted
// snapshot's root. A snapshot that cannot be rebuilt is left out and
// reported; garbage collection then refuses to run (its blobs may be the
// snapshot's only trace), until staff restore the file or run Repair.
func (s *Store) recoverSnapshot(user UserID, name string, cause error) *Snapshot {
	file := "snapshots/" + user.String() + "/" + name
	id := SnapshotID(strings.TrimSuffix(name, ".json"))
	var root chunk.ID
	found := false
	if ValidSnapshotID(id) {
		s.view(func(txn *badger.Txn) error {
			v, ok, err := get(txn, applyKey(user, id))
			if err == nil && ok && len(v) == len(root) {
				copy(root[:], v)
				found = true
			}
			return nil
		})
	}
	if !found {
		s.metaDamage = append(s.metaDamage, MetaDamage{File: file, Detail: fmt.Sprintf("cannot be read (%v) and the index does not know its root", cause)})
		return nil
	}
	t, _ := time.Parse("20060102T150405Z", string(id)[:16])
	sn := &Snapshot{ID: id, User: user, Time: t.UTC(), Root: root, guessSeq: true}
	s.view(func(txn *badger.Txn) error {
		if b, ok, err := get(txn, tstatKey(root)); err == nil && ok && len(b) == 32 {
			sn.Files = int64(binary.LittleEndian.Uint64(b))
			sn.Dirs = int64(binary.LittleEndian.Uint64(b[8:]))
			sn.Size = int64(binary.LittleEndian.Uint64(b[16:]))
			sn.Stored = int64(binary.LittleEndian.Uint64(b[24:]))
		}
		return nil
	})
	md := MetaDamage{File: file, Recovered: true, Detail: fmt.Sprintf("could not be read (%v); rebuilt from the index (pin and host are lost; its place among the others comes from its time)", cause)}
	if !s.opts.ReadOnly {
		b, _ := json.MarshalIndent(sn, "", "  ")
		s.fsys.Rename(file, file+".damaged")
		if err := fsys.WriteFileAtomic(s.fsys, file, b); err != nil {
			md.Detail += "; writing it back failed: " + err.Error()
		} else {
			md.Restored = true
		}
	}
	s.metaDamage = append(s.metaDamage, md)
	return sn
}

// recoverUser stands in for a user whose file is damaged: the user keeps
// their ID (and so their snapshots, which are counted as before) under the
// serial "damaged-ID", not approved, until staff give it back its real
// serial (xs-admin alias damaged-ID SERIAL). Its laptop must register again.
func (s *Store) recoverUser(name string, cause error) (*User, error) {
	hexID := strings.TrimSuffix(name, ".json")
	n, err := strconv.ParseUint(hexID, 16, 64)
	if err != nil || userFile(UserID(n)) != "users/"+name {
		s.metaDamage = append(s.metaDamage, MetaDamage{File: "users/" + name, Detail: fmt.Sprintf("cannot be read (%v) and is not named like a user file", cause)})
		return nil, fmt.Errorf("%w: users/%s cannot be read (%v): move it out of users/", ErrCorrupt, name, cause)
	}
	id := UserID(n)
	if b, err := fsys.ReadFile(s.fsys, userCopy(id), 1<<20); err == nil {
		u := new(User)
		if json.Unmarshal(b, u) == nil && u.ID == id {
			md := MetaDamage{File: userFile(id), Recovered: true, Restored: true,
				Detail: fmt.Sprintf("could not be read (%v); restored from its copy (%s)", cause, userCopy(id))}
			if !s.opts.ReadOnly {
				s.fsys.Rename(userFile(id), userFile(id)+".damaged")
				if err := fsys.WriteFileAtomic(s.fsys, userFile(id), b); err != nil {
					md.Detail += "; writing it back failed: " + err.Error()
					md.Restored = false
				}
			}
			s.metaDamage = append(s.metaDamage, md)
			return u, nil
		}
	}
	u := &User{ID: id, Serial: "damaged-" + hexID, Created: s.opts.Now().UTC()}
	md := MetaDamage{File: userFile(u.ID), Recovered: true,
		Detail: fmt.Sprintf("could not be read (%v), nor its copy; the user keeps its backups as %s until they are aliased to its laptop's serial, and the laptop must register again", cause, u.Serial)}
	if !s.opts.ReadOnly {
		s.fsys.Rename(userFile(u.ID), userFile(u.ID)+".damaged")
		b, _ := json.MarshalIndent(u, "", "  ")
		if err := fsys.WriteFileAtomic(s.fsys, userFile(u.ID), b); err != nil {
			md.Detail += "; writing it back failed: " + err.Error()
		}
	}
	s.metaDamage = append(s.metaDamage, md)
	return u, nil
}

// MetaDamage lists the user and snapshot files Open found damaged.
func (s *Store) MetaDamage() []MetaDamage { return slices.Clone(s.metaDamage) }
