package admin

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// user finds the laptop a request names by serial, former serial or ID.
func (s *Service) user(serial string) (*store.User, error) {
	if serial == "" {
		return nil, fmt.Errorf("%w: no laptop serial given", ErrInvalid)
	}
	return s.S.UserBySerial(serial)
}

// Users lists every laptop, revoked ones too.
func (s *Service) Users(ctx context.Context, _ UsersRequest) ([]UserRow, error) {
	rows := []UserRow{}
	for _, u := range s.S.Users() {
		snaps := s.S.Snapshots(u.ID)
		us, _ := s.S.Usage(ctx, u.ID)
		r := UserRow{Serial: u.Serial, Nickname: u.Nickname, Registered: u.Created, Approved: u.Approved,
			Revoked: u.Revoked, Aliases: u.Aliases, Snapshots: len(snaps), Usage: us.Bytes,
			ID: u.ID.String(), Key: fingerprint(u.PublicKey), PendingKey: fingerprint(u.PendingKey), PendingSince: u.PendingSince}
		if u.ClaimHash != "" && s.now().Before(u.ClaimExpires) {
			r.ClaimExpires = u.ClaimExpires
		}
		if len(snaps) > 0 {
			r.LastBackup = snaps[len(snaps)-1].Time
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Snapshots lists a laptop's backups, oldest first.
func (s *Service) Snapshots(_ context.Context, r SnapshotsRequest) ([]*store.Snapshot, error) {
	u, err := s.user(r.Serial)
	if err != nil {
		return nil, err
	}
	return s.S.Snapshots(u.ID), nil
}

// Pending lists the registrations waiting for staff, oldest first: new
// laptops and key changes (a reflashed laptop asking with a new key).
func (s *Service) Pending(_ context.Context, _ PendingRequest) ([]PendingRow, error) {
	rows := []PendingRow{}
	for _, u := range s.S.Users() {
		var r PendingRow
		switch {
		case u.PendingKey != nil:
			r = PendingRow{KeyChange: true, Since: u.PendingSince, NewKey: fingerprint(u.PendingKey), OldKey: fingerprint(u.PublicKey)}
		case !u.Approved && !u.Revoked && len(u.PublicKey) > 0:
			r = PendingRow{Since: u.Created, NewKey: fingerprint(u.PublicKey)}
		default:
			continue
		}
		r.Serial, r.Nickname, r.Revoked = u.Serial, u.Nickname, u.Revoked
		snaps := s.S.Snapshots(u.ID)
		r.Snapshots = len(snaps)
		if len(snaps) > 0 {
			r.LastBackup = snaps[len(snaps)-1].Time
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b PendingRow) int { return a.Since.Compare(b.Since) })
	return rows, nil
}

// Approve lets a laptop back up: a waiting key change continues the
// serial's history (or starts a new one with NewHistory); a new laptop is
// approved; a revoked laptop is active again.
func (s *Service) Approve(ctx context.Context, r ApproveRequest) (*store.User, error) {
	u, err := s.user(r.Serial)
	if err != nil {
		return nil, err
	}
	if err := keyLongEnough(r.Key); err != nil {
		return nil, err
	}
	if u.PendingKey != nil {
		if fp := fingerprint(u.PendingKey); r.Key != "" && !keyMatches(fp, r.Key) {
			return nil, errkind.Errorf(errkind.Exists, "the key waiting for %s is %s, not %s: a different device asked after the laptop that showed %s; do not approve it", u.Serial, fp, r.Key, r.Key)
		}
		var want ed25519.PublicKey
		if r.Key != "" {
			want = u.PendingKey // the key compared: approved only if it still waits
		}
		return s.S.ApprovePendingKey(ctx, u.ID, want, r.NewHistory)
	}
	if r.NewHistory || len(u.PublicKey) == 0 {
		return s.S.ApproveKey(ctx, u.ID, r.NewHistory) // explains that no key waits
	}
	if fp := fingerprint(u.PublicKey); r.Key != "" && !keyMatches(fp, r.Key) {
		return nil, errkind.Errorf(errkind.Exists, "laptop %s has key %s, not %s", u.Serial, fp, r.Key)
	}
	return s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
		u.Approved, u.Revoked = true, false
		return nil
	})
}

// MinKeyChars is the fewest characters of a key's fingerprint (after
// "SHA256:") staff may give to approve it: a shorter start could match a
// key made to look like it (each character is 6 bits; 12 are 72 bits,
// beyond anyone's means to grind).
const MinKeyChars = 12

// keyLongEnough refuses a key too short to tell one laptop's from a key
// ground to start the same way.
func keyLongEnough(key string) error {
	if key == "" {
		return nil
	}
	if n := len(strings.TrimPrefix(key, "SHA256:")); n < MinKeyChars {
		return errkind.Errorf(errkind.BadRequest, "the key %q gives %d characters of the fingerprint; give at least %d (after SHA256:) as the laptop shows them, or all of it: a shorter start could match a key made to look like it", key, n, MinKeyChars)
	}
	return nil
}

// keyMatches reports whether staff's key (a fingerprint or its start, with
// or without "SHA256:") is the fingerprint fp.
func keyMatches(fp, key string) bool {
	return strings.HasPrefix(fp, key) || strings.HasPrefix(strings.TrimPrefix(fp, "SHA256:"), key)
}

// Revoke stops a laptop from backing up or restoring; its backups stay.
func (s *Service) Revoke(ctx context.Context, r RevokeRequest) (*store.User, error) {
	return s.setRevoked(ctx, r.Serial, true)
}

// Unrevoke undoes Revoke.
func (s *Service) Unrevoke(ctx context.Context, r UnrevokeRequest) (*store.User, error) {
	return s.setRevoked(ctx, r.Serial, false)
}

func (s *Service) setRevoked(ctx context.Context, serial string, revoked bool) (*store.User, error) {
	u, err := s.user(serial)
	if err != nil {
		return nil, err
	}
	return s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
		u.Revoked = revoked
		if revoked {
			// A claim code issued before is void: a revoke must not be
			// undone by whoever holds it.
			u.ClaimHash, u.ClaimExpires, u.ClaimTries = "", time.Time{}, 0
		}
		return nil
	})
}

// DefaultClaimLifetime is how long a claim code works unless asked otherwise.
const DefaultClaimLifetime = 7 * 24 * time.Hour

// ClaimCode issues a one-time code for a laptop about to be reflashed or
// replaced; a new code replaces the old. Only its hash is kept.
func (s *Service) ClaimCode(ctx context.Context, r ClaimCodeRequest) (ClaimResult, error) {
	u, err := s.user(r.Serial)
	if err != nil {
		return ClaimResult{}, err
	}
	ttl := r.Expires
	if ttl == 0 {
		ttl = DefaultClaimLifetime
	}
	if ttl < 0 {
		return ClaimResult{}, fmt.Errorf("%w: a claim code cannot expire before it is made (%v)", ErrInvalid, ttl)
	}
	code, u, err := s.S.IssueClaim(ctx, u.ID, ttl)
	if err != nil {
		return ClaimResult{}, err
	}
	return ClaimResult{Serial: u.Serial, Code: code, Expires: u.ClaimExpires}, nil
}

// Register prepares a laptop by hand, with no key yet: the first laptop to
// register this serial waits for staff to approve its key, or gives a
// claim code.
func (s *Service) Register(ctx context.Context, r RegisterRequest) (*store.User, error) {
	if r.Serial == "" {
		return nil, fmt.Errorf("%w: no laptop serial given", ErrInvalid)
	}
	var pub []byte
	if r.Key != "" {
		b, err := hex.DecodeString(strings.TrimSpace(r.Key))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: the key must be %d hex digits (a server.pub)", ErrInvalid, 2*ed25519.PublicKeySize)
		}
		pub = b
	}
	return s.S.AddUser(ctx, store.NewUser{Serial: r.Serial, Nickname: r.Nickname, Approved: true, PublicKey: pub})
}

// Alias moves a student's backups to a replacement laptop's serial.
func (s *Service) Alias(ctx context.Context, r AliasRequest) (*store.User, error) {
	if r.Serial == "" || r.NewSerial == "" {
		return nil, fmt.Errorf("%w: an alias needs the old serial and the new one", ErrInvalid)
	}
	return s.S.Alias(ctx, r.Serial, r.NewSerial)
}

// Check verifies the store.
func (s *Service) Check(ctx context.Context, r CheckRequest) (*store.CheckReport, error) {
	return s.S.Check(ctx, store.CheckOptions{ReadData: r.ReadData})
}

// Repair rebuilds the index from the pack files. The daemon (Live) refuses
// it with a Locked error: it serves laptops from the store.
func (s *Service) Repair(ctx context.Context, _ RepairRequest) (*store.RepairReport, error) {
	if s.Live {
		return nil, errkind.Errorf(errkind.Locked, "rebuilding the index needs the store to itself, and the daemon serves laptops from it")
	}
	return s.S.Repair(ctx)
}

// Damaged lists the blobs with no intact copy and the laptops whose next
// backup heals them.
func (s *Service) Damaged(ctx context.Context, _ DamagedRequest) ([]DamagedRow, error) {
	list, err := s.S.Damaged(ctx)
	if err != nil {
		return nil, err
	}
	rows := []DamagedRow{}
	if len(list) == 0 {
		return rows, nil
	}
	holders := map[string][]string{}
	for _, u := range s.S.Users() {
		refs, _, err := s.S.DamagedHeld(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			holders[r.String()] = append(holders[r.String()], u.Serial)
		}
	}
	for _, d := range list {
		rows = append(rows, DamagedRow{Ref: d.Ref.String(), Since: d.Since, Reason: d.Reason, Laptops: holders[d.Ref.String()]})
	}
	return rows, nil
}

// Scrub reads back and verifies the next share of the pack files (All:
// every pack).
func (s *Service) Scrub(ctx context.Context, r ScrubRequest) (*store.ScrubReport, error) {
	return s.S.Scrub(ctx, store.ScrubOptions{All: r.All})
}

// ErrNoAdmission: the service has no admission to show (it is not the
// daemon's: Service.Admission is nil).
var ErrNoAdmission = errors.New("no admission queue: only a running daemon has one")

// Status is the daemon's admission now: sessions, limit, queue.
func (s *Service) Status(_ context.Context, _ StatusRequest) (*StatusResult, error) {
	if s.Admission == nil {
		return nil, ErrNoAdmission
	}
	st := StatusResult{AdmissionStatus: s.Admission(), Serials: map[uint64]string{}}
	for _, q := range st.Queue {
		if u, err := s.S.User(store.UserID(q.User)); err == nil {
			st.Serials[q.User] = u.Serial
		}
	}
	return &st, nil
}

// Retention applies the retention policy as of r.At (zero: now) and
// deletes what it does not keep (with DryRun, only reports).
func (s *Service) Retention(ctx context.Context, r RetentionRequest) (*store.RetentionReport, error) {
	opts := store.RetentionOptions{Now: r.At, DryRun: r.DryRun}
	if r.Serial != "" {
		u, err := s.user(r.Serial)
		if err != nil {
			return nil, err
		}
		opts.User = u.ID
	}
	return s.S.Retention(ctx, opts)
}

// Quota shows usage, quotas and fair share (every laptop, or one), and
// sets or resets one laptop's quota.
func (s *Service) Quota(ctx context.Context, r QuotaRequest) ([]QuotaRow, error) {
	set := r.Soft != nil || r.Hard != nil || r.Reset
	var users []*store.User
	if r.Serial == "" {
		if set {
			return nil, fmt.Errorf("%w: a quota is set for one laptop; the default quota is in the server's configuration ([quota])", ErrInvalid)
		}
		users = s.S.Users()
	} else {
		u, err := s.user(r.Serial)
		if err != nil {
			return nil, err
		}
		if set {
			q := s.S.QuotaOf(u.ID)
			if r.Soft != nil {
				q.Soft = *r.Soft
			}
			if r.Hard != nil {
				q.Hard = *r.Hard
			}
			if q.Soft < 0 || q.Hard < 0 {
				return nil, fmt.Errorf("%w: quotas cannot be negative (0 means no limit)", ErrInvalid)
			}
			if q.Soft > 0 && q.Hard > 0 && q.Soft > q.Hard {
				return nil, fmt.Errorf("%w: a soft quota above the hard one never acts: backups are refused at the hard quota before the nightly run deletes anything at the soft one", ErrInvalid)
			}
			if u, err = s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
				u.Quota = &q
				if r.Reset {
					u.Quota = nil
				}
				return nil
			}); err != nil {
				return nil, err
			}
		}
		users = []*store.User{u}
	}
	rows := []QuotaRow{}
	for _, u := range users {
		us, err := s.S.Usage(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		fair, err := s.S.FairShare(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		q := s.S.QuotaOf(u.ID)
		rows = append(rows, QuotaRow{Serial: u.Serial, Used: us.Bytes, Soft: q.Soft, Hard: q.Hard, FairShare: fair,
			Own: u.Quota != nil, OverSoft: q.Soft > 0 && us.Bytes > q.Soft})
	}
	return rows, nil
}

// Policy shows a laptop's retention policy, and sets or resets its own.
func (s *Service) Policy(ctx context.Context, r PolicyRequest) (PolicyRow, error) {
	u, err := s.user(r.Serial)
	if err != nil {
		return PolicyRow{}, err
	}
	if (r.Policy != nil && r.Change != nil) || (r.Reset && (r.Policy != nil || r.Change != nil)) {
		return PolicyRow{}, fmt.Errorf("%w: a policy request sets a policy, changes one or resets it, not two of these", ErrInvalid)
	}
	if r.Policy != nil || r.Change != nil || r.Reset {
		if r.Policy != nil {
			if err := r.Policy.Validate(); err != nil {
				return PolicyRow{}, err
			}
		}
		if u, err = s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
			switch {
			case r.Reset:
				u.Retention = nil
			case r.Change != nil:
				p := s.S.ServerPolicy()
				if u.Retention != nil {
					p = *u.Retention
				}
				p = r.Change.Apply(p)
				if err := p.Validate(); err != nil {
					return err
				}
				u.Retention = &p
			default:
				u.Retention = r.Policy
			}
			return nil
		}); err != nil {
			return PolicyRow{}, err
		}
	}
	return PolicyRow{Serial: u.Serial, Policy: s.S.PolicyOf(u.ID), Own: u.Retention != nil}, nil
}

// Pin keeps a snapshot from retention and quota, with a reason.
func (s *Service) Pin(ctx context.Context, r PinRequest) (*store.Snapshot, error) {
	if r.Reason == "" {
		return nil, fmt.Errorf("%w: a pin needs a reason", ErrInvalid)
	}
	return s.setPin(ctx, r.Serial, r.Snapshot, true, r.Reason)
}

// Unpin lets retention and quota treat a snapshot normally again.
func (s *Service) Unpin(ctx context.Context, r UnpinRequest) (*store.Snapshot, error) {
	return s.setPin(ctx, r.Serial, r.Snapshot, false, "")
}

func (s *Service) setPin(ctx context.Context, serial, snapshot string, pin bool, reason string) (*store.Snapshot, error) {
	u, err := s.user(serial)
	if err != nil {
		return nil, err
	}
	if snapshot == "" {
		return nil, fmt.Errorf("%w: no snapshot given", ErrInvalid)
	}
	sn, err := s.S.Snapshot(u.ID, store.SnapshotID(snapshot))
	if err != nil {
		return nil, err
	}
	return s.S.SetPin(ctx, u.ID, sn.ID, pin, reason)
}

// GC deletes chunks nothing uses and rewrites pack files with little live
// data; with ExpirePending it first releases the uploads of unfinished
// backups.
func (s *Service) GC(ctx context.Context, r GCRequest) (*GCResult, error) {
	if r.CompactBelow < 0 || r.CompactBelow > 1 {
		return nil, fmt.Errorf("%w: compact_below is a fraction of live data between 0 and 1, not %g", ErrInvalid, r.CompactBelow)
	}
	res := &GCResult{}
	if r.ExpirePending {
		// Uploads no snapshot uses yet, kept for their laptop to resume,
		// are released now (of laptops not backing up at this moment).
		far := s.now().Add(100 * 365 * 24 * time.Hour)
		var err error
		if res.Expired, err = s.S.ExpirePending(ctx, far, r.DryRun); err != nil {
			return nil, err
		}
	}
	var err error
	res.GCReport, err = s.S.GC(ctx, store.GCOptions{DryRun: r.DryRun, CompactBelow: r.CompactBelow})
	return res, err
}

// RunLifecycle runs the nightly run now: retention, expiry of abandoned
// uploads, quota, the scrub (not in a dry run), gc (with the daemon's
// Lifecycle, if set).
func (s *Service) RunLifecycle(ctx context.Context, r LifecycleRequest) (*store.LifecycleReport, error) {
	opts := store.LifecycleOptions{Now: r.At, DryRun: r.DryRun}
	if s.Lifecycle != nil {
		return s.Lifecycle(ctx, opts)
	}
	return s.S.Lifecycle(ctx, opts)
}

// ErrNoRestorePage: the service cannot make restore-page links (it is not
// a daemon serving the page: Service.Link is nil).
var ErrNoRestorePage = errors.New("no restore page: only a running daemon serves it")

// RestoreLink makes a short-lived link to the restore page showing only
// this laptop's backups.
func (s *Service) RestoreLink(_ context.Context, r RestoreLinkRequest) (LinkResult, error) {
	u, err := s.user(r.Serial)
	if err != nil {
		return LinkResult{}, err
	}
	if s.Link == nil {
		return LinkResult{}, ErrNoRestorePage
	}
	lifetime := s.LinkLifetime
	if lifetime <= 0 {
		lifetime = time.Hour
	}
	url, err := s.Link(u.Serial, lifetime)
	if err != nil {
		return LinkResult{}, err
	}
	return LinkResult{Serial: u.Serial, URL: url, Expires: s.now().Add(lifetime)}, nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ParseTime reads a time as staff type it: RFC 3339, a date or a date and
// time in local time (2026-12-31, 2026-12-31T08:00, 2026-12-31 08:00), or
// an offset from now such as +45d, -12h or +90m. Empty is the zero time.
func ParseTime(text string, now time.Time) (time.Time, error) {
	if text == "" {
		return time.Time{}, nil
	}
	if text[0] == '+' || text[0] == '-' {
		d, err := ParseDuration(text[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: %q is not an offset (examples: +45d, -12h)", ErrInvalid, text)
		}
		if text[0] == '-' {
			d = -d
		}
		return now.Add(d), nil
	}
	// A time before 1900 is a slip (and year 1, the zero time, would read
	// as "not given"); 1969-12-31 is a clock reset to the epoch seen west
	// of UTC.
	if t, err := time.Parse(time.RFC3339, text); err == nil && t.Year() >= 1900 {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, text, time.Local); err == nil && t.Year() >= 1900 {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %q is not a time (examples: 2026-12-31, 2026-12-31T08:00:00Z, +45d)", ErrInvalid, text)
}

// ParseDuration reads a duration as staff type it: whole days (7d) or
// Go's units (12h, 90m, 1h30m).
func ParseDuration(text string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(text, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 100*365 {
			return 0, fmt.Errorf("%w: %q is not a number of days (example: 7d)", ErrInvalid, text)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(text)
	if err != nil || d < 0 {
		// The sign of an offset is ParseTime's: "+-5h" is no time.
		return 0, fmt.Errorf("%w: %q is not a duration (examples: 7d, 12h, 90m)", ErrInvalid, text)
	}
	return d, nil
}
