package main

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The text form of each result (--json prints the result itself).

// newTable returns a writer that aligns tab-separated columns.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 2, 4, 2, ' ', 0) }

// pr makes text from a laptop (titles, names, paths) safe for a terminal.
func pr(s string) string { return journal.Printable(s) }

func printUsers(tw io.Writer, v []admin.UserRow) {
	fmt.Fprintln(tw, "SERIAL\tNAME\tREGISTERED\tLAST BACKUP\tSNAPSHOTS\tUSAGE\tSTATE")
	for _, u := range v {
		state := "ok"
		switch {
		case u.PendingKey != "":
			state = "new key waiting: xs-admin pending"
			if u.Revoked {
				state = "revoked; " + state
			}
		case u.Revoked:
			state = "revoked"
		case !u.Approved:
			state = "waiting for approval"
		case u.Key == "":
			state = "no laptop yet: approve or claim-code"
		}
		if !u.ClaimExpires.IsZero() {
			state += "; claim code until " + u.ClaimExpires.Local().Format("2006-01-02")
		}
		last := "never"
		if !u.LastBackup.IsZero() {
			last = u.LastBackup.Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", pr(u.Serial), pr(u.Nickname), u.Registered.Local().Format("2006-01-02"), last, u.Snapshots, cli.Bytes(u.Usage), state)
	}
}

func printSnapshots(tw io.Writer, v []*store.Snapshot) {
	fmt.Fprintln(tw, "SNAPSHOT\tTIME\tFILES\tSIZE\tSTORED\tPINNED")
	for _, s := range v {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Time.Local().Format("2006-01-02 15:04"), s.Files, cli.Bytes(s.Size), cli.Bytes(s.Stored), pr(s.PinReason))
	}
}

func printPending(tw io.Writer, v []admin.PendingRow) {
	if len(v) == 0 {
		fmt.Fprintln(tw, "Nothing waits for approval.")
		return
	}
	fmt.Fprintln(tw, "SINCE\tSERIAL\tNAME\tWHAT\tNEW KEY\tOLD KEY\tBACKUPS\tLAST BACKUP")
	for _, p := range v {
		what, old, last := "new laptop", "-", "never"
		if p.KeyChange {
			what = "key change"
			if p.OldKey != "" {
				old = p.OldKey
			}
		}
		if p.Revoked {
			what += " (revoked)"
		}
		if !p.LastBackup.IsZero() {
			last = p.LastBackup.Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Since.Local().Format("2006-01-02 15:04"), pr(p.Serial), pr(p.Nickname), what, p.NewKey, old, p.Snapshots, last)
	}
	fmt.Fprintln(tw, "Approve one with: xs-admin approve SERIAL --key NEW_KEY (the laptop printed its key when it registered)")
}

func printClaim(tw io.Writer, v admin.ClaimResult) {
	fmt.Fprintf(tw, "Claim code for %s: %s (works once, until %s)\nOn the laptop: xo-backup register --server HOST --claim %s\n", v.Serial, v.Code, v.Expires.Local().Format("2006-01-02 15:04"), v.Code)
}

func printCheck(tw io.Writer, v *store.CheckReport) {
	fmt.Fprintf(tw, "%d users, %d snapshots, %d trees, %d chunks checked (%s read).\n", v.Users, v.Snapshots, v.Trees, v.Chunks, cli.Bytes(v.BytesRead))
	for _, p := range v.Problems {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Kind, p.User, p.Snapshot, p.Ref, p.Detail)
	}
	if v.CountsNotCompared {
		fmt.Fprintln(tw, "Backups changed the index all through the check: reference counts and usage were not compared (run check again when the school is quieter).")
	}
	if v.TreesRestored > 0 {
		fmt.Fprintf(tw, "%d directory tree(s) were damaged or lost and have been written back from their copies in the index: every file below them is reachable again.\n", v.TreesRestored)
	}
	for _, md := range v.Restored {
		fmt.Fprintf(tw, "Rebuilt when the store opened: %s %s. The damaged file is kept as %s.damaged: delete it once looked at.\n", md.File, md.Detail, md.File)
	}
	if v.OK() {
		fmt.Fprintln(tw, "No problems found.")
		return
	}
	fmt.Fprintf(tw, "%d problem(s).\n", len(v.Problems))
	if v.Damaged > 0 {
		fmt.Fprintf(tw, "%d chunk(s) or tree(s) are damaged on disk (bit rot). They are recorded: the next backup of any laptop\n"+
			"that still has those files sends them again, which makes every snapshot using them whole (xs-admin damaged\n"+
			"lists them and the laptops concerned). Data only in old snapshots, whose laptops no longer have it, cannot be\n"+
			"recovered: restores write every other file and name the damaged ones. Do not run --repair for this.\n", v.Damaged)
	}
	if v.IndexProblems > 0 {
		fmt.Fprintf(tw, "%d index problem(s): the index disagrees with the pack files. Garbage collection is paused until it is\n"+
			"rebuilt: systemctl stop xs-backupd; xs-admin check --repair; systemctl start xs-backupd\n", v.IndexProblems)
	}
	for _, p := range v.Problems {
		if p.Kind == "metadata" && strings.HasPrefix(p.Ref, "users/") {
			fmt.Fprintf(tw, "A user file could not be read nor restored: its backups are kept under the serial damaged-ID (xs-admin users).\n"+
				"Give them back to the laptop: xs-admin alias damaged-ID SERIAL (the laptop's serial); then on the laptop\n"+
				"xo-backup register --server HOST, and approve the key it shows: xs-admin pending; xs-admin approve SERIAL --key KEY.\n")
			break
		}
	}
}

func printListing(tw io.Writer, v *admin.Listing) {
	fmt.Fprintf(tw, "%s, snapshot %s (%s)\n", pr(v.Serial), v.Snapshot, v.Time.Local().Format("2006-01-02 15:04"))
	if v.Files != nil {
		fmt.Fprintln(tw, "TYPE\tSIZE\tMODIFIED\tPATH")
		for _, f := range v.Files {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Type, cli.Bytes(f.Size), f.MTime.Local().Format("2006-01-02 15:04"), pr(f.Path))
		}
		return
	}
	fmt.Fprintln(tw, "TITLE\tACTIVITY\tDATE\tSIZE\tUID")
	for _, e := range v.Entries {
		date, size := "", "no file"
		if !e.Time.IsZero() {
			date = e.Time.Local().Format("2006-01-02 15:04")
		}
		if e.Size >= 0 {
			size = cli.Bytes(e.Size)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", pr(e.Title), pr(e.Activity), date, size, pr(e.UID))
	}
	fmt.Fprintf(tw, "%d entries. Restore one with: xs-admin restore %s --snapshot %s --title TITLE --xoj DIR\n", len(v.Entries), pr(v.Serial), v.Snapshot)
}

func printLink(tw io.Writer, v admin.LinkResult) {
	fmt.Fprintf(tw, "Restore page for %s (works until %s):\n%s\n", pr(v.Serial), v.Expires.Local().Format("2006-01-02 15:04"), v.URL)
}

func printRestore(tw io.Writer, v *restoreSummary) {
	fmt.Fprintf(tw, "Restored %d file(s), %s, to %s (%s).\n", v.Files, cli.Bytes(v.Bytes), v.To, v.Format)
}

func printQuota(tw io.Writer, v []admin.QuotaRow) {
	fmt.Fprintln(tw, "SERIAL\tUSED\tSOFT\tHARD\tFAIR SHARE\t")
	limit := func(n int64) string {
		if n <= 0 {
			return "none"
		}
		return cli.Bytes(n)
	}
	for _, q := range v {
		note := ""
		if q.OverSoft {
			note = "over soft quota: the nightly run deletes old snapshots"
		}
		if q.Own {
			note = strings.TrimPrefix(note+"; own quota", "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pr(q.Serial), cli.Bytes(q.Used), limit(q.Soft), limit(q.Hard), cli.Bytes(q.FairShare), note)
	}
}

func printPolicy(tw io.Writer, v admin.PolicyRow) {
	whose := "the server's policy"
	if v.Own {
		whose = "its own policy"
	}
	p := v.Policy
	fmt.Fprintf(tw, "%s uses %s: keep-last %d, keep-within-days %d, keep-daily %d, keep-weekly %d, keep-monthly %d, keep-yearly %d (-1 = all); the latest and pinned snapshots are always kept\n",
		v.Serial, whose, p.KeepLast, p.KeepWithinDays, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly)
}

func printPin(tw io.Writer, v *store.Snapshot) {
	if v.Pinned {
		fmt.Fprintf(tw, "Pinned %s (%s): %s\n", v.ID, v.Time.Local().Format("2006-01-02 15:04"), v.PinReason)
	} else {
		fmt.Fprintf(tw, "Unpinned %s (%s).\n", v.ID, v.Time.Local().Format("2006-01-02 15:04"))
	}
}

func printLifecycle(tw io.Writer, v *store.LifecycleReport) {
	what := "Lifecycle"
	if v.DryRun {
		what = "Lifecycle (dry run, nothing changed)"
	}
	fmt.Fprintf(tw, "%s in %d ms.\n", what, v.DurationMS)
	if v.Retention != nil {
		printRetention(tw, v.Retention)
	}
	if v.Quota != nil {
		for _, q := range v.Quota.Users {
			fmt.Fprintf(tw, "Quota: %s used %s of a %s soft quota; deleted %d snapshot(s), now %s%s\n", q.Serial, cli.Bytes(q.Before), cli.Bytes(q.Soft),
				len(q.Deleted), cli.Bytes(q.After), map[bool]string{true: " (still over: only the latest and pinned snapshots are left)"}[q.StillOver])
		}
	}
	if v.Expired != nil {
		fmt.Fprintf(tw, "Abandoned uploads released: %d chunks, %s, of %d laptop(s).\n", v.Expired.Holds, cli.Bytes(v.Expired.Bytes), v.Expired.Users)
		if v.Expired.Restamped > 0 {
			fmt.Fprintf(tw, "Uploads stamped while the server's clock was wrong: %d chunks, kept for their laptops to resume counting from now.\n", v.Expired.Restamped)
		}
	}
	if v.GC != nil {
		printGC(tw, v.GC)
	}
}

func printRepair(tw io.Writer, v *store.RepairReport) {
	if v.IndexMovedAside != "" {
		fmt.Fprintf(tw, "The index would not open: moved it aside to %s (delete it once check is clean).\n", v.IndexMovedAside)
	}
	fmt.Fprintf(tw, "Rebuilt the index from %d pack files: %d blobs, %d snapshots; %d damaged records left out (their neighbours kept), %d torn bytes.\n",
		v.Packs, v.Blobs, v.Snapshots, v.Damaged, v.TornBytes)
	for _, sp := range v.Spans {
		fmt.Fprintf(tw, "  %s\n", sp)
	}
	if v.TreesRestored > 0 {
		fmt.Fprintf(tw, "%d directory tree(s) no pack held intact were written back from their copies in the index.\n", v.TreesRestored)
	}
	if v.Lost > 0 {
		fmt.Fprintf(tw, "%d blob(s) that snapshots use have no intact copy: they are marked damaged and heal when a laptop\n"+
			"that has them backs up (xs-admin damaged lists them). Uploads of unfinished backups were forgotten; laptops send them again.\n", v.Lost)
	}
	if v.KeptBelowDamagedTrees > 0 {
		fmt.Fprintf(tw, "%d blob(s) no snapshot was seen to use may be below a damaged directory: gc keeps them until the laptops' backups heal it\n"+
			"(or retention deletes the snapshots that use it).\n", v.KeptBelowDamagedTrees)
	}
}

func printStatus(tw io.Writer, v *admin.StatusResult) {
	fmt.Fprintf(tw, "sessions running:\t%d of %d allowed now (%d small or restores)\n", v.Running, v.Limit, v.RunningSmall)
	fmt.Fprintf(tw, "laptops waiting:\t%d (%d connected)\n", v.Waiting, v.Held)
	fmt.Fprintf(tw, "draining:\t%.1f sessions/s, %.1f Mbit/s\n", v.DrainPerSec, v.DrainBytes*8/1e6)
	fmt.Fprintf(tw, "since start:\t%d sessions granted, %d told to come back, %d gave their place up\n", v.Granted, v.Issued, v.Expired)
	if len(v.Queue) > 0 {
		fmt.Fprintln(tw, "\nPLACE\tSERIAL\tEXPECTS\tWAITING SINCE\tSTATE")
		for i, q := range v.Queue {
			state := "connected"
			if !q.Present {
				state = "back at " + q.Due.Local().Format("15:04:05")
			}
			if q.Restore {
				state += " (restore)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, pr(v.Serials[q.User]), cli.Bytes(q.Bytes), q.Since.Local().Format("15:04:05"), state)
		}
	}
}

func printDamagedRows(tw io.Writer, v []admin.DamagedRow) {
	if len(v) == 0 {
		fmt.Fprintln(tw, "No damaged data known. (The nightly scrub and xs-admin check --read-data look for it.)")
		return
	}
	fmt.Fprintln(tw, "BLOB\tSINCE\tLAPTOPS\tREASON")
	for _, d := range v {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Ref, d.Since.Local().Format("2006-01-02 15:04"), strings.Join(d.Laptops, " "), d.Reason)
	}
	fmt.Fprintf(tw, "%d damaged. Each heals at the next backup of one of its laptops that still has the file.\n", len(v))
}

func printScrub(tw io.Writer, v *store.ScrubReport) {
	fmt.Fprintf(tw, "Scrub: read %d pack file(s), %d blobs, %s in %d ms; %d damaged found.\n", v.Packs, v.Blobs, cli.Bytes(v.BytesRead), v.DurationMS, len(v.Damaged))
	for _, d := range v.Damaged {
		fmt.Fprintf(tw, "  damaged: %s\n", d)
	}
}

// printUser prints the laptop a command changed.
func printUser(cmd string) func(io.Writer, *store.User) {
	return func(tw io.Writer, v *store.User) {
		fmt.Fprintf(tw, "%s: serial %s, approved %v, revoked %v", cmd, pr(v.Serial), v.Approved, v.Revoked)
		if len(v.Aliases) > 0 {
			fmt.Fprintf(tw, ", formerly %s", pr(strings.Join(v.Aliases, ", ")))
		}
		if len(v.PublicKey) == ed25519.PublicKeySize {
			fmt.Fprintf(tw, ", key %s", proto.Fingerprint(v.PublicKey))
		}
		fmt.Fprintln(tw)
		switch {
		case len(v.PendingKey) == ed25519.PublicKeySize:
			fmt.Fprintf(tw, "Key %s waits: check it is the one the laptop showed, then xs-admin approve %s\n", proto.Fingerprint(v.PendingKey), v.Serial)
		case len(v.PublicKey) == 0:
			fmt.Fprintf(tw, "No laptop has this serial's key yet. When it registers, approve it (xs-admin approve %s), or give it a code now: xs-admin claim-code %s\n", v.Serial, v.Serial)
		}
	}
}

func printRetention(tw io.Writer, v *store.RetentionReport) {
	verb := "Deleted"
	if v.DryRun {
		verb = "Would delete"
	}
	for _, u := range v.Users {
		for _, sn := range u.Snapshots {
			if !sn.Keep {
				fmt.Fprintf(tw, "%s\t%s\t%s\tdelete\t\n", u.Serial, sn.ID, sn.Time.Local().Format("2006-01-02 15:04"))
			} else if v.DryRun {
				fmt.Fprintf(tw, "%s\t%s\t%s\tkeep\t%s\n", u.Serial, sn.ID, sn.Time.Local().Format("2006-01-02 15:04"), strings.Join(sn.Reasons, ", "))
			}
		}
		if u.Busy {
			fmt.Fprintf(tw, "%s was backing up: nothing of it deleted; the next run does it.\n", u.Serial)
		}
	}
	fmt.Fprintf(tw, "Retention at %s: kept %d snapshot(s). %s %d.\n", v.At.Local().Format("2006-01-02 15:04"), v.Kept, verb, v.Deleted)
}

func printGC(tw io.Writer, v *store.GCReport) {
	verb := "Removed"
	if v.DryRun {
		verb = "Would remove"
	}
	fmt.Fprintf(tw, "GC: %s %d unused chunks (%s); rewrote %d pack file(s), removed %d, copying %s; %s of disk given back, in %d ms.\n",
		verb, v.BlobsDeleted, cli.Bytes(v.BytesDeleted), v.PacksRewritten, v.PacksRemoved, cli.Bytes(v.BytesCopied), cli.Bytes(v.BytesReclaimed), v.DurationMS)
	if v.KeptBelowDamagedTrees > 0 {
		fmt.Fprintf(tw, "Kept %d unused blob(s) that may be below a damaged directory (see xs-admin damaged); they go once it heals.\n", v.KeptBelowDamagedTrees)
	}
	for _, k := range v.PacksKept {
		fmt.Fprintf(tw, "Kept pack %s\n", k)
	}
}

func printGCResult(tw io.Writer, v *admin.GCResult) {
	if e := v.Expired; e != nil {
		verb := "Released"
		if e.DryRun {
			verb = "Would release"
		}
		fmt.Fprintf(tw, "%s %d upload(s) of unfinished backups (%s); laptops backing up now were left alone.\n", verb, e.Holds, cli.Bytes(e.Bytes))
	}
	if v.GCReport != nil {
		printGC(tw, v.GCReport)
	}
	if v.Expired == nil {
		fmt.Fprintln(tw, "Uploads of unfinished backups are kept for their laptop to resume (lifecycle.pending_expiry); --expire-pending releases them now.")
	}
}
