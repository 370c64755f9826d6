package proto

import (
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// Kind classifies an error so it can cross the wire and a client can tell the
// user what happened and what to do. Kinds are sent as numbers and double as
// QUIC application error codes: only ever add new kinds at the end.
type Kind uint8

// Error kinds.
const (
	KindInternal      Kind = iota + 1 // a server-side failure; try again later
	KindBadRequest                    // malformed or invalid request
	KindNotRegistered                 // the laptop's key is not registered
	KindNotApproved                   // registered, waiting for staff approval
	KindRevoked                       // registration revoked or moved to another laptop
	KindBusy                          // server at capacity; come back at the slot
	KindOverQuota                     // the user's hard quota would be exceeded
	KindStorageFull                   // the server keeps its free-space reserve
	KindNotFound                      // no such snapshot, path or blob
	KindNotHeld                       // a commit references blobs this user has not uploaded
	KindHashMismatch                  // uploaded bytes do not match their ID
	KindTooLarge                      // a frame or blob over its size cap
	KindShutdown                      // the server is shutting down
	KindTimeout                       // session deadline passed or the transfer was too slow
	KindNoSession                     // a backup request without an admitted session
	KindExists                        // already registered
	KindDamaged                       // stored data failed its check on the server
)

var kindNames = map[Kind]string{
	KindInternal: "internal error", KindBadRequest: "bad request", KindNotRegistered: "not registered",
	KindNotApproved: "not approved yet", KindRevoked: "revoked", KindBusy: "busy", KindOverQuota: "over quota",
	KindStorageFull: "storage full", KindNotFound: "not found", KindNotHeld: "missing blobs",
	KindHashMismatch: "hash mismatch", KindTooLarge: "too large", KindShutdown: "shutting down",
	KindTimeout: "timeout", KindNoSession: "no session", KindExists: "already exists",
	KindDamaged: "damaged data",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is an error with a Kind, as it crosses the wire.
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

// Is makes errors.Is(err, &Error{Kind: k}) match any Error of kind k, and
// a KindNotHeld error match blob.ErrNotHeld.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Kind == e.Kind
	}
	return e.Kind == KindNotHeld && target == blob.ErrNotHeld || e.Kind == KindDamaged && target == blob.ErrDamaged
}

// Errorf returns an Error of kind k.
func Errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of err: its own if it is (or wraps) an *Error,
// KindTimeout for deadline errors, KindInternal otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.ErrorCode > 0 && ae.ErrorCode < 256 {
		return Kind(ae.ErrorCode)
	}
	return KindInternal
}

// Sentinels for errors.Is.
var (
	ErrBusy          = &Error{Kind: KindBusy}
	ErrNotRegistered = &Error{Kind: KindNotRegistered}
	ErrNotApproved   = &Error{Kind: KindNotApproved}
	ErrRevoked       = &Error{Kind: KindRevoked}
	ErrOverQuota     = &Error{Kind: KindOverQuota}
	ErrStorageFull   = &Error{Kind: KindStorageFull}
	ErrNotFound      = &Error{Kind: KindNotFound}
	ErrTooLarge      = &Error{Kind: KindTooLarge}
	ErrHashMismatch  = &Error{Kind: KindHashMismatch}
	ErrBadRequest    = &Error{Kind: KindBadRequest}
)

// ErrServerKeyChanged is returned when the server presents a key other than
// the one pinned at registration.
var ErrServerKeyChanged = errors.New("the server's key is not the one this laptop registered with: someone may be impersonating the school server; if the server was really replaced, register again")
