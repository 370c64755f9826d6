package store

import (
	"context"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// UserTarget is one user's view of the store as a backup destination: it
// implements backup.Target, so a program embedding the store can back a
// directory up into it directly, without the network.
type UserTarget struct {
	s    *Store
	user UserID
	info CommitInfo
	last *Snapshot
}

// Target returns a backup destination that uploads and commits as user.
func (s *Store) Target(user UserID, info CommitInfo) *UserTarget {
	return &UserTarget{s: s, user: user, info: info}
}

// Need reports which blobs the user must upload (see Store.Need).
func (t *UserTarget) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	return t.s.Need(ctx, t.user, refs)
}

// Put uploads blobs as the user (see Store.Put).
func (t *UserTarget) Put(ctx context.Context, blobs []blob.Blob) error {
	return t.s.Put(ctx, t.user, blobs)
}

// Commit commits a snapshot as the user and returns its ID.
func (t *UserTarget) Commit(ctx context.Context, root chunk.ID) (string, error) {
	sn, err := t.s.Commit(ctx, t.user, root, t.info)
	if err != nil {
		return "", err
	}
	t.last = sn
	return string(sn.ID), nil
}

// Damaged lists the damaged blobs the user holds (see Store.DamagedHeld), so
// that backup.Run sends them again.
func (t *UserTarget) Damaged(ctx context.Context) ([]blob.Ref, bool, error) {
	return t.s.DamagedHeld(ctx, t.user)
}

// Last returns the snapshot the last successful Commit made, or nil.
func (t *UserTarget) Last() *Snapshot { return t.last }
