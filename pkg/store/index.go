package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Index keys. The Badger index is derived state: Repair rebuilds all of it
// from the pack files and the user and snapshot files, but the trees'
// copies ('c'), which it keeps (each is checked against its tree's ID).
//
//	'o' type id        -> objRec: where a blob is, its sizes, how many users hold it
//	'h' user type id   -> holdRec: this user's references to the blob, and its pending-upload time
//	'u' user           -> usageRec: stored bytes and blobs the user holds
//	'a' user snapID    -> (empty) the snapshot's references have been counted
//	'j' seq            -> a reference-counting job in progress
//	't' treeID         -> treeStats: files, dirs, sizes of a tree (a cache)
//	'm' name           -> store-wide counters
//	'd' type id        -> lostRec: the blob has no intact copy (damaged or missing)
//	'x' treeID user    -> int32: a descent into a lost tree still owed to its children
//	'k' type id        -> (empty) held by nobody after Repair while descents were owed: kept from GC until none is
//	'c' treeID         -> flags, raw length, stored bytes: the copy of a tree's record (treecopy.go)
//	'm' "dead/" pack off -> (empty) a damaged record whose blob was healed elsewhere
const (
	pObj   = 'o'
	pHold  = 'h'
	pUsage = 'u'
	pApply = 'a'
	pJob   = 'j'
	pTStat = 't'
	pMeta  = 'm'
	pLost  = 'd'
	pDebt  = 'x'
	pKeep  = 'k'
	pCopy  = 'c'
	pEra   = 'e' // stamps given by a clock that was behind (clockera.go)
)

// flagLost marks an objRec whose blob has no intact copy: its record failed
// its checksum or hash, its pack is gone, or a snapshot references it and no
// pack holds it. The entry stays (with its owner count) so that reference
// counting goes on as if the blob were there; reads fail with ErrCorrupt,
// Need asks its holders to send it again, and the first verified upload
// replaces it (see heal). Only objRec uses this bit; pack records never do.
const flagLost = 0x80

func (o objRec) lost() bool { return o.Flags&flagLost != 0 }

// deadKey marks the damaged record at off in pack seq, whose blob a later
// upload healed elsewhere: its bytes are garbage, even where its header is
// too damaged to say whose they were (compaction's audit asks).
func deadKey(seq uint64, off int64) []byte {
	k := append([]byte{pMeta, 'd', 'e', 'a', 'd', '/'}, make([]byte, 16)...)
	binary.BigEndian.PutUint64(k[6:], seq)
	binary.BigEndian.PutUint64(k[14:], uint64(off))
	return k
}

func lostKey(r blob.Ref) []byte {
	k := objKey(r)
	k[0] = pLost
	return k
}

func keepKey(r blob.Ref) []byte {
	k := objKey(r)
	k[0] = pKeep
	return k
}

func debtKey(tree chunk.ID, u UserID) []byte {
	k := make([]byte, 1+32+8)
	k[0] = pDebt
	copy(k[1:], tree[:])
	binary.BigEndian.PutUint64(k[33:], uint64(u))
	return k
}

// lostRec says when and why a blob was found to have no intact copy.
type lostRec struct {
	Since  int64  `json:"since"`
	Reason string `json:"reason"`
}

func objKey(r blob.Ref) []byte {
	k := make([]byte, 2+32)
	k[0], k[1] = pObj, byte(r.Type)
	copy(k[2:], r.ID[:])
	return k
}

func holdKey(u UserID, r blob.Ref) []byte {
	k := make([]byte, 1+8+1+32)
	k[0] = pHold
	binary.BigEndian.PutUint64(k[1:], uint64(u))
	k[9] = byte(r.Type)
	copy(k[10:], r.ID[:])
	return k
}

func holdPrefix(u UserID) []byte {
	k := make([]byte, 9)
	k[0] = pHold
	binary.BigEndian.PutUint64(k[1:], uint64(u))
	return k
}

func usageKey(u UserID) []byte {
	k := make([]byte, 9)
	k[0] = pUsage
	binary.BigEndian.PutUint64(k[1:], uint64(u))
	return k
}

// deletingKey records that a snapshot is being deleted, before its file
// goes: a counted snapshot whose file is missing without it was lost, not
// deleted (reconcile rebuilds it from the index).
func deletingKey(u UserID, id SnapshotID) []byte {
	return append([]byte{pMeta, 'd', 'e', 'l', '/'}, applyKey(u, id)[1:]...)
}

func applyKey(u UserID, id SnapshotID) []byte {
	k := make([]byte, 9, 9+len(id))
	k[0] = pApply
	binary.BigEndian.PutUint64(k[1:], uint64(u))
	return append(k, id...)
}

func tstatKey(id chunk.ID) []byte { return append([]byte{pTStat}, id[:]...) }

// objRec is the index entry of a stored blob.
type objRec struct {
	Type   blob.Type
	Flags  uint8
	Pack   uint64
	Off    int64
	Stored uint32 // bytes in the pack (after compression)
	Raw    uint32 // uncompressed bytes
	Owners uint32 // users that hold it (snapshot references or pending upload)
}

func (o *objRec) encode() []byte {
	b := make([]byte, 30)
	b[0], b[1] = byte(o.Type), o.Flags
	binary.LittleEndian.PutUint64(b[2:], o.Pack)
	binary.LittleEndian.PutUint64(b[10:], uint64(o.Off))
	binary.LittleEndian.PutUint32(b[18:], o.Stored)
	binary.LittleEndian.PutUint32(b[22:], o.Raw)
	binary.LittleEndian.PutUint32(b[26:], o.Owners)
	return b
}

func decodeObj(b []byte) (objRec, error) {
	if len(b) != 30 {
		return objRec{}, fmt.Errorf("%w: a blob entry of %d bytes", ErrIndexDamaged, len(b))
	}
	return objRec{Type: blob.Type(b[0]), Flags: b[1], Pack: binary.LittleEndian.Uint64(b[2:]),
		Off: int64(binary.LittleEndian.Uint64(b[10:])), Stored: binary.LittleEndian.Uint32(b[18:]),
		Raw: binary.LittleEndian.Uint32(b[22:]), Owners: binary.LittleEndian.Uint32(b[26:])}, nil
}

// holdRec is one user's hold on one blob. The user holds the blob while
// Refs > 0 (referenced from the user's snapshots, directly or through a held
// tree) or Pending != 0 (uploaded and not yet committed; Unix seconds).
// Size is what the hold costs the user: the stored size of the copy this
// user uploaded. Charging the size of the copy already on disk instead would
// tell a user whose upload was compressed differently that another user
// holds the chunk.
type holdRec struct {
	Refs    uint32
	Size    uint32
	Pending int64
}

func (h holdRec) held() bool { return h.Refs > 0 || h.Pending != 0 }

func (h holdRec) encode() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, h.Refs)
	binary.LittleEndian.PutUint32(b[4:], h.Size)
	binary.LittleEndian.PutUint64(b[8:], uint64(h.Pending))
	return b
}

func decodeHold(b []byte) holdRec {
	if len(b) != 16 {
		return holdRec{}
	}
	return holdRec{Refs: binary.LittleEndian.Uint32(b), Size: binary.LittleEndian.Uint32(b[4:]), Pending: int64(binary.LittleEndian.Uint64(b[8:]))}
}

// Usage is what a user holds: the stored bytes of the distinct blobs their
// snapshots and pending uploads reference. Shared blobs count in full for
// every user that holds them.
type Usage struct {
	Bytes int64 `json:"bytes"`
	Blobs int64 `json:"blobs"`
}

func (u Usage) encode() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, uint64(u.Bytes))
	binary.LittleEndian.PutUint64(b[8:], uint64(u.Blobs))
	return b
}

func decodeUsage(b []byte) Usage {
	if len(b) != 16 {
		return Usage{}
	}
	return Usage{Bytes: int64(binary.LittleEndian.Uint64(b)), Blobs: int64(binary.LittleEndian.Uint64(b[8:]))}
}

// get reads a key; found is false if it does not exist.
func get(txn *badger.Txn, key []byte) (val []byte, found bool, err error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val, err = it.ValueCopy(nil)
	return val, err == nil, err
}

func getObj(txn *badger.Txn, r blob.Ref) (objRec, bool, error) {
	b, ok, err := get(txn, objKey(r))
	if !ok || err != nil {
		return objRec{}, false, err
	}
	o, err := decodeObj(b)
	return o, err == nil, err
}

func getHold(txn *badger.Txn, u UserID, r blob.Ref) (holdRec, error) {
	b, _, err := get(txn, holdKey(u, r))
	return decodeHold(b), err
}

func getUsage(txn *badger.Txn, u UserID) (Usage, error) {
	b, _, err := get(txn, usageKey(u))
	return decodeUsage(b), err
}

// update runs fn in a read-write transaction, retrying on conflicts with
// concurrent transactions (Badger detects them: two uploads of one chunk, an
// upload racing garbage collection). A whole school uploading the same book at
// once makes the same counts hot: after a few conflicts a transaction retries
// holding s.retryMu, so retriers no longer collide with each other and each
// one gets through; it gives up only when ctx ends.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if attempt == 3 {
			s.retryMu.Lock()
			defer s.retryMu.Unlock()
		}
		err := s.dbUpdate(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		s.conflicts.Add(1)
		if attempt < 3 {
			time.Sleep(time.Duration(1+rand.IntN(1000*(attempt+1))) * time.Microsecond)
		}
	}
}

// verify checks an uploaded blob: sizes within limits, content hashing to its
// ID, trees decoding as valid manifests. It returns the raw bytes.
func (s *Store) verify(b *blob.Blob, scratch []byte) ([]byte, error) {
	if !b.Type.Valid() {
		return nil, fmt.Errorf("%w: unknown blob type %d", ErrInvalid, b.Type)
	}
	limit := chunk.MaxChunkSize
	if b.Type == blob.Tree {
		limit = manifest.MaxTreeSize
	}
	if b.RawLen < 0 || b.RawLen > limit || len(b.Data) > pack.MaxStored {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds the %d-byte limit", ErrInvalid, b.Ref, b.RawLen, limit)
	}
	raw := b.Data
	if b.Compressed {
		var err error
		if raw, err = s.codec.Decompress(scratch[:0], b.Data, b.RawLen); err != nil {
			return nil, fmt.Errorf("%w: %s does not decompress: %v", ErrInvalid, b.Ref, err)
		}
	} else if len(raw) != b.RawLen {
		return nil, fmt.Errorf("%w: %s has %d bytes, says %d", ErrInvalid, b.Ref, len(raw), b.RawLen)
	}
	if chunk.Sum(raw) != b.ID {
		return nil, fmt.Errorf("%w: %s", ErrHashMismatch, b.Ref)
	}
	if b.Type == blob.Tree {
		if _, err := manifest.Decode(raw); err != nil {
			return nil, fmt.Errorf("%w: tree %s: %v", ErrInvalid, b.ID.Short(), err)
		}
	}
	return raw, nil
}

// Put stores blobs uploaded by a user. Each blob's hash is recomputed and a
// mismatch rejects the whole batch, leaving nothing in the index. A blob the
// store already has is not written again, whoever uploaded it; either way the
// user now holds it as a pending upload until a snapshot references it, and it
// counts towards the user's usage. Put fails with ErrOverQuota if the user's
// hard quota would be crossed and ErrStorageFull at the free-space reserve.
//
// The pack data is fsynced before the index entries that point at it are
// committed, so after Put returns the blobs survive a crash.
func (s *Store) Put(ctx context.Context, user UserID, blobs []blob.Blob) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.canWrite(user); err != nil {
		return err
	}
	var scratch []byte
	for i := range blobs {
		if _, err := s.verify(&blobs[i], scratch); err != nil {
			return err
		}
	}
	if err := s.checkHardQuota(user, blobs); err != nil {
		return err
	}
	healed, err := s.put(ctx, user, blobs)
	if err != nil || !healed {
		return err
	}
	// A healed tree owes its children the reference walks that could not
	// descend into it while it was lost.
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if err := s.runJobs(ctx); err != nil {
		return fmt.Errorf("upload stored; counting the references of a healed tree: %w", err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, user UserID, blobs []blob.Blob) (healed bool, err error) {
	s.putMu.RLock()
	defer s.putMu.RUnlock()
	for attempt := 0; attempt < 3; attempt++ {
		locs, err := s.writeNew(ctx, user, blobs)
		if err != nil {
			return false, err
		}
		err = s.update(ctx, func(txn *badger.Txn) (err error) {
			healed, err = s.indexPut(txn, user, blobs, locs)
			return err
		})
		if err != nil {
			// What this attempt wrote will never be indexed: count it as the
			// pack's garbage, so that compaction can account for it.
			s.countOrphans(ctx, locs)
		}
		if errors.Is(err, errMissingLoc) {
			continue // garbage collection removed a blob between the two steps: write it
		}
		if err != nil {
			return false, fmt.Errorf("index upload: %w", err)
		}
		s.hook("put:after-index-commit")
		s.copyTrees(ctx, blobs, locs)
		return healed, nil
	}
	return false, fmt.Errorf("upload raced garbage collection three times; try again")
}

var errMissingLoc = errors.New("blob vanished from the index")

type packLoc struct {
	pack uint64
	off  int64
}

// writeNew appends the blobs the index does not have yet and fsyncs them.
// Blobs that other users hold but this user does not are written to the
// shadow file instead, with the same write and fsync: an upload costs the
// same time whether or not another user has the chunk, so its timing tells
// the uploader nothing (the dedup side channel).
func (s *Store) writeNew(ctx context.Context, user UserID, blobs []blob.Blob) (map[blob.Ref]packLoc, error) {
	var missing, shadow []int
	var shadowAt []objRec
	err := s.view(func(txn *badger.Txn) error {
		for i := range blobs {
			o, ok, err := getObj(txn, blobs[i].Ref)
			if err != nil {
				return err
			}
			if !ok || o.lost() {
				// Not stored, or stored damaged: this verified copy is written
				// and replaces the damaged one.
				missing = append(missing, i)
				continue
			}
			h, err := getHold(txn, user, blobs[i].Ref)
			if err != nil {
				return err
			}
			if !h.held() && !slices.ContainsFunc(shadow, func(j int) bool { return blobs[j].Ref == blobs[i].Ref }) {
				// Once per blob, as a new one is written once: a batch
				// repeating a chunk others hold must not cost more.
				shadow = append(shadow, i)
				shadowAt = append(shadowAt, o)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A blob other users hold is deduplicated against the stored copy. That
	// copy is verified by the next scrub, first of all, rather than now:
	// reading it here would make the upload slower exactly when another
	// user has the chunk (the dedup side channel).
	for k := range shadow {
		s.recheckLater(blobs[shadow[k]].Ref, shadowAt[k])
	}
	locs := map[blob.Ref]packLoc{}
	var need int64
	for _, i := range append(missing, shadow...) {
		need += int64(len(blobs[i].Data) + pack.RecordHeaderLen)
	}
	if need > 0 {
		if err := s.reserveSpace(need); err != nil {
			return nil, err
		}
	}
	for _, i := range missing {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := &blobs[i]
		if _, dup := locs[b.Ref]; dup {
			continue
		}
		h := pack.Header{Type: b.Type, Stored: uint32(len(b.Data)), Raw: uint32(b.RawLen), ID: b.ID}
		if b.Compressed {
			h.Flags = pack.FlagZstd
		}
		seq, off, err := s.packs.Append(h, b.Data)
		if err != nil {
			return nil, s.diskErr(err)
		}
		locs[b.Ref] = packLoc{seq, off}
		if b.Type == blob.Tree && s.pio.remote != nil {
			// The commit reads the trees back (validation, reference
			// counting) once their pack is in the bucket: keep them.
			s.pio.cache.put(seq, off, h.Encode(b.Data))
		}
	}
	if len(shadow) > 0 {
		if err := s.shadowWrite(blobs, shadow); err != nil {
			return nil, s.diskErr(err)
		}
	}
	s.hook("put:after-pack-write")
	if err := s.packs.Sync(); err != nil {
		return nil, s.diskErr(err)
	}
	s.hook("put:after-pack-sync")
	return locs, nil
}

// diskErr turns ENOSPC into ErrStorageFull.
func (s *Store) diskErr(err error) error {
	if fsys.IsNoSpace(err) {
		return fmt.Errorf("%w: the disk of %s is full (%v)", ErrStorageFull, s.dir, err)
	}
	return err
}

// indexPut records new blobs and the user's pending holds, in one
// transaction; a lost blob written again is healed. It reports whether
// healing added reference-counting jobs.
func (s *Store) indexPut(txn *badger.Txn, user UserID, blobs []blob.Blob, locs map[blob.Ref]packLoc) (jobs bool, err error) {
	now := s.opts.Now().Unix()
	if err := s.noteStamp(txn, now); err != nil {
		return false, err
	}
	usage, err := getUsage(txn, user)
	if err != nil {
		return false, err
	}
	before := usage.Bytes
	seen := map[blob.Ref]bool{}
	for i := range blobs {
		b := &blobs[i]
		if seen[b.Ref] {
			continue
		}
		seen[b.Ref] = true
		o, ok, err := getObj(txn, b.Ref)
		if err != nil {
			return false, err
		}
		healed := false
		if loc, written := locs[b.Ref]; written && (!ok || o.lost()) {
			owners := o.Owners
			healed = ok
			if healed {
				if err := txn.Set(deadKey(o.Pack, o.Off), nil); err != nil {
					return false, err
				}
			}
			o = objRec{Type: b.Type, Pack: loc.pack, Off: loc.off, Stored: uint32(len(b.Data)), Raw: uint32(b.RawLen), Owners: owners}
			if b.Compressed {
				o.Flags = pack.FlagZstd
			}
			if healed {
				j, err := healLocked(txn, b.Ref)
				if err != nil {
					return false, err
				}
				jobs = jobs || j
			}
		} else if !ok {
			return false, errMissingLoc
		}
		h, err := getHold(txn, user, b.Ref)
		if err != nil {
			return false, err
		}
		held := h.held()
		if !held {
			o.Owners++
			h.Size = uint32(len(b.Data))
			usage.Bytes += int64(h.Size)
			usage.Blobs++
		}
		if h.Refs == 0 {
			h.Pending = now
		}
		if !ok || !held || healed {
			// A new blob, one more owner or a healed copy (only then:
			// rewriting an unchanged record would conflict with every other
			// upload of the same chunk for nothing).
			if err := txn.Set(objKey(b.Ref), o.encode()); err != nil {
				return false, err
			}
		}
		if err := txn.Set(holdKey(user, b.Ref), h.encode()); err != nil {
			return false, err
		}
	}
	// The hard quota is checked here, on the usage this transaction read and
	// writes: parallel uploads of one user conflict on it, and the retry sees
	// what the others charged (checkHardQuota before the pack write only
	// spares the disk an upload that is refused anyway).
	if q := s.QuotaOf(user); q.Hard > 0 && usage.Bytes > before && usage.Bytes > q.Hard {
		return false, fmt.Errorf("%w: this upload needs %d more bytes but only %d of the %d-byte hard quota are left",
			ErrOverQuota, usage.Bytes-before, max(0, q.Hard-before), q.Hard)
	}
	return jobs, txn.Set(usageKey(user), usage.encode())
}

// Need reports, for each ref, whether the user must upload it. The answer is
// "no" only for blobs this user already holds (from their own snapshots or
// pending uploads): a blob that only other users hold is "needed" exactly like
// one nobody has, so the answer reveals nothing about other users.
func (s *Store) Need(ctx context.Context, user UserID, refs []blob.Ref) ([]bool, error) {
	need := make([]bool, len(refs))
	err := s.view(func(txn *badger.Txn) error {
		for i, r := range refs {
			if i%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			h, err := getHold(txn, user, r)
			if err != nil {
				return err
			}
			if !h.held() {
				need[i] = true
				continue
			}
			o, ok, err := getObj(txn, r)
			if err != nil {
				return err
			}
			need[i] = !ok || o.lost() // a damaged copy is sent again
		}
		return nil
	})
	return need, err
}

// Holds reports whether the user holds the blob (may read it back).
func (s *Store) Holds(ctx context.Context, user UserID, r blob.Ref) (bool, error) {
	need, err := s.Need(ctx, user, []blob.Ref{r})
	if err != nil {
		return false, err
	}
	return !need[0], nil
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Ref        blob.Ref
	Stored     int64 // bytes on disk
	Raw        int64 // uncompressed bytes
	Owners     int   // users holding it
	Compressed bool
	// Damaged: the server has no intact copy (see Store.Damaged).
	Damaged bool
}

// Stat returns information about a stored blob, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, r blob.Ref) (BlobInfo, error) {
	var o objRec
	var ok bool
	err := s.view(func(txn *badger.Txn) (err error) {
		o, ok, err = getObj(txn, r)
		return err
	})
	if err != nil {
		return BlobInfo{}, err
	}
	if !ok {
		return BlobInfo{}, fmt.Errorf("%w: %s", ErrNotFound, r)
	}
	return BlobInfo{Ref: r, Stored: int64(o.Stored), Raw: int64(o.Raw), Owners: int(o.Owners), Compressed: o.Flags&pack.FlagZstd != 0, Damaged: o.lost()}, nil
}

// Usage returns what a user holds.
func (s *Store) Usage(ctx context.Context, user UserID) (Usage, error) {
	var u Usage
	err := s.view(func(txn *badger.Txn) (err error) {
		u, err = getUsage(txn, user)
		return err
	})
	return u, err
}

// ReadBlob returns a blob's raw bytes, after checking the pack record's CRC
// and the content's hash: damaged data is never returned (ErrCorrupt).
func (s *Store) ReadBlob(ctx context.Context, r blob.Ref) ([]byte, error) {
	raw, _, err := s.readBlob(ctx, r, nil)
	return raw, err
}

// ReadStored returns a blob's stored form (for sending it on), verified.
func (s *Store) ReadStored(ctx context.Context, r blob.Ref) (blob.Blob, error) {
	var stored []byte
	_, o, err := s.readBlob(ctx, r, &stored)
	if err != nil {
		return blob.Blob{}, err
	}
	return blob.Blob{Ref: r, Data: stored, Compressed: o.Flags&pack.FlagZstd != 0, RawLen: int(o.Raw)}, nil
}

// ReadFor returns a blob user holds for that user to download, in the
// form the user uploaded it (raw or compressed, as its hold's size tells)
// whatever form the copy on disk has: the copy may be another user's, and
// its form would tell the user that someone else held the chunk. A blob
// the user does not hold is ErrNotFound.
func (s *Store) ReadFor(ctx context.Context, user UserID, r blob.Ref) (blob.Blob, error) {
	var h holdRec
	if err := s.view(func(txn *badger.Txn) (err error) {
		h, err = getHold(txn, user, r)
		return err
	}); err != nil {
		return blob.Blob{}, err
	}
	if !h.held() {
		return blob.Blob{}, fmt.Errorf("%w: %s", ErrNotFound, r)
	}
	b, err := s.ReadStored(ctx, r)
	if err != nil || h.Size == 0 || int(h.Size) == len(b.Data) {
		return b, err
	}
	switch {
	case b.Compressed && int(h.Size) == b.RawLen:
		raw, err := s.codec.Decompress(nil, b.Data, b.RawLen)
		if err != nil {
			return blob.Blob{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, r, err)
		}
		b.Data, b.Compressed = raw, false
	case !b.Compressed && int(h.Size) < b.RawLen:
		if out, ok := s.codec.Compress(nil, b.Data); ok {
			b.Data, b.Compressed = out, true
		}
	}
	return b, nil
}

func (s *Store) readBlob(ctx context.Context, r blob.Ref, storedOut *[]byte) ([]byte, objRec, error) {
	raw, o, err := s.readPacked(ctx, r, storedOut)
	if err != nil && r.Type == blob.Tree && errors.Is(err, ErrCorrupt) {
		// A damaged tree reads from its copy (it stays marked lost until
		// check or the scrub writes it back from the copy).
		if craw, stored, flags, ok := s.treeCopy(r); ok {
			if storedOut != nil {
				*storedOut = stored
			}
			return craw, objRec{Type: blob.Tree, Flags: flags, Pack: o.Pack, Off: o.Off, Stored: uint32(len(stored)), Raw: uint32(len(craw)), Owners: o.Owners}, nil
		}
	}
	return raw, o, err
}

// readPacked is readBlob from the pack record alone.
func (s *Store) readPacked(ctx context.Context, r blob.Ref, storedOut *[]byte) ([]byte, objRec, error) {
	if err := ctx.Err(); err != nil {
		return nil, objRec{}, err
	}
	// Compaction may move a blob between the index lookup and the read: look again.
	var lastErr error
	var lastO objRec
	for attempt := 0; attempt < 3; attempt++ {
		var o objRec
		var ok bool
		err := s.view(func(txn *badger.Txn) (err error) {
			o, ok, err = getObj(txn, r)
			return err
		})
		if err != nil {
			return nil, o, err
		}
		if !ok {
			return nil, o, fmt.Errorf("%w: %s", ErrNotFound, r)
		}
		if o.lost() {
			return nil, o, fmt.Errorf("%w: %s has no intact copy on the server (it heals when a laptop that has it backs up)", ErrCorrupt, r)
		}
		h, data, err := s.pio.readRecord(ctx, o.Pack, o.Off, o.Stored)
		if errors.Is(err, os.ErrNotExist) {
			lastErr = err
			lastO = o
			continue
		}
		if isRemoteErr(err) {
			return nil, o, err // the object store failed, not the data
		}
		if err == nil && (h.ID != r.ID || h.Type != r.Type) {
			err = fmt.Errorf("%w: the record there holds %s", errRecordElsewhere, h.ID.Short())
		}
		if err != nil && !errors.Is(err, errRecordElsewhere) && s.pio.remote == nil {
			if named, ok := pack.HeaderSeq(s.fsys, o.Pack); ok && named != o.Pack {
				err = fmt.Errorf("%w: pack file %016x holds pack %016x (%v)", errRecordElsewhere, o.Pack, named, err)
			}
		}
		if err != nil {
			s.markLost(r, o, err.Error())
			if errors.Is(err, errRecordElsewhere) {
				return nil, o, fmt.Errorf("%w: %s: %w", ErrCorrupt, r, err)
			}
			return nil, o, fmt.Errorf("%w: %s: %v", ErrCorrupt, r, err)
		}
		raw := data
		if o.Flags&pack.FlagZstd != 0 {
			if raw, err = s.codec.Decompress(nil, data, int(o.Raw)); err != nil {
				s.markLost(r, o, "does not decompress")
				return nil, o, fmt.Errorf("%w: %s: %v", ErrCorrupt, r, err)
			}
		}
		if len(raw) != int(o.Raw) || chunk.Sum(raw) != r.ID {
			s.markLost(r, o, "fails its hash check")
			return nil, o, fmt.Errorf("%w: %s fails its hash check", ErrCorrupt, r)
		}
		if storedOut != nil {
			*storedOut = data
		}
		return raw, o, nil
	}
	if !s.pio.gone(ctx, lastO.Pack) {
		// A read said "no such object" of an object the store lists or
		// stats (a gateway answering 404 for an object behind it): the
		// object store failed, not the data.
		return nil, lastO, &remoteError{fmt.Errorf("pack %016x: a read found no object, though the object store has it (%v)", lastO.Pack, lastErr)}
	}
	s.markLost(r, lastO, "pack file missing")
	return nil, objRec{}, fmt.Errorf("%w: %s: pack file missing (%v)", ErrCorrupt, r, lastErr)
}

// ReadTree reads and decodes a manifest tree.
func (s *Store) ReadTree(ctx context.Context, id chunk.ID) (*manifest.Tree, error) {
	raw, err := s.ReadBlob(ctx, blob.Ref{Type: blob.Tree, ID: id})
	if err != nil {
		return nil, err
	}
	t, err := manifest.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: tree %s: %v", ErrCorrupt, id.Short(), err)
	}
	return t, nil
}

// shadowLimit is the size at which the shadow file starts again from zero:
// small, because it is disk the school does not get to use.
const shadowLimit = 4 << 20

// shadowWrite writes and fsyncs the given blobs' records to the shadow file,
// doing the same work as a pack append; the bytes are never read.
func (s *Store) shadowWrite(blobs []blob.Blob, idx []int) error {
	s.shadowMu.Lock()
	defer s.shadowMu.Unlock()
	if s.shadow == nil {
		f, err := s.fsys.OpenFile("shadow", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return err
		}
		s.shadow = f
	}
	for _, i := range idx {
		b := &blobs[i]
		h := pack.Header{Type: b.Type, Stored: uint32(len(b.Data)), Raw: uint32(b.RawLen), ID: b.ID}
		s.shadowBuf = h.AppendRecord(s.shadowBuf[:0], b.Data)
		if _, err := s.shadow.Write(s.shadowBuf); err != nil {
			return err
		}
		s.shadowSize += int64(pack.RecordHeaderLen + len(b.Data))
	}
	if cap(s.shadowBuf) > pack.MaxKeptRecord {
		s.shadowBuf = nil // not an 8 MiB buffer kept for one big chunk
	}
	err := s.shadow.Sync()
	if s.shadowSize > shadowLimit {
		s.shadow.Truncate(0)
		s.shadowSize = 0
	}
	return err
}

// eachObj calls fn for every blob entry of the index, in key order, in one
// read transaction. An entry that does not decode is passed with its error:
// the caller decides whether that stops it (GC) or is reported (check).
func (s *Store) eachObj(fn func(r blob.Ref, o objRec, decodeErr error) error) error {
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pObj}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			r := blob.Ref{Type: blob.Type(k[1])}
			copy(r.ID[:], k[2:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			o, derr := decodeObj(v)
			if err := fn(r, o, derr); err != nil {
				return err
			}
		}
		return nil
	})
}

// view runs a read-only index transaction. Badger panics on some damaged
// tables instead of returning an error: that becomes ErrIndexDamaged, so
// that the caller stops and staff are told to rebuild the index.
func (s *Store) view(fn func(txn *badger.Txn) error) (err error) {
	if s.closed.Load() {
		return ErrClosed
	}
	defer recoverIndex(&err)
	return s.db.View(fn)
}

// dbUpdate is view for a read-write transaction (see update for retries).
func (s *Store) dbUpdate(fn func(txn *badger.Txn) error) (err error) {
	if s.closed.Load() {
		return ErrClosed
	}
	defer recoverIndex(&err)
	defer s.writes.Add(1) // counted after the commit: a reader that saw no change saw none
	return s.db.Update(fn)
}

func recoverIndex(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: reading it failed (%v)", ErrIndexDamaged, r)
	}
}

// errRecordElsewhere: an intact record of another blob is where the index
// says a blob is: the index and the pack files disagree (pack files moved
// or renamed), which is not bit rot. Check counts it an index problem, so
// that it advises the repair that finds each record where it is.
var errRecordElsewhere = errors.New("the index does not match the pack file")
