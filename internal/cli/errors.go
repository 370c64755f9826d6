package cli

import (
	"errors"
	"fmt"

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

// StaffExitCode is ExitCode for xs-admin, whose requests come from staff's
// command line: an invalid request is a usage error (exit 2), and a store
// in use by another process is ExitLocked.
func StaffExitCode(err error) int {
	switch {
	case errors.Is(err, errkind.ErrBadRequest):
		return ExitUsage
	case errors.Is(err, errkind.ErrLocked):
		return ExitLocked
	}
	return ExitCode(err)
}

// StaffPlace is where xs-admin looked for the daemon and the store, for
// advice that names them.
type StaffPlace struct {
	Data   string // the store directory
	Socket string // the daemon's admin socket
	Config string // the configuration file read ("" if none)
	// ViaDaemon is true when the command reached the daemon through its
	// socket (the error is the daemon's answer).
	ViaDaemon bool
}

// StaffAdvice says what staff should do next after an error of a store or
// server command, by its kind ("" when the message says it all). Libraries
// say what happened; this is where the programs say what to do.
func StaffAdvice(err error, at StaffPlace) string {
	switch errkind.Of(err) {
	case errkind.IndexDamaged:
		return "the index is damaged; it is rebuilt from the pack files by: systemctl stop xs-backupd; xs-admin check --repair"
	case errkind.StorageFull:
		return "free disk space: xs-admin gc --dry-run shows what garbage collection can give back, and xs-admin gc --expire-pending also releases the uploads of unfinished backups"
	case errkind.Locked:
		if at.ViaDaemon {
			return "xs-backupd has the store open and this command needs it to itself: systemctl stop xs-backupd, run the command again, then systemctl start xs-backupd"
		}
		where := "the --socket option or admin_socket in the configuration"
		if at.Config != "" {
			where = fmt.Sprintf("--socket, or admin_socket and data in %s", at.Config)
		}
		return fmt.Sprintf("the store at %s is in use by another process (is xs-backupd running? xs-admin looked for its admin socket at %s: check %s; commands that need the store to themselves need it stopped: systemctl stop xs-backupd)", at.Data, at.Socket, where)
	case errkind.Permission:
		return "run xs-admin as root (sudo xs-admin ...) or as the user xs-backupd runs as"
	case errkind.Damaged:
		return "the data is damaged on disk: xs-admin damaged lists it; it heals when a laptop that has it backs up"
	case errkind.Closed, errkind.Shutdown:
		return "xs-backupd is stopping: run the command again once it has restarted (systemctl status xs-backupd)"
	case errkind.Exists:
		return "xs-admin users and xs-admin pending show which laptop has that serial or key and which key waits; to move a student to a new laptop: xs-admin alias OLD-SERIAL NEW-SERIAL; a revoked laptop: xs-admin unrevoke SERIAL, or xs-admin approve SERIAL [--new-history] when it registers again"
	case errkind.Revoked, errkind.NotApproved:
		return "see the laptop's state with xs-admin users and xs-admin pending; xs-admin approve SERIAL approves a waiting key, xs-admin claim-code SERIAL lets a reflashed laptop take its history itself, xs-admin unrevoke SERIAL undoes a revoke"
	case errkind.NotFound:
		return "xs-admin users lists the laptops; xs-admin snapshots SERIAL lists a laptop's backups"
	}
	return ""
}
