package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
)

// UserID identifies a user (a student) inside the store. It stays the same
// when the student's laptop is replaced (see Alias); the serial changes.
type UserID uint64

func (u UserID) String() string { return fmt.Sprintf("%016x", uint64(u)) }

// User is one registered laptop's student. Users are stored as small JSON
// files under users/, written atomically; the index never holds the only copy.
type User struct {
	ID       UserID `json:"id"`
	Serial   string `json:"serial"`
	Nickname string `json:"nickname,omitempty"`
	// PublicKey is the laptop's ed25519 public key (32 bytes).
	PublicKey []byte    `json:"public_key,omitempty"`
	Created   time.Time `json:"created"`
	// Approved is false while registration waits for staff approval.
	Approved bool `json:"approved"`
	// Revoked users may neither back up nor restore.
	Revoked bool `json:"revoked,omitempty"`
	// Aliases are serials this student used before (replaced laptops).
	Aliases []string `json:"aliases,omitempty"`
	// Quota overrides the store's default when set.
	Quota *Quota `json:"quota,omitempty"`
	// Retention overrides the store's retention policy when set.
	Retention *Policy `json:"retention,omitempty"`

	// The fields below were added after the first release; a user file
	// without them reads as "no key change pending, no claim code".

	// PendingKey is a key that asked for this serial and waits for staff
	// (ApproveKey): a reflashed laptop, or the first laptop to register an
	// aliased or pre-registered serial. It gets nothing until approved.
	PendingKey   []byte    `json:"pending_key,omitempty"`
	PendingSince time.Time `json:"pending_since,omitzero"`
	// OldKeys are keys this user had before a key change; they are refused.
	OldKeys [][]byte `json:"old_keys,omitempty"`
	// ClaimHash is the hash of a one-time claim code staff issued (see
	// IssueClaim); it expires at ClaimExpires or after maxClaimTries wrong codes.
	ClaimHash    string    `json:"claim_hash,omitempty"`
	ClaimExpires time.Time `json:"claim_expires,omitzero"`
	ClaimTries   int       `json:"claim_tries,omitempty"`
}

// SnapshotID names a snapshot: its UTC commit time and a random suffix,
// e.g. "20261122T073000Z-1a2b3c". IDs sort by time.
type SnapshotID string

// Snapshot is one committed backup of one user.
type Snapshot struct {
	ID   SnapshotID `json:"id"`
	User UserID     `json:"user"`
	// Time is assigned by the server when the snapshot is committed.
	Time time.Time `json:"time"`
	// Seq numbers a user's snapshots in the order they were committed
	// (1, 2, ...), whatever the server's clock said: "latest", the order
	// of listings and which snapshot retention and quota take as the
	// oldest follow it, so a clock set back (a school server without a
	// network whose clock reset) never makes an old backup the latest.
	// Zero in a snapshot committed by a release before this field: those
	// the store had when a numbering release first opened it come first,
	// in time order; one made later (by a release the school rolled back
	// to for a while) is numbered at the next start after every snapshot
	// then known, and a number such a release dropped from a file (a pin)
	// is given back (numberingMark). A snapshot replicated from a school is ordered by
	// the school's number (Origin.Seq; see Order); its own Seq is its
	// place in what this store received.
	Seq int64 `json:"seq,omitempty"`
	// Root is the ID of the top manifest.Tree.
	Root chunk.ID `json:"root"`
	// Files and Dirs count the entries of the whole tree.
	Files int64 `json:"files"`
	Dirs  int64 `json:"dirs"`
	// Size is the logical size of all files; Stored is the size of their
	// chunks as stored (compressed), counting repeated chunks each time.
	Size   int64 `json:"size"`
	Stored int64 `json:"stored"`
	// Host and Source describe where the snapshot came from (informational).
	Host   string `json:"host,omitempty"`
	Source string `json:"source,omitempty"`
	// Pinned snapshots are never deleted by retention or quota.
	Pinned    bool   `json:"pinned,omitempty"`
	PinReason string `json:"pin_reason,omitempty"`
	// Origin is set on a mothership: the school laptop and snapshot this one
	// replicates (the field was added after the first release; a snapshot
	// file without it was made here).
	Origin *Origin `json:"origin,omitempty"`

	// deleting is set (under Store.mu) while the snapshot is deleted: a
	// pin no longer finds it.
	deleting bool
	// guessSeq marks a snapshot rebuilt from the index without its file:
	// its Seq is placed by its time among the others once they are read.
	guessSeq bool
}

// Origin says where a replicated snapshot was made (the same type as
// manifest.Origin).
type Origin = manifest.Origin

func userFile(id UserID) string { return "users/" + id.String() + ".json" }

// userCopy is the second copy of a user file (not named *.json: only the
// user files themselves are loaded, here and by earlier releases).
func userCopy(id UserID) string { return userFile(id) + ".copy" }
func snapFile(u UserID, id SnapshotID) string {
	return "snapshots/" + u.String() + "/" + string(id) + ".json"
}

// loadMeta reads every user and snapshot file into memory.
func (s *Store) loadMeta() error {
	ents, err := s.fsys.ReadDir("users")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list users: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := fsys.ReadFile(s.fsys, "users/"+e.Name(), 1<<20)
		u := new(User)
		if err == nil {
			err = json.Unmarshal(b, u)
		}
		if err != nil || userFile(u.ID) != "users/"+e.Name() {
			if u, err = s.recoverUser(e.Name(), err); err != nil {
				return err
			}
		} else if !s.opts.ReadOnly {
			// The copy follows the file: one missing (a store of an
			// earlier release) or behind it (its write failed after the
			// file's) is written again, so that it never brings back
			// an older user (a revoked laptop let in again).
			if c, err := fsys.ReadFile(s.fsys, userCopy(u.ID), 1<<20); err != nil || !bytes.Equal(c, b) {
				fsys.WriteFileAtomic(s.fsys, userCopy(u.ID), b)
			}
		}
		s.users[u.ID] = u
		if !u.Revoked {
			// Two active users with one serial cannot be made any more; if
			// an old store has them, the newer registration answers.
			if prev, ok := s.serials[u.Serial]; !ok || prev < u.ID {
				s.serials[u.Serial] = u.ID
			}
		}
		s.nextUID = max(s.nextUID, u.ID)
	}
	dirs, err := s.fsys.ReadDir("snapshots")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list snapshots: %w", err)
	}
	for _, d := range dirs {
		uid, err := strconv.ParseUint(d.Name(), 16, 64)
		if err != nil || !d.IsDir() {
			continue
		}
		ents, err := s.fsys.ReadDir("snapshots/" + d.Name())
		if err != nil {
			return fmt.Errorf("list snapshots: %w", err)
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue // e.g. a .tmp left by a crash
			}
			b, err := fsys.ReadFile(s.fsys, "snapshots/"+d.Name()+"/"+e.Name(), 1<<20)
			sn := new(Snapshot)
			if err == nil {
				err = json.Unmarshal(b, sn)
			}
			if err != nil || sn.User != UserID(uid) || string(sn.ID)+".json" != e.Name() {
				if sn = s.recoverSnapshot(UserID(uid), e.Name(), err); sn == nil {
					continue
				}
			}
			s.snaps[sn.User] = append(s.snaps[sn.User], sn)
			if sn.Origin == nil {
				s.noteTime(sn.Time)
			}
		}
	}
	// A snapshot of this store's own without a number was made by a
	// release before the numbers, or its file was rewritten by one (a pin
	// while the school had rolled the server back). numberingMark keeps
	// every snapshot's number as this release last knew it: a number a
	// file lost is given back; a snapshot the mark lists without one is
	// older than the numbers and stays first, in time order; one it does
	// not list was made by a release rolled back to for a while, and is
	// newer than every snapshot the store had (its clock may say
	// otherwise: a clock reset is what the numbers are for), so it is
	// numbered after them.
	known, marked := s.readNumberingMark()
	for id, list := range s.snaps {
		if marked {
			s.numberFromMark(list, known)
		}
		s.placeRebuilt(list)
		sortSnaps(list)
		if _, ok := s.users[id]; ok || len(list) == 0 {
			continue
		}
		// Snapshots of a user whose file is missing: the user stands in as
		// for a damaged file (its backups stay counted and listed under
		// "damaged-ID" until staff give it its serial back).
		u, err := s.recoverUser(id.String()+".json", errors.New("the file is missing"))
		if err != nil {
			return err
		}
		s.users[u.ID] = u
		s.nextUID = max(s.nextUID, u.ID)
	}
	s.markMu.Lock()
	s.marked, s.loaded = known, true
	s.markMu.Unlock()
	s.saveNumbering()
	return nil
}

func sortSnaps(list []*Snapshot) { slices.SortFunc(list, compareSnaps) }

// nameLocked names a user for messages staff read: "laptop SERIAL" (the
// user ID where the user is unknown). s.mu must be held.
func (s *Store) nameLocked(id UserID) string {
	if u, ok := s.users[id]; ok && u.Serial != "" {
		return "laptop " + u.Serial
	}
	return "user " + id.String()
}

// Order is the snapshot's place in its laptop's commit order: the school's
// (Origin.Seq) for one replicated from a school or recovered from a
// mothership (0 if the school numbered none), else Seq. Zero for snapshots
// older than these numbers, which order by time. It compares snapshots of
// one laptop only.
func (sn *Snapshot) Order() int64 {
	if sn.Origin != nil {
		return sn.Origin.Seq
	}
	return sn.Seq
}

// sortKey is what orders a user's list: Order for the user's own
// snapshots (made here, or recovered from a mothership under the same ID),
// and 0, so by time, for snapshots of other laptops (a school's account on
// a mothership holds all of its laptops', whose numbers do not compare).
func (sn *Snapshot) sortKey() int64 {
	if sn.Origin != nil && sn.Origin.User != uint64(sn.User) {
		return 0
	}
	return sn.Order()
}

// compareSnaps orders two snapshots of a user, oldest first: by sortKey,
// then by time and ID.
func compareSnaps(a, b *Snapshot) int { return compareBy(a, b, (*Snapshot).sortKey) }

// CompareOrder orders two snapshots of one laptop, oldest first: by Order,
// then by time and ID.
func CompareOrder(a, b *Snapshot) int { return compareBy(a, b, (*Snapshot).Order) }

func compareBy(a, b *Snapshot, key func(*Snapshot) int64) int {
	if c := cmp.Compare(key(a), key(b)); c != 0 {
		return c
	}
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return strings.Compare(string(a.ID), string(b.ID))
}

// numberingMark maps each of the store's own snapshots ("USER/ID") to its
// number (0: none, older than the numbers), as this release last knew
// them: written at every start and close. An older release run on the
// store in between (a rollback) writes snapshots without a number, and
// rewrites a pinned one's file without its number; the mark tells both
// apart from the snapshots that never had one.
const numberingMark = "snapshots/numbered.json"

// readNumberingMark returns the numbers numberingMark keeps; marked is
// false when there is none, or it does not decode (the snapshots without a
// number are then taken as the old ones they most likely are).
func (s *Store) readNumberingMark() (known map[string]int64, marked bool) {
	b, err := fsys.ReadFile(s.fsys, numberingMark, 64<<20)
	if err != nil {
		return nil, false
	}
	if json.Unmarshal(b, &known) != nil || known == nil {
		return nil, false
	}
	return known, true
}

func markKey(sn *Snapshot) string { return sn.User.String() + "/" + string(sn.ID) }

// saveNumbering writes numberingMark when the numbers differ from what it
// last held (not for a read-only store). A failure is not the store's:
// the next start or close writes it again.
func (s *Store) saveNumbering() {
	s.markMu.Lock()
	defer s.markMu.Unlock()
	if s.opts.ReadOnly || s.marked == nil && !s.loaded {
		return
	}
	s.mu.RLock()
	now := map[string]int64{}
	for _, list := range s.snaps {
		for _, sn := range list {
			if sn.Origin == nil && !sn.deleting {
				now[markKey(sn)] = sn.Seq
			}
		}
	}
	s.mu.RUnlock()
	if s.marked != nil && maps.Equal(now, s.marked) {
		return
	}
	b, _ := json.Marshal(now)
	s.fsys.MkdirAll("snapshots", 0o750)
	if fsys.WriteFileAtomic(s.fsys, numberingMark, b) == nil {
		s.marked = now
	}
}

// numberFromMark gives each snapshot of list without a number the one the
// mark keeps for it (a file rewritten by an older release), and numbers
// those the mark does not know (made by an older release) after every
// numbered one, in their time order; the numbers are written into their
// files.
func (s *Store) numberFromMark(list []*Snapshot, known map[string]int64) {
	var n int64
	var made []*Snapshot
	for _, sn := range list {
		if sn.Origin != nil || sn.Seq != 0 || sn.guessSeq {
			n = max(n, sn.Seq, sn.Order())
			continue
		}
		seq, ok := known[markKey(sn)]
		switch {
		case !ok:
			made = append(made, sn)
		case seq > 0:
			sn.Seq = seq
			n = max(n, seq)
			s.writeSnapFile(sn)
		}
	}
	slices.SortFunc(made, func(a, b *Snapshot) int { return compareBy(a, b, func(*Snapshot) int64 { return 0 }) })
	for _, sn := range made {
		n++
		sn.Seq = n
		s.writeSnapFile(sn)
	}
}

// writeSnapFile writes sn's file again (its number given back or given),
// unless the store is read-only.
func (s *Store) writeSnapFile(sn *Snapshot) {
	if !s.opts.ReadOnly {
		b, _ := json.MarshalIndent(sn, "", "  ")
		fsys.WriteFileAtomic(s.fsys, snapFile(sn.User, sn.ID), b)
	}
}

// placeRebuilt gives each snapshot of list rebuilt without its file the
// Seq of the latest numbered one not after it in time (so it sorts just
// after that one, by time): its own number was in the lost file. The
// number is written into the rebuilt file, so that it keeps its place at
// the next start.
func (s *Store) placeRebuilt(list []*Snapshot) {
	for _, r := range list {
		if !r.guessSeq {
			continue
		}
		r.guessSeq = false
		for _, sn := range list {
			if !sn.guessSeq && sn != r && !sn.Time.After(r.Time) && sn.sortKey() > r.Seq {
				r.Seq = sn.sortKey()
			}
		}
		if r.Seq > 0 && !s.opts.ReadOnly {
			b, _ := json.MarshalIndent(r, "", "  ")
			fsys.WriteFileAtomic(s.fsys, snapFile(r.User, r.ID), b) // else it is placed the same way again
		}
	}
}

// nextSeq is the Seq of the user's next snapshot, after every one it has
// (replicated ones by their order too); s.mu must be held.
func (s *Store) nextSeq(user UserID) int64 {
	var n int64
	for _, sn := range s.snaps[user] {
		n = max(n, sn.Seq, sn.Order())
	}
	return n + 1
}

// NewUser describes a registration.
type NewUser struct {
	Serial    string
	Nickname  string
	PublicKey []byte
	// Approved registers the user as able to back up at once; otherwise
	// staff must Approve it first.
	Approved bool
}

// AddUser registers a new user. It fails with ErrExists if the serial or the
// public key is already registered to a user that is not revoked.
func (s *Store) AddUser(ctx context.Context, nu NewUser) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if err := validNewSerial(nu.Serial); err != nil {
		return nil, err
	}
	if len(nu.Nickname) > 256 {
		return nil, fmt.Errorf("%w: nickname longer than 256 bytes", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.serials[nu.Serial]; ok {
		return nil, fmt.Errorf("%w: serial %s is already registered", ErrExists, nu.Serial)
	}
	if old, ok := s.lookupLocked(nu.Serial); ok && old.Serial == nu.Serial {
		return nil, fmt.Errorf("%w: serial %s belongs to a revoked laptop with %d backup(s); its revoke can be undone, or its history given to the laptop when it registers again",
			ErrExists, nu.Serial, len(s.snaps[old.ID]))
	}
	if len(nu.PublicKey) > 0 {
		for _, u := range s.users {
			if !u.Revoked && string(u.PublicKey) == string(nu.PublicKey) {
				return nil, fmt.Errorf("%w: this key is already registered to serial %s", ErrExists, u.Serial)
			}
		}
	}
	u := &User{ID: s.nextUID + 1, Serial: nu.Serial, Nickname: nu.Nickname,
		PublicKey: slices.Clone(nu.PublicKey), Created: s.opts.Now().UTC(), Approved: nu.Approved}
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	s.nextUID = u.ID
	s.serials[u.Serial] = u.ID
	return cloneUser(u), nil
}

// validNewSerial is validSerial for a serial given to a laptop now: not
// also 16 hex digits, the form of a user ID, which staff commands take in
// place of a serial (a device registering another laptop's ID as its
// serial would otherwise capture commands meant for that laptop).
func validNewSerial(sn string) error {
	if err := validSerial(sn); err != nil {
		return err
	}
	if _, err := strconv.ParseUint(sn, 16, 64); err == nil && len(sn) == 16 {
		return fmt.Errorf("%w: serial %q has the form of a user ID (16 hex digits)", ErrInvalid, sn)
	}
	if sn[0] == '-' || sn[0] == '.' {
		// "-x" reads as an option in every command staff would type with
		// it, "." and ".." as directories.
		return fmt.Errorf("%w: serial %q may not start with '-' or '.'", ErrInvalid, sn)
	}
	if strings.HasPrefix(sn, "damaged-") {
		// The name the store gives a user whose file is lost (staff alias
		// it back to its serial): a laptop registered under it first
		// would be given that child's serial instead.
		return fmt.Errorf("%w: serial %q starts with \"damaged-\", the name the store gives a user whose file is lost", ErrInvalid, sn)
	}
	return nil
}

func validSerial(sn string) error {
	if sn == "" || len(sn) > 64 {
		return fmt.Errorf("%w: serial must be 1 to 64 characters", ErrInvalid)
	}
	for _, r := range sn {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%w: serial %q may only contain letters, digits, '-', '_' and '.'", ErrInvalid, sn)
		}
	}
	return nil
}

// saveUserLocked writes u to disk and to memory. s.mu must be held.
func (s *Store) saveUserLocked(u *User) error {
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return err
	}
	if err := fsys.WriteFileAtomic(s.fsys, userFile(u.ID), b); err != nil {
		return fmt.Errorf("save user %s: %w", u.Serial, err)
	}
	s.users[u.ID] = u
	// A second copy: the user's key is only here, and a laptop whose key
	// is lost must register again and wait for staff (recoverUser reads
	// it). Best effort: the user file itself is saved.
	fsys.WriteFileAtomic(s.fsys, userCopy(u.ID), b)
	return nil
}

func cloneUser(u *User) *User {
	c := *u
	c.PublicKey = slices.Clone(u.PublicKey)
	c.Aliases = slices.Clone(u.Aliases)
	c.PendingKey = slices.Clone(u.PendingKey)
	c.OldKeys = slices.Clone(u.OldKeys)
	if u.Quota != nil {
		q := *u.Quota
		c.Quota = &q
	}
	if u.Retention != nil {
		p := *u.Retention
		c.Retention = &p
	}
	return &c
}

// UpdateUser applies fn to a copy of the user and saves the result. The ID
// cannot change; use Alias to change a serial.
func (s *Store) UpdateUser(ctx context.Context, id UserID, fn func(*User) error) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("%w: user %s", ErrNotFound, id)
	}
	u := cloneUser(old)
	if err := fn(u); err != nil {
		return nil, err
	}
	u.ID, u.Serial, u.Aliases = old.ID, old.Serial, old.Aliases
	u.PublicKey, u.PendingKey, u.OldKeys = old.PublicKey, old.PendingKey, old.OldKeys
	if old.Revoked && !u.Revoked {
		if err := s.canActivateLocked(u); err != nil {
			return nil, err
		}
	}
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	s.indexSerialLocked(u)
	return cloneUser(u), nil
}

// Alias moves a student to a new laptop: the user registered as oldSerial
// (revoked or not) now has newSerial. The old laptop's key is refused from
// then on. The new laptop's key is never trusted by the alias alone: if the
// new serial had registered itself (that registration must have no
// snapshots and is merged into this user), its key becomes the pending key;
// otherwise the first laptop to register the new serial becomes it. Either
// way staff approve it (ApproveKey) or the laptop gives a claim code.
func (s *Store) Alias(ctx context.Context, oldSerial, newSerial string) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if err := validNewSerial(newSerial); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ou, ok := s.lookupLocked(oldSerial)
	if !ok {
		return nil, fmt.Errorf("%w: no laptop registered with serial %s", ErrNotFound, oldSerial)
	}
	if ou.Serial == newSerial {
		state := "its new key is approved when it registers again (or with a claim code)"
		if ou.PendingKey != nil {
			state = "its new key is waiting for approval"
		}
		return nil, fmt.Errorf("%w: %s is already this student's laptop; a reflashed laptop keeps its serial and its backups: %s", ErrInvalid, newSerial, state)
	}
	u := cloneUser(ou)
	var merged *User
	if nid, ok := s.serials[newSerial]; ok {
		if len(s.snaps[nid]) > 0 {
			return nil, fmt.Errorf("%w: the new laptop %s already has backups of its own; restore them elsewhere before aliasing", ErrExists, newSerial)
		}
		merged = cloneUser(s.users[nid])
	}
	// Nobody inherits a history without proof: the new laptop's key is
	// not trusted by the alias alone. A key the new serial registered with
	// before waits for staff (ApproveKey, with its fingerprint shown);
	// otherwise the first laptop to register the new serial waits too, unless
	// it gives a claim code (IssueClaim).
	if ou.PublicKey != nil {
		u.OldKeys = append(u.OldKeys, ou.PublicKey)
	}
	u.PublicKey, u.PendingKey, u.PendingSince = nil, nil, time.Time{}
	if merged != nil && len(merged.PublicKey) > 0 {
		u.PendingKey, u.PendingSince = merged.PublicKey, s.opts.Now().UTC()
	}
	u.Revoked = false
	// The laptop's serial, however staff named it (its user ID, a
	// former serial).
	u.Aliases = append(u.Aliases, ou.Serial)
	u.Serial = newSerial
	if merged != nil {
		merged.Revoked = true
		merged.Aliases = append(merged.Aliases, "merged-into:"+u.ID.String())
		if err := s.saveUserLocked(merged); err != nil {
			return nil, err
		}
	}
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	if s.serials[ou.Serial] == u.ID {
		delete(s.serials, ou.Serial)
	}
	s.serials[newSerial] = u.ID
	return cloneUser(u), nil
}

// User returns the user with the given ID.
func (s *Store) User(id UserID) (*User, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("%w: user %s", ErrNotFound, id)
	}
	return cloneUser(u), nil
}

// UserBySerial returns the user with this serial: the active one if there is
// one, else the newest revoked one, else the user who had it before an
// Alias; serial may also be a user ID as xs-admin users --json shows it.
// Every user, revoked or not, stays reachable this way.
func (s *Store) UserBySerial(serial string) (*User, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.lookupLocked(serial)
	if !ok {
		return nil, fmt.Errorf("%w: no laptop registered with serial %s", ErrNotFound, serial)
	}
	return cloneUser(u), nil
}

// lookupLocked finds a user for UserBySerial. s.mu must be held.
func (s *Store) lookupLocked(serial string) (*User, bool) {
	if id, ok := s.serials[serial]; ok {
		return s.users[id], true
	}
	var revoked, aliased *User
	for _, u := range s.users {
		if u.Serial == serial && (revoked == nil || u.ID > revoked.ID) {
			revoked = u
		}
		if slices.Contains(u.Aliases, serial) && (aliased == nil || u.ID > aliased.ID) {
			aliased = u
		}
	}
	if revoked != nil {
		return revoked, true
	}
	if aliased != nil {
		return aliased, true
	}
	if len(serial) == 16 {
		if id, err := strconv.ParseUint(serial, 16, 64); err == nil {
			u, ok := s.users[UserID(id)]
			return u, ok
		}
	}
	return nil, false
}

// indexSerialLocked keeps the active-serial map in step with u.
func (s *Store) indexSerialLocked(u *User) {
	if u.Revoked {
		if s.serials[u.Serial] == u.ID {
			delete(s.serials, u.Serial)
		}
		return
	}
	s.serials[u.Serial] = u.ID
}

// canActivateLocked says whether u may become active again (unrevoked):
// no other active user has its serial or its key.
func (s *Store) canActivateLocked(u *User) error {
	if id, ok := s.serials[u.Serial]; ok && id != u.ID {
		return fmt.Errorf("%w: serial %s is now used by another registration (user %s); revoke that one first, or keep both apart", ErrExists, u.Serial, id)
	}
	for _, o := range s.users {
		if o.ID != u.ID && !o.Revoked && len(u.PublicKey) > 0 && slices.Equal(o.PublicKey, u.PublicKey) {
			return fmt.Errorf("%w: this laptop's key is now registered to serial %s", ErrExists, o.Serial)
		}
	}
	return nil
}

// UserByKey returns the user with the given public key: the active one if
// there is one, else a revoked one (so that the laptop can be told so).
func (s *Store) UserByKey(pub []byte) (*User, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found *User
	for _, u := range s.users {
		if len(pub) > 0 && string(u.PublicKey) == string(pub) && (found == nil || found.Revoked) {
			found = u
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no laptop registered with this key", ErrNotFound)
	}
	return cloneUser(found), nil
}

// SetKey gives a user (whose key is unset, e.g. after Alias) a laptop key.
func (s *Store) SetKey(ctx context.Context, id UserID, pub []byte) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("%w: user %s", ErrNotFound, id)
	}
	for _, u := range s.users {
		if !u.Revoked && u.ID != id && len(pub) > 0 && string(u.PublicKey) == string(pub) {
			return nil, fmt.Errorf("%w: this key is already registered to serial %s", ErrExists, u.Serial)
		}
	}
	u := cloneUser(old)
	u.PublicKey = slices.Clone(pub)
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	return cloneUser(u), nil
}

// Users lists all users, revoked ones included, by serial.
func (s *Store) Users() []*User {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, cloneUser(u))
	}
	slices.SortFunc(out, func(a, b *User) int { return strings.Compare(a.Serial, b.Serial) })
	return out
}

// Snapshots lists a user's snapshots, oldest first.
func (s *Store) Snapshots(user UserID) []*Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Snapshot, 0, len(s.snaps[user]))
	for _, sn := range s.snaps[user] {
		c := *sn
		out = append(out, &c)
	}
	return out
}

// Snapshot returns one snapshot of a user. id may also be "latest".
func (s *Store) Snapshot(user UserID, id SnapshotID) (*Snapshot, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	list := s.snaps[user]
	if id == "latest" && len(list) > 0 {
		c := *list[len(list)-1]
		return &c, nil
	}
	for _, sn := range list {
		if sn.ID == id {
			c := *sn
			return &c, nil
		}
	}
	return nil, fmt.Errorf("%w: snapshot %s of %s", ErrNotFound, id, s.nameLocked(user))
}

// newSnapshotID returns a time-ordered, unique snapshot ID.
func newSnapshotID(t time.Time) SnapshotID {
	var r [3]byte
	rand.Read(r[:])
	return SnapshotID(t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:]))
}

// ValidSnapshotID reports whether id has the form newSnapshotID produces.
func ValidSnapshotID(id SnapshotID) bool {
	s := string(id)
	if len(s) != 23 || s[16] != '-' {
		return false
	}
	if _, err := time.Parse("20060102T150405Z", s[:16]); err != nil {
		return false
	}
	_, err := hex.DecodeString(s[17:])
	return err == nil
}

// SetPin pins or unpins a snapshot. A pinned snapshot is never deleted by
// retention or quota; reason says why (shown to staff).
func (s *Store) SetPin(ctx context.Context, user UserID, id SnapshotID, pinned bool, reason string) (*Snapshot, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if pinned && strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: a pin needs a reason (for example \"science fair project\")", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.snaps[user] {
		if sn.ID != id || sn.deleting {
			continue
		}
		c := *sn
		c.Pinned, c.PinReason = pinned, reason
		if !pinned {
			c.PinReason = ""
		}
		b, _ := json.MarshalIndent(&c, "", "  ")
		if err := fsys.WriteFileAtomic(s.fsys, snapFile(user, id), b); err != nil {
			return nil, fmt.Errorf("save pin: %w", err)
		}
		*sn = c
		return &c, nil
	}
	return nil, fmt.Errorf("%w: snapshot %s of %s", ErrNotFound, id, s.nameLocked(user))
}

// ImportUser writes a user registered on another store, keeping its ID, key,
// aliases, policies and every other field: a school server rebuilt from its
// mothership gets its laptops back exactly as they were, so they carry on
// without registering again. It fails with ErrExists if the ID, the serial or
// the key belongs to a different user here; importing a user again replaces
// the copy made by an earlier import.
func (s *Store) ImportUser(ctx context.Context, u *User) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if u == nil || u.ID == 0 {
		return nil, fmt.Errorf("%w: imported user has no ID", ErrInvalid)
	}
	if err := validSerial(u.Serial); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.users[u.ID]; ok && old.Serial != u.Serial {
		return nil, fmt.Errorf("%w: user %s is %s here, not %s", ErrExists, u.ID, old.Serial, u.Serial)
	}
	if id, ok := s.serials[u.Serial]; ok && id != u.ID && !u.Revoked {
		return nil, fmt.Errorf("%w: serial %s is already registered here as user %s", ErrExists, u.Serial, id)
	}
	if len(u.PublicKey) > 0 {
		for _, o := range s.users {
			if o.ID != u.ID && !o.Revoked && !u.Revoked && string(o.PublicKey) == string(u.PublicKey) {
				return nil, fmt.Errorf("%w: the key of %s is already registered to serial %s", ErrExists, u.Serial, o.Serial)
			}
		}
	}
	c := cloneUser(u)
	if err := s.saveUserLocked(c); err != nil {
		return nil, err
	}
	if !c.Revoked {
		s.serials[c.Serial] = c.ID
	}
	s.nextUID = max(s.nextUID, c.ID)
	return cloneUser(c), nil
}

// NewSnapshotID makes a snapshot ID for time t, as Commit does (a school
// server names the snapshot of its registry it replicates with one).
func NewSnapshotID(t time.Time) SnapshotID { return newSnapshotID(t) }
