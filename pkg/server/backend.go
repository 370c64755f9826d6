// Package server is the school server daemon as a library: it adapts the
// store to the wire protocol, reads the configuration, and runs the QUIC
// server, the metrics endpoint and the nightly lifecycle. cmd/xs-backupd is
// a thin wrapper around Run.
package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/internal/bucket"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Backend serves the protocol from a store.
type Backend struct {
	S *store.Store
	// OpenRegistration approves new laptops at once; otherwise staff approve
	// them. A known serial with a new key always waits for staff (or a claim
	// code), in both modes.
	OpenRegistration bool
	// MaxPending caps the registrations waiting for staff (new laptops and
	// key changes); past it registrations are refused as busy (default 200).
	MaxPending int
	// OpenBurst new laptops are approved at once in open registration, then
	// one per OpenEvery (defaults 100 and 36 s: 100 an hour); beyond that
	// they wait for staff like in approve mode, so a flood of made-up serials
	// cannot create approved accounts quickly.
	OpenBurst int
	OpenEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Mothership: the accounts are school servers, whose commits carry the
	// origin of the snapshots they replicate.
	Mothership bool
	// Key is the server's key: a mothership signs recovery bundles with it.
	Key ed25519.PrivateKey

	recovering sync.Mutex // one recovery download at a time

	once  sync.Once
	regMu sync.Mutex // serializes registrations, so that the caps hold
	mu    sync.Mutex // guards open
	open  bucket.Bucket
}

func (b *Backend) init() {
	b.once.Do(func() {
		if b.MaxPending <= 0 {
			b.MaxPending = 200
		}
		if b.OpenBurst <= 0 {
			b.OpenBurst = 100
		}
		if b.OpenEvery <= 0 {
			b.OpenEvery = 36 * time.Second
		}
		if b.Now == nil {
			b.Now = time.Now
		}
		b.open = bucket.Bucket{Burst: b.OpenBurst, Every: b.OpenEvery}
	})
}

// openApproves says whether open registration approves one more new laptop now.
func (b *Backend) openApproves() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.OpenRegistration && b.open.Allow(b.Now())
}

func (b *Backend) pendingFull() error {
	if n := b.S.Pending(); n >= b.MaxPending {
		return proto.Errorf(proto.KindBusy, "%d laptops already wait for staff approval; no more registrations are taken until staff have looked at them", n)
	}
	return nil
}

var _ proto.Backend = (*Backend)(nil)
var _ proto.Prefetcher = (*Backend)(nil)

// wireErr is the error a laptop is told. Store errors already carry their
// kind (pkg/errkind), which crosses the wire with the message.
func wireErr(err error) error { return err }

// Params implements proto.Backend.
func (b *Backend) Params() chunk.Params { return b.S.Params() }

// Register implements proto.Backend. Registering again with the same serial
// and key is harmless and returns the existing registration. A known serial
// with another key (a reflashed laptop; a serial staff aliased or registered
// by hand) takes the serial's history only with a valid claim code;
// otherwise it becomes a key change that waits for staff.
func (b *Backend) Register(ctx context.Context, req proto.RegisterRequest) (proto.RegisterResult, error) {
	b.init()
	b.regMu.Lock()
	defer b.regMu.Unlock()
	u, err := b.S.UserBySerial(req.Serial)
	known := err == nil && u.Serial == req.Serial
	if known && ed25519.PublicKey(u.PublicKey).Equal(req.Key) {
		if u.Revoked {
			return proto.RegisterResult{}, proto.Errorf(proto.KindRevoked,
				"laptop %s was revoked by staff", u.Serial)
		}
		return proto.RegisterResult{Serial: u.Serial, Approved: u.Approved}, nil
	}
	if o, m := b.S.KeyStatus(req.Key); m == store.KeyRetired && o.Serial == req.Serial {
		return proto.RegisterResult{}, proto.Errorf(proto.KindRevoked,
			"this key of laptop %s was replaced by a newer registration; staff decide which laptop is %s", req.Serial, req.Serial)
	} else if m == store.KeyRetired || (m != store.KeyUnknown && o.Revoked) {
		// A key staff revoked, or one retired from another laptop, asks
		// for no other laptop's history (a stolen laptop registering a
		// serial with backups would wait in the pending list as a
		// reflashed laptop does) and gets no fresh account either.
		return proto.RegisterResult{}, proto.Errorf(proto.KindRevoked,
			"this laptop's key was revoked or replaced (laptop %s); ask staff", o.Serial)
	}
	if req.Claim != "" {
		if !known {
			return proto.RegisterResult{}, proto.Errorf(proto.KindNotApproved, "no laptop %s is registered, so there is nothing to claim; register without a claim code", req.Serial)
		}
		u, err := b.S.Claim(ctx, req.Serial, req.Claim, req.Key)
		if errors.Is(err, store.ErrNotOwned) {
			// The store's words for a chunk not uploaded do not fit a code.
			msg := strings.TrimPrefix(err.Error(), store.ErrNotOwned.Error()+": ")
			return proto.RegisterResult{}, &proto.Error{Kind: proto.KindNotApproved, Msg: msg}
		}
		if err != nil {
			return proto.RegisterResult{}, wireErr(err)
		}
		return proto.RegisterResult{Serial: u.Serial, Approved: true, Continued: true, Snapshots: len(b.S.Snapshots(u.ID))}, nil
	}
	if known {
		if u.PendingKey == nil {
			if err := b.pendingFull(); err != nil {
				return proto.RegisterResult{}, err
			}
		}
		if _, err := b.S.RequestKey(ctx, u.ID, req.Key); err != nil {
			return proto.RegisterResult{}, wireErr(err)
		}
		return proto.RegisterResult{Serial: u.Serial, KeyChange: true}, nil
	}
	if err := b.pendingFull(); err != nil {
		return proto.RegisterResult{}, err
	}
	u, err = b.S.AddUser(ctx, store.NewUser{Serial: req.Serial, Nickname: req.Nickname, PublicKey: req.Key, Approved: b.openApproves()})
	if err != nil {
		return proto.RegisterResult{}, wireErr(err)
	}
	return proto.RegisterResult{Serial: u.Serial, Approved: u.Approved}, nil
}

// Account implements proto.Backend.
func (b *Backend) Account(ctx context.Context, key ed25519.PublicKey) (proto.Account, error) {
	u, m := b.S.KeyStatus(key)
	switch m {
	case store.KeyUnknown:
		return proto.Account{}, proto.Errorf(proto.KindNotRegistered, "this laptop is not registered with the school server")
	case store.KeyPending:
		return proto.Account{ID: uint64(u.ID), Serial: u.Serial, Nickname: u.Nickname}, nil
	case store.KeyRetired:
		return proto.Account{ID: uint64(u.ID), Serial: u.Serial, Nickname: u.Nickname, Revoked: true}, nil
	}
	a := proto.Account{ID: uint64(u.ID), Serial: u.Serial, Nickname: u.Nickname, Approved: u.Approved, Revoked: u.Revoked}
	if sn, err := b.S.Snapshot(u.ID, "latest"); err == nil {
		a.LastBackup = sn.Time
	}
	return a, nil
}

// Quota implements proto.Backend.
func (b *Backend) Quota(ctx context.Context, user uint64) (proto.QuotaStatus, error) {
	u, err := b.S.Usage(ctx, store.UserID(user))
	if err != nil {
		return proto.QuotaStatus{}, wireErr(err)
	}
	q := b.S.QuotaOf(store.UserID(user))
	return proto.QuotaStatus{Used: u.Bytes, Soft: q.Soft, Hard: q.Hard}, nil
}

// Need implements proto.Backend.
func (b *Backend) Need(ctx context.Context, user uint64, refs []blob.Ref) ([]bool, error) {
	need, err := b.S.Need(ctx, store.UserID(user), refs)
	return need, wireErr(err)
}

// Put implements proto.Backend.
func (b *Backend) Put(ctx context.Context, user uint64, blobs []blob.Blob) error {
	return wireErr(b.S.Put(ctx, store.UserID(user), blobs))
}

// snapInfo is what a laptop is told of its snapshot. Not its stored size:
// that counts the copies on disk, which may be other laptops' (compressed
// otherwise), and would tell a child that another holds a chunk.
func snapInfo(sn *store.Snapshot) proto.SnapshotInfo {
	return proto.SnapshotInfo{ID: string(sn.ID), Time: sn.Time, Root: sn.Root, Files: sn.Files, Size: sn.Size,
		Pinned: sn.Pinned, PinReason: sn.PinReason, Origin: sn.Origin, Host: sn.Host, Source: sn.Source}
}

// Commit implements proto.Backend.
func (b *Backend) Commit(ctx context.Context, user uint64, root chunk.ID, info proto.CommitInfo) (proto.SnapshotInfo, error) {
	if info.Origin != nil && !b.Mothership {
		return proto.SnapshotInfo{}, proto.Errorf(proto.KindBadRequest, "this server is a school server: only a mothership takes replicated snapshots")
	}
	sn, err := b.S.Commit(ctx, store.UserID(user), root, info)
	if err != nil {
		return proto.SnapshotInfo{}, wireErr(err)
	}
	return snapInfo(sn), nil
}

// Snapshots implements proto.Backend.
func (b *Backend) Snapshots(ctx context.Context, user uint64) ([]proto.SnapshotInfo, error) {
	var out []proto.SnapshotInfo
	for _, sn := range b.S.Snapshots(store.UserID(user)) {
		out = append(out, snapInfo(sn))
	}
	return out, nil
}

// Fetch implements proto.Backend: only blobs the user holds are served.
func (b *Backend) Fetch(ctx context.Context, user uint64, r blob.Ref) (blob.Blob, error) {
	bl, err := b.S.ReadFor(ctx, store.UserID(user), r)
	if errors.Is(err, store.ErrNotFound) {
		return blob.Blob{}, proto.Errorf(proto.KindNotFound, "%s is not in this laptop's backups", r)
	}
	return bl, wireErr(err)
}

// FetchSize implements proto.FetchSizer: what Fetch returns is the copy on
// disk or, decompressed, its raw bytes.
func (b *Backend) FetchSize(ctx context.Context, r blob.Ref) (int, bool) {
	st, err := b.S.Stat(ctx, r)
	if err != nil {
		return 0, false
	}
	return int(max(st.Stored, st.Raw)), true
}

// Prefetch implements proto.Prefetcher: with the packs in an object store,
// the blobs of a laptop's fetch request that it holds are read ahead in
// parallel ranged reads.
func (b *Backend) Prefetch(ctx context.Context, user uint64, refs []blob.Ref) {
	if b.S.Remote() == nil {
		return // local packs: nothing to read ahead, no index look-up to pay
	}
	need, err := b.S.Need(ctx, store.UserID(user), refs) // one look-up for the list
	if err != nil {
		return
	}
	held := refs[:0:0]
	for i, r := range refs {
		if !need[i] {
			held = append(held, r)
		}
	}
	b.S.Prefetch(ctx, held)
}

// Damaged lists the damaged blobs the user holds (store.Store.DamagedHeld).
func (b *Backend) Damaged(ctx context.Context, user uint64) ([]blob.Ref, bool, error) {
	return b.S.DamagedHeld(ctx, store.UserID(user))
}

// BeginSession implements proto.Backend: the lifecycle leaves the user's
// holdings alone while they back up.
func (b *Backend) BeginSession(user uint64) func() { return b.S.BeginSession(store.UserID(user)) }

// Recovery implements proto.RecoveryServer: on a mothership, the recovery
// bundle of the school whose recovery key is key.
func (b *Backend) Recovery(ctx context.Context, key ed25519.PublicKey, w io.Writer) error {
	if !b.Mothership || b.Key == nil {
		return proto.Errorf(proto.KindBadRequest, "this server is a school server: recovery bundles come from a mothership")
	}
	if !b.recovering.TryLock() {
		return proto.Errorf(proto.KindBusy, "another school server is being rebuilt from this mothership; try again in a while")
	}
	defer b.recovering.Unlock()
	return wireErr(offsite.RecoveryFor(ctx, b.S, key, b.Key, w))
}

var _ proto.RecoveryServer = (*Backend)(nil)
