// Package errkind is the one error vocabulary of xs-backup: the store, the
// wire protocol, the laptop agent and the admin socket classify every error
// they return by a Kind, and the kind survives the network and the socket.
// Programs map a kind to an exit code and to advice in one place (cmd/ and
// internal/cli); library errors only say what happened.
//
// Errors are matched with errors.Is against the sentinels below (or any
// *Error of the same kind) and classified with Of. Kinds are numbers on the
// wire (they double as QUIC application error codes): add new kinds only at
// the end, never renumber.
package errkind

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies an error.
type Kind uint8

// Kinds. Never reorder; add new ones at the end.
const (
	Internal      Kind = iota + 1 // a failure on the other side; try again later
	BadRequest                    // malformed or invalid input
	NotRegistered                 // the laptop's key is not registered
	NotApproved                   // registered, waiting for staff approval
	Revoked                       // registration revoked or moved to another laptop
	Busy                          // at capacity; come back later
	OverQuota                     // the user's hard quota would be exceeded
	StorageFull                   // the server keeps its free-space reserve
	NotFound                      // no such user, snapshot, path or blob
	NotHeld                       // a commit references blobs this user has not uploaded
	HashMismatch                  // uploaded bytes do not match their ID
	TooLarge                      // a frame or blob over its size cap
	Shutdown                      // the server is shutting down
	Timeout                       // a deadline passed or a transfer was too slow
	NoSession                     // a backup request without an admitted session
	Exists                        // already exists (a serial, a key)
	Damaged                       // stored data failed its check
	Closed                        // the store (or handle) was closed
	IndexDamaged                  // the server's index is damaged: rebuild it
	Locked                        // another process has the store open
	ReadOnly                      // the store was opened read-only
	Permission                    // the operating system refused access (a socket, a file)
)

var names = map[Kind]string{
	Internal: "internal error", BadRequest: "invalid request", NotRegistered: "not registered",
	NotApproved: "not approved yet", Revoked: "revoked", Busy: "busy", OverQuota: "over quota",
	StorageFull: "storage full", NotFound: "not found", NotHeld: "not uploaded by this laptop",
	HashMismatch: "hash mismatch", TooLarge: "too large", Shutdown: "shutting down",
	Timeout: "timeout", NoSession: "no session", Exists: "already exists",
	Damaged: "damaged data", Closed: "closed", IndexDamaged: "index damaged",
	Locked: "in use by another process", ReadOnly: "read-only",
	Permission: "permission denied",
}

// String is the kind's short name (as xo-backup --json prints it).
func (k Kind) String() string {
	if n, ok := names[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { _, ok := names[k]; return ok }

// Error is an error of a kind, as it crosses the wire and the admin socket.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Kind.String()
	}
	return e.Kind.String() + ": " + e.Msg
}

// Is makes errors.Is(err, target) true for any *Error target of the same
// kind, so that every error of a kind matches its sentinel.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Kind == e.Kind
}

// Errorf returns an Error of kind k.
func Errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Of returns the kind of err: the kind of the first *Error it is or wraps,
// Timeout for an expired context deadline, Internal for any other error,
// and 0 for nil.
func Of(err error) Kind {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}
	return Internal
}

// Sentinels, one per kind that callers branch on.
var (
	ErrInternal      = &Error{Kind: Internal}
	ErrBadRequest    = &Error{Kind: BadRequest}
	ErrNotRegistered = &Error{Kind: NotRegistered}
	ErrNotApproved   = &Error{Kind: NotApproved}
	ErrRevoked       = &Error{Kind: Revoked}
	ErrBusy          = &Error{Kind: Busy}
	ErrOverQuota     = &Error{Kind: OverQuota}
	ErrStorageFull   = &Error{Kind: StorageFull}
	ErrNotFound      = &Error{Kind: NotFound}
	ErrNotHeld       = &Error{Kind: NotHeld}
	ErrHashMismatch  = &Error{Kind: HashMismatch}
	ErrTooLarge      = &Error{Kind: TooLarge}
	ErrShutdown      = &Error{Kind: Shutdown}
	ErrTimeout       = &Error{Kind: Timeout}
	ErrNoSession     = &Error{Kind: NoSession}
	ErrExists        = &Error{Kind: Exists}
	ErrDamaged       = &Error{Kind: Damaged}
	ErrClosed        = &Error{Kind: Closed}
	ErrIndexDamaged  = &Error{Kind: IndexDamaged}
	ErrLocked        = &Error{Kind: Locked}
	ErrReadOnly      = &Error{Kind: ReadOnly}
	ErrPermission    = &Error{Kind: Permission}
)
