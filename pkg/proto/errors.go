package proto

import (
	"errors"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// Kind classifies an error so it can cross the wire and a client can tell the
// user what happened and what to do. It is errkind.Kind: kinds are sent as
// numbers and double as QUIC application error codes.
type Kind = errkind.Kind

// Error kinds (errkind's, under the names this package has always used).
const (
	KindInternal      = errkind.Internal
	KindBadRequest    = errkind.BadRequest
	KindNotRegistered = errkind.NotRegistered
	KindNotApproved   = errkind.NotApproved
	KindRevoked       = errkind.Revoked
	KindBusy          = errkind.Busy
	KindOverQuota     = errkind.OverQuota
	KindStorageFull   = errkind.StorageFull
	KindNotFound      = errkind.NotFound
	KindNotHeld       = errkind.NotHeld
	KindHashMismatch  = errkind.HashMismatch
	KindTooLarge      = errkind.TooLarge
	KindShutdown      = errkind.Shutdown
	KindTimeout       = errkind.Timeout
	KindNoSession     = errkind.NoSession
	KindExists        = errkind.Exists
	KindDamaged       = errkind.Damaged
	KindClosed        = errkind.Closed
	KindIndexDamaged  = errkind.IndexDamaged
	KindLocked        = errkind.Locked
	KindReadOnly      = errkind.ReadOnly
)

// Error is an error with a Kind, as it crosses the wire (errkind.Error).
type Error = errkind.Error

// Errorf returns an Error of kind k.
func Errorf(k Kind, format string, args ...any) *Error { return errkind.Errorf(k, format, args...) }

// KindOf returns the Kind of err: its own if it is (or wraps) an *Error,
// the code of a QUIC application error, KindTimeout for deadline errors,
// KindInternal otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.ErrorCode > 0 && ae.ErrorCode < 256 {
		return Kind(ae.ErrorCode)
	}
	return errkind.Of(err)
}

// Sentinels for errors.Is (errkind's).
var (
	ErrBusy          = errkind.ErrBusy
	ErrNotRegistered = errkind.ErrNotRegistered
	ErrNotApproved   = errkind.ErrNotApproved
	ErrRevoked       = errkind.ErrRevoked
	ErrOverQuota     = errkind.ErrOverQuota
	ErrStorageFull   = errkind.ErrStorageFull
	ErrNotFound      = errkind.ErrNotFound
	ErrTooLarge      = errkind.ErrTooLarge
	ErrHashMismatch  = errkind.ErrHashMismatch
	ErrBadRequest    = errkind.ErrBadRequest
)

// ErrServerKeyChanged is returned when the server presents a key other than
// the one pinned at registration.
var ErrServerKeyChanged = errors.New("the server's key is not the one this laptop registered with: someone may be impersonating the school server; if the server was really replaced, register again")
