package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zeebo/blake3"
)

// A laptop's identity is its key; its serial only names it. A history (a
// user's snapshots) moves to another key only with proof: staff approve the
// key (ApproveKey) or the laptop shows a one-time claim code staff issued
// (IssueClaim, Claim). Until then the new key is a pending key change
// (RequestKey) and gets nothing.

// KeyMatch says how a key relates to the user KeyStatus found.
type KeyMatch int

const (
	KeyUnknown KeyMatch = iota
	// KeyCurrent: the user's key.
	KeyCurrent
	// KeyPending: a key change waiting for staff.
	KeyPending
	// KeyRetired: a key the user had before a key change or alias.
	KeyRetired
)

// KeyStatus finds the user a key belongs to: an active user's current key
// first, then a pending key change, then a revoked user's key, then a
// retired key. It returns KeyUnknown and nil if no user knows the key.
func (s *Store) KeyStatus(pub []byte) (*User, KeyMatch) {
	if len(pub) == 0 {
		return nil, KeyUnknown
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var best *User
	match := KeyUnknown
	rank := func(u *User, m KeyMatch) int {
		switch {
		case m == KeyCurrent && !u.Revoked:
			return 4
		case m == KeyPending:
			return 3
		case m == KeyCurrent:
			return 2
		}
		return 1
	}
	for _, u := range s.users {
		m := KeyUnknown
		switch {
		case slices.Equal(u.PublicKey, pub):
			m = KeyCurrent
		case slices.Equal(u.PendingKey, pub):
			m = KeyPending
		case slices.ContainsFunc(u.OldKeys, func(k []byte) bool { return slices.Equal(k, pub) }):
			m = KeyRetired
		default:
			continue
		}
		if best == nil || rank(u, m) > rank(best, match) || rank(u, m) == rank(best, match) && u.ID > best.ID {
			best, match = u, m
		}
	}
	if best == nil {
		return nil, KeyUnknown
	}
	return cloneUser(best), match
}

// keyInUseLocked reports the active user (other than id) holding pub as
// its key or pending key.
func (s *Store) keyInUseLocked(id UserID, pub []byte) *User {
	for _, u := range s.users {
		if u.ID != id && !u.Revoked && (slices.Equal(u.PublicKey, pub) || slices.Equal(u.PendingKey, pub)) {
			return u
		}
	}
	return nil
}

// RequestKey records pub as a pending key change of user id (a reflashed
// laptop registering its serial again with a new key). The latest request
// replaces an earlier one; staff see its fingerprint before approving.
func (s *Store) RequestKey(ctx context.Context, id UserID, pub []byte) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("%w: user %s", ErrNotFound, id)
	}
	if o := s.keyInUseLocked(id, pub); o != nil {
		return nil, fmt.Errorf("%w: this key is already registered to serial %s", ErrExists, o.Serial)
	}
	if slices.Equal(old.PendingKey, pub) {
		return cloneUser(old), nil
	}
	u := cloneUser(old)
	u.PendingKey, u.PendingSince = slices.Clone(pub), s.opts.Now().UTC()
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	return cloneUser(u), nil
}

// ApproveKey makes the pending key of user id its key: the laptop continues
// the user's history and the previous key is refused from now on. The user
// is approved and, if revoked, active again. With newHistory, the pending key
// instead starts a new, empty user with the serial, and the old user keeps
// its snapshots under the serial renamed SERIAL.old (SERIAL.old2, ...),
// revoked but reachable like every user.
func (s *Store) ApproveKey(ctx context.Context, id UserID, newHistory bool) (*User, error) {
	return s.ApprovePendingKey(ctx, id, nil, newHistory)
}

// ApprovePendingKey is ApproveKey for the waiting key want only: if
// another key waits by then (a device registered the serial after staff
// compared the key), it fails with ErrExists and approves nothing. A nil
// want approves whatever key waits.
func (s *Store) ApprovePendingKey(ctx context.Context, id UserID, want ed25519.PublicKey, newHistory bool) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.users[id]
	if !ok {
		return nil, fmt.Errorf("%w: user %s", ErrNotFound, id)
	}
	if old.PendingKey == nil {
		return nil, fmt.Errorf("%w: no key change of %s is waiting: the laptop has not registered a new key (a claim code lets it take its history without approval)", ErrNotFound, old.Serial)
	}
	if want != nil && !bytes.Equal(old.PendingKey, want) {
		return nil, fmt.Errorf("%w: another key now waits for %s: a different device registered it after the key given was compared; nothing approved", ErrExists, old.Serial)
	}
	if o := s.keyInUseLocked(id, old.PendingKey); o != nil {
		return nil, fmt.Errorf("%w: the waiting key is now registered to serial %s", ErrExists, o.Serial)
	}
	if newHistory {
		return s.newHistoryLocked(old)
	}
	u := cloneUser(old)
	u.Revoked = false
	if err := s.canActivateLocked(u); err != nil {
		return nil, err
	}
	s.switchKey(u, u.PendingKey)
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	s.indexSerialLocked(u)
	return cloneUser(u), nil
}

// switchKey gives u the key pub: the old key is retired, any pending key
// change and claim code are used up, and u is approved.
func (s *Store) switchKey(u *User, pub []byte) {
	if len(u.PublicKey) > 0 && !slices.Equal(u.PublicKey, pub) {
		u.OldKeys = append(u.OldKeys, u.PublicKey)
	}
	u.PublicKey = slices.Clone(pub)
	u.OldKeys = slices.DeleteFunc(u.OldKeys, func(k []byte) bool { return slices.Equal(k, pub) })
	u.PendingKey, u.PendingSince = nil, time.Time{}
	u.ClaimHash, u.ClaimExpires, u.ClaimTries = "", time.Time{}, 0
	u.Approved, u.Revoked = true, false
}

func (s *Store) newHistoryLocked(old *User) (*User, error) {
	retired := cloneUser(old)
	name := ""
	for i := 1; ; i++ {
		name = old.Serial + ".old"
		if i > 1 {
			name += fmt.Sprint(i)
		}
		if _, taken := s.lookupLocked(name); !taken {
			break
		}
	}
	if len(name) > 64 {
		return nil, fmt.Errorf("%w: serial %s is too long to keep its old history beside a new one", ErrInvalid, old.Serial)
	}
	retired.Serial, retired.Revoked = name, true
	retired.Aliases = append(retired.Aliases, old.Serial)
	retired.PendingKey, retired.PendingSince = nil, time.Time{}
	retired.ClaimHash, retired.ClaimExpires, retired.ClaimTries = "", time.Time{}, 0
	nu := &User{ID: s.nextUID + 1, Serial: old.Serial, Nickname: old.Nickname, Created: s.opts.Now().UTC(),
		PublicKey: slices.Clone(old.PendingKey), Approved: true}
	if err := s.saveUserLocked(retired); err != nil {
		return nil, err
	}
	if err := s.saveUserLocked(nu); err != nil {
		return nil, err
	}
	s.nextUID = nu.ID
	if s.serials[old.Serial] == old.ID {
		delete(s.serials, old.Serial)
	}
	s.serials[nu.Serial] = nu.ID
	return cloneUser(nu), nil
}

// claimAlphabet has no letters that read alike (0/o, 1/l/i).
const claimAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"

// maxClaimTries wrong codes for one serial use its claim code up.
const maxClaimTries = 5

// IssueClaim makes a one-time claim code for user id, valid for ttl: the
// first laptop that registers the user's serial with it takes the user's
// history (Claim), with no staff round trip. Only its hash is stored. A new
// code replaces an earlier one.
func (s *Store) IssueClaim(ctx context.Context, id UserID, ttl time.Duration) (string, *User, error) {
	if err := s.writable(); err != nil {
		return "", nil, err
	}
	if ttl <= 0 {
		return "", nil, fmt.Errorf("%w: a claim code needs a lifetime", ErrInvalid)
	}
	var r [10]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for i, v := range r {
		if i == 5 {
			b.WriteByte('-')
		}
		b.WriteByte(claimAlphabet[int(v)%len(claimAlphabet)])
	}
	code := b.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.users[id]
	if !ok {
		return "", nil, fmt.Errorf("%w: user %s", ErrNotFound, id)
	}
	u := cloneUser(old)
	u.ClaimHash, u.ClaimExpires, u.ClaimTries = claimHash(u.Serial, code), s.opts.Now().UTC().Add(ttl), 0
	if err := s.saveUserLocked(u); err != nil {
		return "", nil, err
	}
	return code, cloneUser(u), nil
}

func claimHash(serial, code string) string {
	code = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(code), "-", ""))
	h := blake3.Sum256([]byte("xs-backup claim code\x00" + serial + "\x00" + code))
	return hex.EncodeToString(h[:])
}

// Claim gives the user with serial the key pub if code is its claim code,
// unexpired and unused: the laptop continues the user's history. A wrong
// code counts against the code (maxClaimTries use it up); every failure is
// ErrNotOwned.
func (s *Store) Claim(ctx context.Context, serial, code string, pub []byte) (*User, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.lookupLocked(serial)
	if !ok || old.Serial != serial || old.ClaimHash == "" || !s.opts.Now().Before(old.ClaimExpires) {
		return nil, fmt.Errorf("%w: no valid claim code for serial %s (none was issued, it expired or it was used)", ErrNotOwned, serial)
	}
	if subtle.ConstantTimeCompare([]byte(claimHash(serial, code)), []byte(old.ClaimHash)) != 1 {
		u := cloneUser(old)
		u.ClaimTries++
		if u.ClaimTries >= maxClaimTries {
			u.ClaimHash, u.ClaimExpires = "", time.Time{}
		}
		if err := s.saveUserLocked(u); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: wrong claim code for serial %s (check it and try again; after %d wrong codes staff must issue a new one)", ErrNotOwned, serial, maxClaimTries)
	}
	if o := s.keyInUseLocked(old.ID, pub); o != nil {
		return nil, fmt.Errorf("%w: this key is already registered to serial %s", ErrExists, o.Serial)
	}
	u := cloneUser(old)
	u.Revoked = false
	if err := s.canActivateLocked(u); err != nil {
		return nil, err
	}
	s.switchKey(u, pub)
	if err := s.saveUserLocked(u); err != nil {
		return nil, err
	}
	s.indexSerialLocked(u)
	return cloneUser(u), nil
}

// Pending counts registrations waiting for staff: new laptops not yet
// approved and key changes.
func (s *Store) Pending() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, u := range s.users {
		if u.Revoked && u.PendingKey == nil {
			continue
		}
		if u.PendingKey != nil || !u.Approved && len(u.PublicKey) > 0 {
			n++
		}
	}
	return n
}
