// Package server is the school server daemon as a library: it adapts the
// store to the wire protocol, reads the configuration, and runs the QUIC
// server, the metrics endpoint and the nightly lifecycle. cmd/xs-backupd is
// a thin wrapper around Run.
package server

import (
	"context"
	"crypto/ed25519"
	"errors"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Backend serves the protocol from a store.
type Backend struct {
	S *store.Store
	// OpenRegistration approves new laptops at once; otherwise staff approve them.
	OpenRegistration bool
}

var _ proto.Backend = (*Backend)(nil)

// wireErr gives store errors the kind the laptop understands.
func wireErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *proto.Error
	if errors.As(err, &pe) {
		return err
	}
	for _, m := range []struct {
		target error
		kind   proto.Kind
	}{
		{store.ErrNotFound, proto.KindNotFound}, {store.ErrExists, proto.KindExists},
		{store.ErrHashMismatch, proto.KindHashMismatch}, {store.ErrInvalid, proto.KindBadRequest},
		{store.ErrNotOwned, proto.KindNotHeld}, {store.ErrOverQuota, proto.KindOverQuota},
		{store.ErrStorageFull, proto.KindStorageFull}, {store.ErrCorrupt, proto.KindDamaged},
		{store.ErrRevoked, proto.KindRevoked}, {context.DeadlineExceeded, proto.KindTimeout},
	} {
		if errors.Is(err, m.target) {
			return &proto.Error{Kind: m.kind, Msg: err.Error()}
		}
	}
	return err
}

// Params implements proto.Backend.
func (b *Backend) Params() chunk.Params { return b.S.Params() }

// Register implements proto.Backend. Registering again with the same serial
// and key is harmless and returns the existing registration.
func (b *Backend) Register(ctx context.Context, req proto.RegisterRequest) (proto.RegisterResult, error) {
	if u, err := b.S.UserBySerial(req.Serial); err == nil {
		if u.PublicKey == nil || !ed25519.PublicKey(u.PublicKey).Equal(req.Key) {
			if u.PublicKey == nil {
				// An aliased student's new laptop: it takes the place prepared for it.
				u, err = b.S.SetKey(ctx, u.ID, req.Key)
				if err != nil {
					return proto.RegisterResult{}, wireErr(err)
				}
				return proto.RegisterResult{Serial: u.Serial, Approved: u.Approved}, nil
			}
			return proto.RegisterResult{}, proto.Errorf(proto.KindExists,
				"serial %s is already registered with another key; if this laptop was reflashed, ask staff to run: xs-admin revoke %s, then register again", req.Serial, req.Serial)
		}
		return proto.RegisterResult{Serial: u.Serial, Approved: u.Approved}, nil
	}
	u, err := b.S.AddUser(ctx, store.NewUser{Serial: req.Serial, Nickname: req.Nickname, PublicKey: req.Key, Approved: b.OpenRegistration})
	if err != nil {
		return proto.RegisterResult{}, wireErr(err)
	}
	return proto.RegisterResult{Serial: u.Serial, Approved: u.Approved}, nil
}

// Account implements proto.Backend.
func (b *Backend) Account(ctx context.Context, key ed25519.PublicKey) (proto.Account, error) {
	u, err := b.S.UserByKey(key)
	if err != nil {
		return proto.Account{}, proto.Errorf(proto.KindNotRegistered, "this laptop is not registered with the school server; run: xo-backup register --server HOST")
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

func snapInfo(sn *store.Snapshot) proto.SnapshotInfo {
	return proto.SnapshotInfo{ID: string(sn.ID), Time: sn.Time, Root: sn.Root, Files: sn.Files, Size: sn.Size,
		Stored: sn.Stored, Pinned: sn.Pinned, PinReason: sn.PinReason}
}

// Commit implements proto.Backend.
func (b *Backend) Commit(ctx context.Context, user uint64, root chunk.ID, info proto.CommitInfo) (proto.SnapshotInfo, error) {
	sn, err := b.S.Commit(ctx, store.UserID(user), root, store.CommitInfo{Host: info.Host, Source: info.Source})
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
	ok, err := b.S.Holds(ctx, store.UserID(user), r)
	if err != nil {
		return blob.Blob{}, wireErr(err)
	}
	if !ok {
		return blob.Blob{}, proto.Errorf(proto.KindNotFound, "%s is not in this laptop's backups", r)
	}
	bl, err := b.S.ReadStored(ctx, r)
	return bl, wireErr(err)
}

// BeginSession implements proto.Backend: the lifecycle leaves the user's
// holdings alone while they back up.
// Damaged lists the damaged blobs the user holds (store.Store.DamagedHeld).
func (b *Backend) Damaged(ctx context.Context, user uint64) ([]blob.Ref, bool, error) {
	return b.S.DamagedHeld(ctx, store.UserID(user))
}

func (b *Backend) BeginSession(user uint64) func() { return b.S.BeginSession(store.UserID(user)) }
