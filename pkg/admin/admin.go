// Package admin is what the staff tool does, as one JSON command surface:
// Service runs commands on a store; Handler serves them on the daemon's
// local unix socket (Badger allows one process, so while xs-backupd runs,
// xs-admin goes through it); Client sends them. With the daemon stopped,
// xs-admin opens the store itself and calls Service directly.
package admin

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Service runs admin commands on an open store.
type Service struct {
	S *store.Store
	// Live is set when the daemon serves laptops from the same store:
	// commands that need the store to themselves (repair) are refused.
	Live bool
	// Lifecycle, if set, runs the lifecycle (the daemon's, which runs it
	// at low priority and counts it in its metrics); else S.Lifecycle.
	Lifecycle func(ctx context.Context, opts store.LifecycleOptions) (*store.LifecycleReport, error)
	// Now is the clock relative times ("+45d") count from (default time.Now).
	Now func() time.Time
	// Link, if set, makes a staff restore-page link (the daemon's).
	Link func(serial string, lifetime time.Duration) (string, error)
	// LinkLifetime is how long such a link works (default an hour).
	LinkLifetime time.Duration
	// Admission, if set, is the daemon's admission now, queue included
	// (proto.Server.Admission).
	Admission func() proto.AdmissionStatus
}

// StatusResult is the output of `xs-admin status`: the daemon's admission
// and its queue, laptops by serial.
type StatusResult struct {
	proto.AdmissionStatus
	Serials map[uint64]string `json:"serials,omitempty"`
}

// LinkResult is the output of `xs-admin restore-link`.
type LinkResult struct {
	Serial  string    `json:"serial"`
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// Args are the arguments of every command (each uses the fields it needs).
type Args struct {
	Serial    string `json:"serial,omitempty"`
	NewSerial string `json:"new_serial,omitempty"`
	Snapshot  string `json:"snapshot,omitempty"`
	ReadData  bool   `json:"read_data,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// At is the time retention is evaluated at: RFC 3339, a date
	// (2026-12-31), or relative to now (+45d, -2h).
	At     string `json:"at,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Soft and Hard set a laptop's quota (bytes); Reset returns a laptop
	// to the server's defaults (quota or retention policy).
	Soft  *int64 `json:"soft,omitempty"`
	Hard  *int64 `json:"hard,omitempty"`
	Reset bool   `json:"reset,omitempty"`
	// Policy sets a laptop's own retention policy.
	Policy *store.Policy `json:"policy,omitempty"`
	// CompactBelow overrides the pack compaction threshold of one gc run.
	CompactBelow float64 `json:"compact_below,omitempty"`
	// Files lists a snapshot's raw tree instead of its Journal entries.
	Files bool `json:"files,omitempty"`
	// Entries (UIDs) and Titles (substrings) choose Journal entries to restore.
	Entries []string `json:"entries,omitempty"`
	Titles  []string `json:"titles,omitempty"`
	// Format of an export: tar (default), xoj or raw.
	Format string `json:"format,omitempty"`
	// Nickname of a laptop staff register by hand.
	Nickname string `json:"nickname,omitempty"`
	// ExpirePending: gc first releases every upload of an unfinished backup
	// (laptops not backing up right now), whatever its age.
	ExpirePending bool `json:"expire_pending,omitempty"`
	// All: scrub reads every pack now, not the nightly share.
	All bool `json:"all,omitempty"`
	// Key is the fingerprint (or its start) of the key staff approve: the
	// one the laptop showed when it registered. Empty approves the key
	// that waits, whichever it is.
	Key string `json:"key,omitempty"`
	// NewHistory approves a waiting key as a new, empty history and keeps
	// the old one beside it (as SERIAL.old) instead of continuing it.
	NewHistory bool `json:"new_history,omitempty"`
	// Expires is how long a claim code works (e.g. 7d, 12h; default 7d).
	Expires string `json:"expires,omitempty"`
}

// DamagedRow is one line of `xs-admin damaged`: a blob with no intact copy
// and the laptops whose backups use it (any of them heals it by backing up).
type DamagedRow struct {
	Ref     string    `json:"ref"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason"`
	Laptops []string  `json:"laptops"`
}

// GCResult is what `xs-admin gc` did: the garbage collection and, with
// ExpirePending, the uploads it released first.
type GCResult struct {
	Expired *store.ExpireReport `json:"expired_uploads,omitempty"`
	*store.GCReport
}

// ClaimResult is the output of `xs-admin claim-code`.
type ClaimResult struct {
	Serial string `json:"serial"`
	// Code is shown once: the store keeps only its hash.
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// PendingRow is one registration waiting for staff (`xs-admin pending`).
type PendingRow struct {
	Serial   string    `json:"serial"`
	Nickname string    `json:"nickname,omitempty"`
	Since    time.Time `json:"since"`
	// KeyChange is true for a known serial asking with a new key (a
	// reflash, or an aliased or pre-registered serial); false for a new laptop.
	KeyChange bool   `json:"key_change"`
	NewKey    string `json:"new_key"`
	OldKey    string `json:"old_key,omitempty"`
	// The history the key would continue: its backups and the last one.
	Snapshots  int       `json:"snapshots"`
	LastBackup time.Time `json:"last_backup,omitzero"`
	Revoked    bool      `json:"revoked,omitempty"`
}

// QuotaRow is one line of `xs-admin quota`.
type QuotaRow struct {
	Serial string `json:"serial"`
	Used   int64  `json:"used_bytes"`
	Soft   int64  `json:"soft_bytes,omitempty"`
	Hard   int64  `json:"hard_bytes,omitempty"`
	// FairShare divides each shared chunk among the laptops that hold it.
	FairShare int64 `json:"fair_share_bytes"`
	// Own is true when the laptop has its own quota, not the default.
	Own      bool `json:"own,omitempty"`
	OverSoft bool `json:"over_soft,omitempty"`
}

// PolicyRow is the output of `xs-admin policy`.
type PolicyRow struct {
	Serial string       `json:"serial"`
	Policy store.Policy `json:"policy"`
	Own    bool         `json:"own,omitempty"`
}

// UserRow is one line of `xs-admin users`.
type UserRow struct {
	Serial     string    `json:"serial"`
	Nickname   string    `json:"nickname,omitempty"`
	Registered time.Time `json:"registered"`
	Approved   bool      `json:"approved"`
	Revoked    bool      `json:"revoked,omitempty"`
	Aliases    []string  `json:"aliases,omitempty"`
	LastBackup time.Time `json:"last_backup,omitzero"`
	Snapshots  int       `json:"snapshots"`
	Usage      int64     `json:"usage_bytes"`
	// ID reaches this user in every command, like its serial.
	ID  string `json:"id"`
	Key string `json:"key,omitempty"`
	// PendingKey is a key change waiting for staff (xs-admin approve).
	PendingKey   string    `json:"pending_key,omitempty"`
	PendingSince time.Time `json:"pending_since,omitzero"`
	// ClaimExpires is set while a claim code is outstanding.
	ClaimExpires time.Time `json:"claim_expires,omitzero"`
}

func fingerprint(k []byte) string {
	if len(k) != ed25519.PublicKeySize {
		return ""
	}
	return proto.Fingerprint(k)
}

// Commands lists the command names Do accepts.
var Commands = []string{"users", "pending", "snapshots", "approve", "revoke", "unrevoke", "claim-code", "alias", "check", "repair", "damaged", "scrub",
	"retention", "quota", "policy", "pin", "unpin", "gc", "lifecycle", "ls", "register", "restore-link"}

// ErrUsage marks errors in the command's arguments.
var ErrUsage = errors.New("usage")

func (s *Service) user(serial string) (*store.User, error) {
	if serial == "" {
		return nil, fmt.Errorf("%w: give the laptop's serial number (see xs-admin users)", ErrUsage)
	}
	return s.S.UserBySerial(serial)
}

// Do runs one command.
func (s *Service) Do(ctx context.Context, cmd string, a Args) (any, error) {
	switch cmd {
	case "users":
		var rows []UserRow
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
		if rows == nil {
			rows = []UserRow{}
		}
		return rows, nil
	case "snapshots":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		return s.S.Snapshots(u.ID), nil
	case "pending":
		return s.pending(), nil
	case "approve":
		return s.approve(ctx, a)
	case "revoke", "unrevoke":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		return s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
			u.Revoked = cmd == "revoke"
			return nil
		})
	case "claim-code":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, fmt.Errorf("%w; to prepare a laptop the server has never seen, first: xs-admin register %s", err, a.Serial)
		}
		ttl := 7 * 24 * time.Hour
		if a.Expires != "" {
			if ttl, err = parseDuration(a.Expires); err != nil || ttl <= 0 {
				return nil, fmt.Errorf("%w: --expires %q: write e.g. 7d or 12h", ErrUsage, a.Expires)
			}
		}
		code, u, err := s.S.IssueClaim(ctx, u.ID, ttl)
		if err != nil {
			return nil, err
		}
		return ClaimResult{Serial: u.Serial, Code: code, Expires: u.ClaimExpires}, nil
	case "alias":
		if a.Serial == "" || a.NewSerial == "" {
			return nil, fmt.Errorf("%w: xs-admin alias OLD_SERIAL NEW_SERIAL", ErrUsage)
		}
		return s.S.Alias(ctx, a.Serial, a.NewSerial)
	case "check":
		return s.S.Check(ctx, store.CheckOptions{ReadData: a.ReadData})
	case "repair":
		if s.Live {
			return nil, errors.New("repair rebuilds the whole index and needs the store to itself: stop xs-backupd (systemctl stop xs-backupd), then run xs-admin check --repair")
		}
		return s.S.Repair(ctx)
	case "ls":
		return s.ls(ctx, a)
	case "restore-link":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		if s.Link == nil {
			return nil, errors.New("the restore page is served by xs-backupd, which is not running: start it (systemctl start xs-backupd)")
		}
		lifetime := s.LinkLifetime
		if lifetime <= 0 {
			lifetime = time.Hour
		}
		url, err := s.Link(u.Serial, lifetime)
		if err != nil {
			return nil, err
		}
		return LinkResult{Serial: u.Serial, URL: url, Expires: time.Now().Add(lifetime)}, nil
	case "register":
		if a.Serial == "" {
			return nil, fmt.Errorf("%w: xs-admin register SERIAL [--nickname NAME]", ErrUsage)
		}
		// No key yet: the first laptop to register this serial waits for
		// staff to approve its key, or gives a claim code (claim-code).
		return s.S.AddUser(ctx, store.NewUser{Serial: a.Serial, Nickname: a.Nickname, Approved: true})
	case "retention":
		at, err := s.parseAt(a.At)
		if err != nil {
			return nil, err
		}
		opts := store.RetentionOptions{Now: at, DryRun: a.DryRun}
		if a.Serial != "" {
			u, err := s.user(a.Serial)
			if err != nil {
				return nil, err
			}
			opts.User = u.ID
		}
		return s.S.Retention(ctx, opts)
	case "quota":
		return s.quota(ctx, a)
	case "policy":
		return s.policy(ctx, a)
	case "pin", "unpin":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		if a.Snapshot == "" {
			return nil, fmt.Errorf("%w: xs-admin %s SERIAL SNAPSHOT (see xs-admin snapshots %s)", ErrUsage, cmd, a.Serial)
		}
		sn, err := s.S.Snapshot(u.ID, store.SnapshotID(a.Snapshot))
		if err != nil {
			return nil, err
		}
		if cmd == "pin" && a.Reason == "" {
			return nil, fmt.Errorf("%w: a pin needs a reason: xs-admin pin %s %s --reason \"science fair project\"", ErrUsage, a.Serial, a.Snapshot)
		}
		return s.S.SetPin(ctx, u.ID, sn.ID, cmd == "pin", a.Reason)
	case "gc":
		res := &GCResult{}
		if a.ExpirePending {
			// Uploads no snapshot uses yet, kept for their laptop to resume,
			// are released now (of laptops not backing up at this moment).
			far := time.Now().Add(100 * 365 * 24 * time.Hour)
			var err error
			if res.Expired, err = s.S.ExpirePending(ctx, far, a.DryRun); err != nil {
				return nil, err
			}
		}
		var err error
		res.GCReport, err = s.S.GC(ctx, store.GCOptions{DryRun: a.DryRun, CompactBelow: a.CompactBelow})
		return res, err
	case "status":
		if s.Admission == nil {
			return nil, errors.New("xs-backupd is not running: there is no queue (start it, or run xs-admin on its --data or --socket)")
		}
		st := StatusResult{AdmissionStatus: s.Admission(), Serials: map[uint64]string{}}
		for _, q := range st.Queue {
			if u, err := s.S.User(store.UserID(q.User)); err == nil {
				st.Serials[q.User] = u.Serial
			}
		}
		return &st, nil
	case "damaged":
		return s.damaged(ctx)
	case "scrub":
		return s.S.Scrub(ctx, store.ScrubOptions{All: a.All})
	case "lifecycle":
		at, err := s.parseAt(a.At)
		if err != nil {
			return nil, err
		}
		opts := store.LifecycleOptions{Now: at, DryRun: a.DryRun}
		if s.Lifecycle != nil {
			return s.Lifecycle(ctx, opts)
		}
		return s.S.Lifecycle(ctx, opts)
	}
	return nil, fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
}

// damaged lists the blobs with no intact copy and the laptops that hold them.
func (s *Service) damaged(ctx context.Context) ([]DamagedRow, error) {
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

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// parseDuration reads 7d, 36h, 90m.
func parseDuration(text string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(text, "d"); ok {
		days, err := strconv.Atoi(n)
		return time.Duration(days) * 24 * time.Hour, err
	}
	return time.ParseDuration(text)
}

// pending lists the registrations waiting for staff, oldest first.
func (s *Service) pending() []PendingRow {
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
	return rows
}

// approve lets a laptop back up: a waiting key change continues the
// serial's history (or starts a new one with NewHistory); a new laptop is
// approved; a revoked laptop is active again.
func (s *Service) approve(ctx context.Context, a Args) (*store.User, error) {
	u, err := s.user(a.Serial)
	if err != nil {
		return nil, err
	}
	if u.PendingKey != nil {
		if fp := fingerprint(u.PendingKey); a.Key != "" && !strings.HasPrefix(fp, a.Key) && !strings.HasPrefix(strings.TrimPrefix(fp, "SHA256:"), a.Key) {
			return nil, fmt.Errorf("the key waiting for %s is %s, not %s: a different device asked after the laptop you checked; do not approve it — have the laptop register again and compare (xs-admin pending)", u.Serial, fp, a.Key)
		}
		return s.S.ApproveKey(ctx, u.ID, a.NewHistory)
	}
	if a.NewHistory || len(u.PublicKey) == 0 {
		return s.S.ApproveKey(ctx, u.ID, a.NewHistory) // explains that no key waits
	}
	if a.Key != "" && !strings.HasPrefix(fingerprint(u.PublicKey), a.Key) && !strings.HasPrefix(strings.TrimPrefix(fingerprint(u.PublicKey), "SHA256:"), a.Key) {
		return nil, fmt.Errorf("laptop %s has key %s, not %s", u.Serial, fingerprint(u.PublicKey), a.Key)
	}
	return s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
		u.Approved, u.Revoked = true, false
		return nil
	})
}

// parseAt reads an --at time: RFC 3339, a date or date and time in local
// time, or an offset from now such as +45d or -12h. Empty means now.
func (s *Service) parseAt(text string) (time.Time, error) {
	if text == "" {
		return time.Time{}, nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if text[0] == '+' || text[0] == '-' {
		sign, num := text[:1], text[1:]
		var d time.Duration
		if n, ok := strings.CutSuffix(num, "d"); ok {
			days, err := strconv.Atoi(n)
			if err != nil {
				return time.Time{}, fmt.Errorf("%w: --at %q: write days as +45d", ErrUsage, text)
			}
			d = time.Duration(days) * 24 * time.Hour
		} else {
			var err error
			if d, err = time.ParseDuration(num); err != nil {
				return time.Time{}, fmt.Errorf("%w: --at %q: examples +45d, -12h", ErrUsage, text)
			}
		}
		if sign == "-" {
			d = -d
		}
		return now().Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, text); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, text, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: --at %q is not a time (examples: 2026-12-31, 2026-12-31T08:00:00Z, +45d)", ErrUsage, text)
}

func (s *Service) quota(ctx context.Context, a Args) (any, error) {
	var users []*store.User
	if a.Serial == "" {
		if a.Soft != nil || a.Hard != nil || a.Reset {
			return nil, fmt.Errorf("%w: give the laptop's serial to set its quota; the default quota is set in the server's configuration ([quota])", ErrUsage)
		}
		users = s.S.Users()
	} else {
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		if a.Soft != nil || a.Hard != nil || a.Reset {
			q := s.S.QuotaOf(u.ID)
			if a.Soft != nil {
				q.Soft = *a.Soft
			}
			if a.Hard != nil {
				q.Hard = *a.Hard
			}
			if q.Soft < 0 || q.Hard < 0 {
				return nil, fmt.Errorf("%w: quotas cannot be negative (0 means no limit)", ErrUsage)
			}
			if u, err = s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
				u.Quota = &q
				if a.Reset {
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

func (s *Service) policy(ctx context.Context, a Args) (any, error) {
	u, err := s.user(a.Serial)
	if err != nil {
		return nil, err
	}
	if a.Policy != nil || a.Reset {
		if a.Policy != nil {
			if err := a.Policy.Validate(); err != nil {
				return nil, err
			}
		}
		if u, err = s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
			u.Retention = a.Policy
			if a.Reset {
				u.Retention = nil
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return PolicyRow{Serial: u.Serial, Policy: s.S.PolicyOf(u.ID), Own: u.Retention != nil}, nil
}

// request and response are the socket's JSON bodies.
type request struct {
	Cmd  string `json:"cmd"`
	Args Args   `json:"args"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Usage  bool            `json:"usage,omitempty"`
	// Kind is the error's errkind.Kind (0: none known), so that xs-admin
	// gives the same advice through the socket as on a stopped daemon.
	Kind errkind.Kind `json:"kind,omitempty"`
}

// errResponse is the answer carrying err.
func errResponse(err error) response {
	r := response{Error: err.Error(), Usage: errors.Is(err, ErrUsage)}
	if k := errkind.Of(err); k != errkind.Internal {
		r.Kind = k
	}
	return r
}

// err rebuilds the error of an answer, with its kind.
func (r response) err() error {
	switch {
	case r.Error == "":
		return nil
	case r.Usage:
		return fmt.Errorf("%w: %s", ErrUsage, strings.TrimPrefix(r.Error, ErrUsage.Error()+": "))
	case r.Kind.Valid():
		return &errkind.Error{Kind: r.Kind, Msg: strings.TrimPrefix(r.Error, r.Kind.String()+": ")}
	}
	return errors.New(r.Error)
}
