package cli

import (
	"errors"
	"io/fs"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// ClientAdvice says what the person at the laptop should do next after an
// xo-backup command ended with err ("" when the message says it all). Like
// StaffAdvice, it keeps advice out of the libraries, which say what happened.
func ClientAdvice(err error) string {
	switch {
	case errors.Is(err, agent.ErrNotRegistered):
		return "register this laptop once with: xo-backup register --server HOST"
	case errors.Is(err, agent.ErrNotEmpty):
		return "move it away first, or give --force to overwrite it"
	case errors.Is(err, agent.ErrNoSnapshot):
		return "list this laptop's backups with: xo-backup list"
	case errors.Is(err, agent.ErrNoSerial):
		return "this is not an XO (or its firmware data is unreadable): give the serial with --serial"
	case errors.Is(err, fs.ErrExist):
		return "give --force to replace the files there, or restore into an empty folder"
	case errors.Is(err, errkind.ErrOverQuota):
		return "nothing was lost: the last backup is still on the server; ask staff to free space or raise the quota (xs-admin quota)"
	}
	return LaptopAdvice(err)
}
