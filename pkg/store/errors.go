package store

import (
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// Sentinel errors callers branch on (with errors.Is). They are the shared
// kinds of pkg/errkind, so their kind survives the wire and the admin
// socket; messages returned by the store wrap them with what happened.
var (
	// ErrNotFound: no such user, snapshot, blob or path.
	ErrNotFound = errkind.ErrNotFound
	// ErrExists: a user with that serial or key is already registered.
	ErrExists = errkind.ErrExists
	// ErrHashMismatch: an uploaded blob's bytes do not hash to its ID.
	ErrHashMismatch = errkind.ErrHashMismatch
	// ErrInvalid: malformed input (blob, manifest, name, option).
	ErrInvalid = errkind.ErrBadRequest
	// ErrNotOwned: a manifest references a blob this user never uploaded.
	ErrNotOwned = blob.ErrNotHeld
	// ErrOverQuota: the user's hard quota would be exceeded.
	ErrOverQuota = errkind.ErrOverQuota
	// ErrStorageFull: the store keeps its free-space reserve and refuses writes.
	ErrStorageFull = errkind.ErrStorageFull
	// ErrCorrupt: stored data failed its checksum or hash.
	ErrCorrupt = blob.ErrDamaged
	// ErrReadOnly: the store was opened read-only.
	ErrReadOnly = errkind.ErrReadOnly
	// ErrLocked: another process has the store open.
	ErrLocked = errkind.ErrLocked
	// ErrIndexDamaged: the Badger index will not open. It is derived state:
	// OpenForRepair and Repair rebuild it from the packs and metadata.
	ErrIndexDamaged = errkind.ErrIndexDamaged
	// ErrClosed: the store was closed.
	ErrClosed = errkind.ErrClosed
	// ErrRevoked: the user's registration was revoked or moved to a new laptop.
	ErrRevoked = errkind.ErrRevoked
)
