package store

import (
	"errors"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// Sentinel errors callers branch on (with errors.Is). Messages returned by the
// store wrap them with context and say what to do next.
var (
	// ErrNotFound: no such user, snapshot, blob or path.
	ErrNotFound = errors.New("not found")
	// ErrExists: a user with that serial or key is already registered.
	ErrExists = errors.New("already exists")
	// ErrHashMismatch: an uploaded blob's bytes do not hash to its ID.
	ErrHashMismatch = errors.New("blob content does not match its ID")
	// ErrInvalid: malformed input (blob, manifest, name, option).
	ErrInvalid = errors.New("invalid request")
	// ErrNotOwned: a manifest references a blob this user never uploaded.
	ErrNotOwned = blob.ErrNotHeld
	// ErrOverQuota: the user's hard quota would be exceeded.
	ErrOverQuota = errors.New("over quota")
	// ErrStorageFull: the store keeps its free-space reserve and refuses writes.
	ErrStorageFull = errors.New("storage full")
	// ErrCorrupt: stored data failed its checksum or hash.
	ErrCorrupt = blob.ErrDamaged
	// ErrReadOnly: the store was opened read-only.
	ErrReadOnly = errors.New("store is read-only")
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("store is in use by another process")
	// ErrIndexDamaged: the Badger index will not open. It is derived state:
	// OpenForRepair and Repair rebuild it from the packs and metadata.
	ErrIndexDamaged = errors.New("index damaged")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrRevoked: the user's registration was revoked or moved to a new laptop.
	ErrRevoked = errors.New("registration revoked")
)
