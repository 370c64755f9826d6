package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Request is the typed arguments of one staff command. Op names the
// command on the admin socket; each request type has its own Service
// method and Client method, and its own result type.
type Request interface {
	Op() string
}

// UsersRequest lists every laptop, revoked ones too (Service.Users).
type UsersRequest struct{}

// PendingRequest lists the registrations waiting for staff, oldest first
// (Service.Pending).
type PendingRequest struct{}

// SnapshotsRequest lists a laptop's backups (Service.Snapshots).
type SnapshotsRequest struct {
	// Serial is the laptop's serial, a former serial or its user ID, as in
	// every request that names a laptop.
	Serial string `json:"serial"`
}

// ApproveRequest lets a laptop back up (Service.Approve).
type ApproveRequest struct {
	Serial string `json:"serial"`
	// Key is the fingerprint (or its start) of the key staff approve: the
	// one the laptop showed when it registered. Empty approves the key
	// that waits, whichever it is.
	Key string `json:"key,omitempty"`
	// NewHistory approves a waiting key as a new, empty history and keeps
	// the old one beside it (as SERIAL.old) instead of continuing it.
	NewHistory bool `json:"new_history,omitempty"`
}

// RevokeRequest stops a laptop from backing up or restoring; its backups
// stay (Service.Revoke).
type RevokeRequest struct {
	Serial string `json:"serial"`
}

// UnrevokeRequest undoes a revoke (Service.Unrevoke).
type UnrevokeRequest struct {
	Serial string `json:"serial"`
}

// ClaimCodeRequest issues a one-time claim code (Service.ClaimCode).
type ClaimCodeRequest struct {
	Serial string `json:"serial"`
	// Expires is how long the code works (0: DefaultClaimLifetime); in
	// JSON, nanoseconds.
	Expires time.Duration `json:"expires,omitempty"`
}

// RegisterRequest prepares a laptop by hand (Service.Register).
type RegisterRequest struct {
	Serial   string `json:"serial"`
	Nickname string `json:"nickname,omitempty"`
	// Key is the public key in hex. On a mothership it registers a school
	// by its server key (the server.pub of its recovery kit), for a school
	// that sends bundles rather than syncing over the network.
	Key string `json:"key,omitempty"`
}

// AliasRequest moves a student's backups to a replacement laptop's serial
// (Service.Alias).
type AliasRequest struct {
	Serial    string `json:"serial"`
	NewSerial string `json:"new_serial"`
}

// CheckRequest verifies the store (Service.Check).
type CheckRequest struct {
	// ReadData re-hashes every chunk and records what is damaged.
	ReadData bool `json:"read_data,omitempty"`
}

// RepairRequest rebuilds the index from the pack files (Service.Repair).
// It needs the store to itself: the daemon refuses it.
type RepairRequest struct{}

// DamagedRequest lists the blobs with no intact copy (Service.Damaged).
type DamagedRequest struct{}

// ScrubRequest reads back and verifies pack files now (Service.Scrub).
type ScrubRequest struct {
	// All reads every pack, not the nightly share.
	All bool `json:"all,omitempty"`
}

// StatusRequest asks for the daemon's admission now (Service.Status).
type StatusRequest struct{}

// RetentionRequest applies the retention policy (Service.Retention).
type RetentionRequest struct {
	// Serial limits it to one laptop ("" every laptop).
	Serial string `json:"serial,omitempty"`
	// At is the time it is evaluated at (zero: now; see ParseTime).
	At     time.Time `json:"at,omitzero"`
	DryRun bool      `json:"dry_run,omitempty"`
}

// QuotaRequest shows usage and quotas, or sets a laptop's quota
// (Service.Quota).
type QuotaRequest struct {
	// Serial is the laptop; "" shows every laptop (and sets nothing).
	Serial string `json:"serial,omitempty"`
	// Soft and Hard set the laptop's quota in bytes (0: no limit); nil
	// leaves it. Reset returns the laptop to the server's default quota.
	Soft  *int64 `json:"soft,omitempty"`
	Hard  *int64 `json:"hard,omitempty"`
	Reset bool   `json:"reset,omitempty"`
}

// PolicyRequest shows or sets a laptop's retention policy (Service.Policy).
type PolicyRequest struct {
	Serial string `json:"serial"`
	// Policy sets the laptop's own policy whole; Reset returns it to the
	// server's.
	Policy *store.Policy `json:"policy,omitempty"`
	// Change sets only the rules it names: the laptop gets its own policy,
	// its current one (its own, or the server's) with those rules changed.
	Change *PolicyChange `json:"change,omitempty"`
	Reset  bool          `json:"reset,omitempty"`
}

// PolicyChange names the rules of a retention policy to change (see
// store.Policy); a nil field leaves its rule as it is.
type PolicyChange struct {
	KeepLast       *int `json:"keep_last,omitempty"`
	KeepWithinDays *int `json:"keep_within_days,omitempty"`
	KeepDaily      *int `json:"keep_daily,omitempty"`
	KeepWeekly     *int `json:"keep_weekly,omitempty"`
	KeepMonthly    *int `json:"keep_monthly,omitempty"`
	KeepYearly     *int `json:"keep_yearly,omitempty"`
}

// Apply returns p with the rules c names changed.
func (c PolicyChange) Apply(p store.Policy) store.Policy {
	for _, f := range []struct {
		v  *int
		to *int
	}{{c.KeepLast, &p.KeepLast}, {c.KeepWithinDays, &p.KeepWithinDays}, {c.KeepDaily, &p.KeepDaily},
		{c.KeepWeekly, &p.KeepWeekly}, {c.KeepMonthly, &p.KeepMonthly}, {c.KeepYearly, &p.KeepYearly}} {
		if f.v != nil {
			*f.to = *f.v
		}
	}
	return p
}

// PinRequest keeps a snapshot from retention and quota (Service.Pin).
type PinRequest struct {
	Serial string `json:"serial"`
	// Snapshot is an ID or "latest" (see ResolveSnapshot for dates).
	Snapshot string `json:"snapshot"`
	// Reason is required: it is shown in every listing of the snapshot.
	Reason string `json:"reason"`
}

// UnpinRequest lets retention and quota treat a snapshot normally again
// (Service.Unpin).
type UnpinRequest struct {
	Serial   string `json:"serial"`
	Snapshot string `json:"snapshot"`
}

// GCRequest runs garbage collection (Service.GC).
type GCRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
	// CompactBelow overrides the pack compaction threshold of this run: a
	// fraction of live data, 0 < CompactBelow <= 1 (0: the configured one).
	CompactBelow float64 `json:"compact_below,omitempty"`
	// ExpirePending first releases every upload of an unfinished backup
	// (of laptops not backing up right now), whatever its age.
	ExpirePending bool `json:"expire_pending,omitempty"`
}

// LifecycleRequest runs the nightly lifecycle now (Service.RunLifecycle).
type LifecycleRequest struct {
	At     time.Time `json:"at,omitzero"`
	DryRun bool      `json:"dry_run,omitempty"`
}

// ListRequest lists a snapshot's Journal entries or files (Service.List).
type ListRequest struct {
	Serial string `json:"serial"`
	// Snapshot is "" or latest, an ID, a date or a time (ResolveSnapshot).
	Snapshot string `json:"snapshot,omitempty"`
	// Files lists the raw file tree instead of the Journal entries.
	Files bool `json:"files,omitempty"`
}

// RestoreLinkRequest makes a short-lived restore-page link for one laptop
// (Service.RestoreLink).
type RestoreLinkRequest struct {
	Serial string `json:"serial"`
}

// ExportRequest exports a snapshot or chosen Journal entries as a tar
// stream (Service.Export, Client.Export).
type ExportRequest struct {
	Serial   string `json:"serial"`
	Snapshot string `json:"snapshot,omitempty"`
	// Entries (UIDs) and Titles (substrings) choose Journal entries; none
	// exports the whole snapshot.
	Entries []string `json:"entries,omitempty"`
	Titles  []string `json:"titles,omitempty"`
	// Format is FormatTar (default), FormatXOJ or FormatRaw.
	Format string `json:"format,omitempty"`
}

// Op names of the requests on the admin socket.
func (UsersRequest) Op() string       { return "users" }
func (PendingRequest) Op() string     { return "pending" }
func (SnapshotsRequest) Op() string   { return "snapshots" }
func (ApproveRequest) Op() string     { return "approve" }
func (RevokeRequest) Op() string      { return "revoke" }
func (UnrevokeRequest) Op() string    { return "unrevoke" }
func (ClaimCodeRequest) Op() string   { return "claim-code" }
func (RegisterRequest) Op() string    { return "register" }
func (AliasRequest) Op() string       { return "alias" }
func (CheckRequest) Op() string       { return "check" }
func (RepairRequest) Op() string      { return "repair" }
func (DamagedRequest) Op() string     { return "damaged" }
func (ScrubRequest) Op() string       { return "scrub" }
func (StatusRequest) Op() string      { return "status" }
func (RetentionRequest) Op() string   { return "retention" }
func (QuotaRequest) Op() string       { return "quota" }
func (PolicyRequest) Op() string      { return "policy" }
func (PinRequest) Op() string         { return "pin" }
func (UnpinRequest) Op() string       { return "unpin" }
func (GCRequest) Op() string          { return "gc" }
func (LifecycleRequest) Op() string   { return "lifecycle" }
func (ListRequest) Op() string        { return "ls" }
func (RestoreLinkRequest) Op() string { return "restore-link" }
func (ExportRequest) Op() string      { return "export" }

// call is one decoded request, ready to run on a service.
type call func(ctx context.Context, s *Service) (any, error)

// handler decodes one op's arguments into its request type.
type handler struct {
	op     string
	decode func(args json.RawMessage) (call, error)
}

// handle makes the handler of a Service method: the arguments are decoded
// strictly into the method's own request type.
func handle[Req Request, Res any](run func(*Service, context.Context, Req) (Res, error)) handler {
	var zero Req
	return handler{op: zero.Op(), decode: func(args json.RawMessage) (call, error) {
		var req Req
		if err := decodeStrict(args, &req); err != nil {
			return nil, fmt.Errorf("%w: arguments of %s: %v", ErrInvalid, zero.Op(), err)
		}
		return func(ctx context.Context, s *Service) (any, error) { return run(s, ctx, req) }, nil
	}}
}

// handlers are the ops the socket's /v1/call answers (export streams, on
// /v1/export): a fixed table, nothing registers into it.
var handlers = byOp(
	handle((*Service).Users),
	handle((*Service).Pending),
	handle((*Service).Snapshots),
	handle((*Service).Approve),
	handle((*Service).Revoke),
	handle((*Service).Unrevoke),
	handle((*Service).ClaimCode),
	handle((*Service).Register),
	handle((*Service).Alias),
	handle((*Service).Check),
	handle((*Service).Repair),
	handle((*Service).Damaged),
	handle((*Service).Scrub),
	handle((*Service).Status),
	handle((*Service).Retention),
	handle((*Service).Quota),
	handle((*Service).Policy),
	handle((*Service).Pin),
	handle((*Service).Unpin),
	handle((*Service).GC),
	handle((*Service).RunLifecycle),
	handle((*Service).List),
	handle((*Service).RestoreLink),
	handle((*Service).SyncNow),
	handle((*Service).Schools),
	handle((*Service).BundleExport),
	handle((*Service).BundleImport),
	handle((*Service).RecoveryKit),
)

func byOp(hs ...handler) map[string]handler {
	m := make(map[string]handler, len(hs))
	for _, h := range hs {
		m[h.op] = h
	}
	return m
}

// MaxRequestBytes caps a request on the admin socket (requests are small:
// serials, flags, a few titles).
const MaxRequestBytes = 64 << 10

// envelope is a request on the socket: {"op": "gc", "args": {...}}, args
// being the op's own request type.
type envelope struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// readRequest reads one envelope of at most MaxRequestBytes.
func readRequest(r io.Reader) (envelope, error) {
	var env envelope
	b, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		return env, fmt.Errorf("read request: %w", err)
	}
	if len(b) > MaxRequestBytes {
		return env, errkind.Errorf(errkind.TooLarge, "a request over %d bytes", MaxRequestBytes)
	}
	if err := decodeStrict(b, &env); err != nil {
		return env, fmt.Errorf("%w: malformed request: %v", ErrInvalid, err)
	}
	return env, nil
}

// decodeRequest reads a request for one of the handlers and decodes its
// arguments into the op's request type.
func decodeRequest(r io.Reader) (string, call, error) {
	env, err := readRequest(r)
	if err != nil {
		return "", nil, err
	}
	h, ok := handlers[env.Op]
	if !ok {
		return env.Op, nil, fmt.Errorf("%w: unknown operation %q", ErrInvalid, env.Op)
	}
	c, err := h.decode(env.Args)
	return env.Op, c, err
}

// decodeStrict decodes one JSON value into v: unknown fields and anything
// after the value are errors; empty or null input leaves v zero.
func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the request")
	}
	return nil
}
