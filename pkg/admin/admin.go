// Package admin is the staff API of xs-backup: one typed request and one
// typed result per staff command (UsersRequest → []UserRow, GCRequest →
// *GCResult, …).
//
// Service runs requests on an open store, one method per command. Badger
// allows one process, so while xs-backupd runs it serves the same methods
// on a local unix socket (Serve, Handler), and xs-admin calls them with a
// Client from Dial; with the daemon stopped, xs-admin opens the store and
// calls them in-process through a Client from Local. Either way the caller
// gets the same typed results and errors of the same kind (pkg/errkind):
// on the socket a request is {"op": NAME, "args": REQUEST}, decoded
// strictly into the op's own request type, and an error travels as its
// message and kind.
//
// Errors say what happened; what staff should do about one is the CLI's
// to say (internal/cli.StaffAdvice), by the error's kind.
package admin

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// ErrInvalid marks a request staff got wrong: a missing serial, an
// impossible value. It is errkind's BadRequest, so it keeps its kind
// through the socket.
var ErrInvalid = errkind.ErrBadRequest

// Service runs admin commands on an open store.
type Service struct {
	S *store.Store
	// Live is set when the daemon serves laptops from the same store:
	// commands that need the store to themselves (repair) are refused.
	Live bool
	// Lifecycle, if set, runs the lifecycle (the daemon's, which runs it
	// at low priority and counts it in its metrics); else S.Lifecycle.
	Lifecycle func(ctx context.Context, opts store.LifecycleOptions) (*store.LifecycleReport, error)
	// Now is the clock (default time.Now): claim codes' expiry, links.
	Now func() time.Time
	// Link, if set, makes a staff restore-page link (the daemon's).
	Link func(serial string, lifetime time.Duration) (string, error)
	// LinkLifetime is how long such a link works (default an hour).
	LinkLifetime time.Duration
	// Admission, if set, is the daemon's admission now, queue included
	// (proto.Server.Admission).
	Admission func() proto.AdmissionStatus
	// Sync, if set, runs replication to the mothership (the daemon's), or
	// with status only reports the lag.
	Sync func(ctx context.Context, status bool) (*offsite.Report, offsite.Lag, error)
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
