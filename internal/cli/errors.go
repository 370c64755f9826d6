package cli

import (
	"errors"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// ExitCode is the exit code of a program that failed with err: the one
// place where error kinds become exit codes (see ExitOK and the others).
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errkind.ErrOverQuota):
		return ExitOverQuota
	}
	return ExitFailed
}

// StaffAdvice says what staff should do next after an error of a store or
// server command, by its kind ("" when the message says it all). Libraries
// say what happened; this is where the programs say what to do.
func StaffAdvice(err error) string {
	switch errkind.Of(err) {
	case errkind.IndexDamaged:
		return "the index is damaged; it is rebuilt from the pack files by: systemctl stop xs-backupd; xs-admin check --repair"
	case errkind.StorageFull:
		return "free disk space: xs-admin gc --dry-run shows what garbage collection can give back, and xs-admin gc --expire-pending also releases the uploads of unfinished backups"
	case errkind.Locked:
		return "xs-backupd has the store open: run xs-admin with the same --data (or --socket) as the daemon, or stop it first"
	case errkind.Damaged:
		return "the data is damaged on disk: xs-admin damaged lists it; it heals when a laptop that has it backs up"
	case errkind.Closed, errkind.Shutdown:
		return "xs-backupd is stopping: run the command again once it has restarted (systemctl status xs-backupd)"
	case errkind.Revoked, errkind.NotApproved:
		return "see the laptop's state with xs-admin users and xs-admin pending"
	}
	return ""
}
