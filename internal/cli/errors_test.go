package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// Kinds become exit codes and advice here, and nowhere else.
func TestStaffExitCodesAndAdvice(t *testing.T) {
	at := StaffPlace{Data: "/library/xs-backup", Socket: "/run/xs.sock", Config: "/etc/xs-backup/xs-backup.toml"}
	for _, c := range []struct {
		err    error
		code   int
		advice string
	}{
		{nil, ExitOK, ""},
		{errors.New("disk on fire"), ExitFailed, ""},
		{fmt.Errorf("%w: no laptop serial given", errkind.ErrBadRequest), ExitUsage, ""},
		{fmt.Errorf("%w: /library/xs-backup is open in another process", errkind.ErrLocked), ExitLocked, "the store at /library/xs-backup is in use by another process (is xs-backupd running? xs-admin looked for its admin socket at /run/xs.sock"},
		{errkind.ErrOverQuota, ExitOverQuota, ""},
		{errkind.ErrIndexDamaged, ExitFailed, "xs-admin check --repair"},
		{errkind.ErrPermission, ExitFailed, "as root"},
	} {
		if got := StaffExitCode(c.err); got != c.code {
			t.Errorf("StaffExitCode(%v) = %d, want %d", c.err, got, c.code)
		}
		if got := StaffAdvice(c.err, at); !strings.Contains(got, c.advice) || (c.advice == "") != (got == "") {
			t.Errorf("StaffAdvice(%v) = %q, want %q", c.err, got, c.advice)
		}
	}
	// Through the daemon, a Locked answer means the command needs the
	// store to itself: stop the daemon, not look for its socket.
	if got := StaffAdvice(errkind.ErrLocked, StaffPlace{ViaDaemon: true}); !strings.Contains(got, "systemctl stop xs-backupd") || strings.Contains(got, "socket") {
		t.Errorf("Locked through the daemon: %q", got)
	}
	// Other programs keep exit 1 for an invalid request (a server's answer).
	if ExitCode(errkind.ErrBadRequest) != ExitFailed {
		t.Error("ExitCode made a server's BadRequest a usage error")
	}
}
