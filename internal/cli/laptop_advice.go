package cli

import "github.com/xs-backup/xs-backup/pkg/errkind"

// LaptopAdvice says what the laptop's user (a child, a teacher, whoever
// looks at the journal) should do after an error of xo-backup, by its kind
// ("" when the message says it all). The server and the library only say
// what happened; this is where the laptop's program says what to do.
func LaptopAdvice(err error) string {
	switch errkind.Of(err) {
	case errkind.NotRegistered:
		return "register this laptop with the school server: xo-backup register --server HOST"
	case errkind.NotApproved:
		return "staff must approve this laptop on the school server (xs-admin pending, then xs-admin approve SERIAL, or a claim code: xo-backup register --claim CODE); the timer backs up once it is approved"
	case errkind.Revoked:
		return "ask staff: this laptop may no longer back up to this server (xs-admin users shows why; xs-admin unrevoke SERIAL undoes a revoke)"
	case errkind.OverQuota:
		return "this laptop's backups have filled its space on the server: staff can raise its quota (xs-admin quota) or remove old backups"
	case errkind.StorageFull:
		return "the school server's disk is full: tell staff (xs-admin gc frees space); the timer tries again"
	case errkind.Busy:
		return "the server is busy: the timer comes back by itself"
	case errkind.Shutdown, errkind.Timeout:
		return "the timer tries again; nothing already sent is lost"
	}
	return ""
}
