// Command xs-admin is the staff tool of xs-backup: laptops, backups, checks.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

const usage = `xs-admin manages the school's backups.

Usage:
  xs-admin [--data DIR] [--socket PATH] [--json] COMMAND [ARGS]

Laptops and backups:
  users                       every laptop, revoked ones too: serial, name,
                              last backup, usage, state
  pending                     registrations waiting for staff, oldest first:
                              new laptops and key changes (a reflashed laptop
                              asking again with a new key), with both key
                              fingerprints and the old key's last backup
  snapshots SERIAL            a laptop's backups
  approve SERIAL [--key FINGERPRINT] [--new-history]
                              let a laptop back up. If a key change waits, the
                              new key continues the serial's backups (the
                              laptop then runs: xo-backup restore --all) and
                              the old key is refused from now on; --key makes
                              sure it is the key the laptop showed;
                              --new-history starts an empty history instead
                              and keeps the old one as SERIAL.old. Approving a
                              revoked laptop undoes the revoke.
  claim-code SERIAL [--expires 7d]
                              a one-time code for a laptop about to be
                              reflashed or replaced: it registers with
                              xo-backup register --claim CODE and continues
                              the serial's backups at once, no approval needed.
                              Only a hash is kept; a new code replaces the old.
  revoke SERIAL               stop a laptop from backing up or restoring; its
                              backups stay (see unrevoke)
  unrevoke SERIAL             undo a revoke
  register SERIAL [--nickname NAME]
                              prepare a laptop by hand; the first laptop to
                              register this serial waits for approve (or gives
                              a claim code)
  alias OLD_SERIAL NEW_SERIAL move a student's backups to a replacement laptop;
                              when it registers, approve it (or give it a claim
                              code first), then it runs: xo-backup restore --all.
                              A reflashed laptop keeps its serial: no alias.

Every command that takes SERIAL also takes a user's ID (xs-admin users --json)
or a former serial.

The daemon:
  status                      admission now: sessions running and the limit
                              (measured), laptops waiting in the order they
                              will start, drain rates (needs xs-backupd)

Getting documents back:
  ls SERIAL [SNAPSHOT|latest|DATE] [--files]
                              the Journal entries of a backup (title, activity,
                              date, size, uid); --files: the raw file tree
  restore SERIAL [--snapshot ID|latest|DATE] [--entry UID]... [--title TEXT]...
          (--to DIR | --tar FILE | --xoj DIR | --raw DIR) [--overwrite]
                              a whole backup or chosen entries: --to writes the
                              Journal's files, --tar one tar file, --xoj one
                              Journal Entry Bundle per entry (open it on a
                              laptop to put it back in the Journal), --raw each
                              document as a plain file named after its title
  restore-link SERIAL         a short-lived link to the students' restore page
                              showing only this laptop's backups

Keeping the disk healthy:
  retention [SERIAL] [--at TIME] [--dry-run]
                              apply the retention policy (as if now were TIME:
                              2026-12-31, 2026-12-31T08:00:00Z or +45d) and
                              delete what it does not keep; --dry-run only shows
  policy SERIAL [--keep-within-days N] [--keep-last N] [--keep-daily N]
         [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--reset]
                              show or set a laptop's own retention policy
                              (-1 = every one; --reset: the server's policy)
  quota [SERIAL] [--soft SIZE] [--hard SIZE] [--reset]
                              usage, quotas and fair share, or set a laptop's
                              quota (SIZE like 2GiB; 0 = no limit)
  pin SERIAL SNAPSHOT --reason TEXT
                              never delete this snapshot (SNAPSHOT: an ID or latest)
  unpin SERIAL SNAPSHOT       let retention and quota treat it normally again
  gc [--dry-run] [--compact-below FRACTION] [--expire-pending]
                              delete chunks nothing uses and rewrite pack files
                              with little live data; --expire-pending first
                              releases the uploads of unfinished backups (kept
                              3 days for the laptop to resume), for a full disk
  lifecycle [--at TIME] [--dry-run]
                              the nightly run now: retention, quota, expiry of
                              abandoned uploads, gc
  check [--read-data] [--repair]
                              verify the store (--read-data re-hashes every
                              chunk and records what is damaged, so laptops
                              send it again); --repair rebuilds the index from
                              the pack files, moving a damaged index aside
                              first (xs-backupd must be stopped). Bit rot is
                              not repaired by --repair: it heals when a laptop
                              that has the file backs up.
  damaged                     blobs with no intact copy, and the laptops whose
                              next backup heals them
  scrub [--all]               read back and verify the next share of the pack
                              files now (the nightly run reads 1/30 of them);
                              --all: every pack

Every command takes --json. While xs-backupd runs, xs-admin talks to it
through its admin socket (DATA/admin.sock); when it is stopped, xs-admin
opens the store itself.

Exit codes: 0 ok, 1 failed (or check found problems, or restore left out
files whose data is damaged or missing: it restores everything else, then
lists them with the older snapshot that holds each intact), 2 usage error.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("xs-admin", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	data := fs.String("data", "/var/lib/xs-backup", "store directory")
	sock := fs.String("socket", "", "the daemon's admin socket (default DATA/admin.sock)")
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return cli.ExitUsage
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if cmd == "help" {
		fmt.Print(usage)
		return cli.ExitOK
	}
	a, pos, err := parseArgs(cmd, rest)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xs-admin:", err)
		return cli.ExitUsage
	}
	if a.json {
		*jsonOut = true
	}
	if len(pos) > 0 && a.Serial == "" {
		a.Serial = pos[0]
	}
	if len(pos) > 1 {
		if cmd == "pin" || cmd == "unpin" || cmd == "ls" || cmd == "restore-link" {
			a.Snapshot = pos[1]
		} else {
			a.NewSerial = pos[1]
		}
	}
	if cmd == "check" && a.repair {
		cmd = "repair"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *sock == "" {
		*sock = filepath.Join(*data, admin.DefaultSocket)
	}
	var out any

	if cmd == "restore" {
		out, err = runRestore(ctx, *data, *sock, a)
	} else {
		out, err = do(ctx, *data, *sock, cmd, a.Args)
	}
	var damaged *restore.DamagedError
	if errors.As(err, &damaged) && out != nil {
		// Everything else was restored: say what, then what was left out.
		if sum, ok := out.(*restoreSummary); ok {
			sum.Damaged = damaged.Files
		}
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "xs-admin:", err)
		if errors.Is(err, admin.ErrUsage) {
			return cli.ExitUsage
		}
		if hint := cli.StaffAdvice(err); hint != "" {
			fmt.Fprintln(os.Stderr, "xs-admin:", hint)
		}
		return cli.ExitFailed
	}
	if *jsonOut {
		cli.JSON(os.Stdout, out)
	} else {
		printText(cmd, out)
	}
	if rep, ok := out.(*store.CheckReport); ok && !rep.OK() {
		return cli.ExitFailed
	}
	if damaged != nil {
		printDamaged(os.Stderr, a, damaged.Files)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// printDamaged lists what a restore left out and where to find it.
func printDamaged(w io.Writer, a cmdArgs, files []restore.DamagedFile) {
	fmt.Fprintf(w, "xs-admin: %d file(s) left out: their data on the server is damaged or missing (everything else was restored):\n", len(files))
	for _, f := range files {
		name := pr(f.Path)
		if f.Dir {
			name += "/ (the whole directory)"
		}
		if f.OlderSnapshot != "" {
			fmt.Fprintf(w, "  %s: an intact copy is in the older snapshot %s (xs-admin restore %s --snapshot %s ...)\n", name, f.OlderSnapshot, pr(a.Serial), f.OlderSnapshot)
		} else {
			fmt.Fprintf(w, "  %s: no older snapshot has it intact\n", name)
		}
	}
	fmt.Fprintln(w, "Run xs-admin check --read-data to see every damaged chunk; the laptop's next backup heals what it still holds.")
}

// do runs the command through the daemon if it runs, else on the store.
func do(ctx context.Context, data, sock, cmd string, a admin.Args) (any, error) {
	var out any
	switch cmd {
	case "users":
		out = new([]admin.UserRow)
	case "pending":
		out = new([]admin.PendingRow)
	case "claim-code":
		out = new(admin.ClaimResult)
	case "snapshots":
		out = new([]*store.Snapshot)
	case "approve", "revoke", "unrevoke", "alias":
		out = new(store.User)
	case "check":
		out = new(store.CheckReport)
	case "repair":
		out = new(store.RepairReport)
	case "retention":
		out = new(store.RetentionReport)
	case "quota":
		out = new([]admin.QuotaRow)
	case "policy":
		out = new(admin.PolicyRow)
	case "pin", "unpin":
		out = new(store.Snapshot)
	case "gc":
		out = new(admin.GCResult)
	case "damaged":
		out = new([]admin.DamagedRow)
	case "status":
		out = new(admin.StatusResult)
	case "scrub":
		out = new(store.ScrubReport)
	case "lifecycle":
		out = new(store.LifecycleReport)
	case "ls":
		out = new(admin.Listing)
	case "register":
		out = new(store.User)
	case "restore-link":
		out = new(admin.LinkResult)
	default:
		return nil, fmt.Errorf("%w: unknown command %q (see xs-admin --help)", admin.ErrUsage, cmd)
	}
	if c, err := admin.Dial(sock); err == nil {
		return out, c.Do(ctx, cmd, a, out)
	}
	// check opens the store for writing: it finishes what an unclean stop
	// left (as the daemon's start would) and records the damage it finds,
	// so that laptops send those chunks again.
	readOnly := cmd == "users" || cmd == "pending" || cmd == "snapshots" || cmd == "ls" || cmd == "damaged" ||
		(cmd == "quota" && a.Soft == nil && a.Hard == nil && !a.Reset) ||
		(cmd == "policy" && a.Policy == nil && !a.Reset) ||
		(a.DryRun && (cmd == "retention" || cmd == "lifecycle"))
	open := store.Open
	if cmd == "repair" {
		open = store.OpenForRepair // works when the index itself will not open
	}
	s, err := open(ctx, data, store.Options{ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res, err := (&admin.Service{S: s}).Do(ctx, cmd, a)
	if err != nil || res == nil {
		return res, err
	}
	// The same typed result as through the daemon's socket, so that the
	// text printer knows it (it printed nothing for a stopped daemon).
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return out, json.Unmarshal(b, out)
}

// pr makes text from a laptop (titles, names, paths) safe for a terminal.
func pr(s string) string { return journal.Printable(s) }

func printText(cmd string, out any) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	switch v := out.(type) {
	case *[]admin.UserRow:
		fmt.Fprintln(tw, "SERIAL\tNAME\tREGISTERED\tLAST BACKUP\tSNAPSHOTS\tUSAGE\tSTATE")
		for _, u := range *v {
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
	case *[]*store.Snapshot:
		fmt.Fprintln(tw, "SNAPSHOT\tTIME\tFILES\tSIZE\tSTORED\tPINNED")
		for _, s := range *v {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Time.Local().Format("2006-01-02 15:04"), s.Files, cli.Bytes(s.Size), cli.Bytes(s.Stored), pr(s.PinReason))
		}
	case *store.User:
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
	case *[]admin.PendingRow:
		if len(*v) == 0 {
			fmt.Fprintln(tw, "Nothing waits for approval.")
			break
		}
		fmt.Fprintln(tw, "SINCE\tSERIAL\tNAME\tWHAT\tNEW KEY\tOLD KEY\tBACKUPS\tLAST BACKUP")
		for _, p := range *v {
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Since.Local().Format("2006-01-02 15:04"), p.Serial, p.Nickname, what, p.NewKey, old, p.Snapshots, last)
		}
		fmt.Fprintln(tw, "Approve one with: xs-admin approve SERIAL --key NEW_KEY (the laptop printed its key when it registered)")
	case *admin.ClaimResult:
		fmt.Fprintf(tw, "Claim code for %s: %s (works once, until %s)\nOn the laptop: xo-backup register --server HOST --claim %s\n", v.Serial, v.Code, v.Expires.Local().Format("2006-01-02 15:04"), v.Code)
	case *store.CheckReport:
		fmt.Fprintf(tw, "%d users, %d snapshots, %d trees, %d chunks checked (%s read).\n", v.Users, v.Snapshots, v.Trees, v.Chunks, cli.Bytes(v.BytesRead))
		for _, p := range v.Problems {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Kind, p.User, p.Snapshot, p.Ref, p.Detail)
		}
		if v.OK() {
			fmt.Fprintln(tw, "No problems found.")
			break
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
	case *admin.Listing:
		fmt.Fprintf(tw, "%s, snapshot %s (%s)\n", pr(v.Serial), v.Snapshot, v.Time.Local().Format("2006-01-02 15:04"))
		if v.Files != nil {
			fmt.Fprintln(tw, "TYPE\tSIZE\tMODIFIED\tPATH")
			for _, f := range v.Files {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Type, cli.Bytes(f.Size), f.MTime.Local().Format("2006-01-02 15:04"), pr(f.Path))
			}
			break
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
	case *admin.LinkResult:
		fmt.Fprintf(tw, "Restore page for %s (works until %s):\n%s\n", pr(v.Serial), v.Expires.Local().Format("2006-01-02 15:04"), v.URL)
	case *restoreSummary:
		fmt.Fprintf(tw, "Restored %d file(s), %s, to %s (%s).\n", v.Files, cli.Bytes(v.Bytes), v.To, v.Format)
	case *store.RetentionReport:
		printRetention(tw, v)
	case *[]admin.QuotaRow:
		fmt.Fprintln(tw, "SERIAL\tUSED\tSOFT\tHARD\tFAIR SHARE\t")
		limit := func(n int64) string {
			if n <= 0 {
				return "none"
			}
			return cli.Bytes(n)
		}
		for _, q := range *v {
			note := ""
			if q.OverSoft {
				note = "over soft quota: the nightly run deletes old snapshots"
			}
			if q.Own {
				note = strings.TrimPrefix(note+"; own quota", "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pr(q.Serial), cli.Bytes(q.Used), limit(q.Soft), limit(q.Hard), cli.Bytes(q.FairShare), note)
		}
	case *admin.PolicyRow:
		whose := "the server's policy"
		if v.Own {
			whose = "its own policy"
		}
		p := v.Policy
		fmt.Fprintf(tw, "%s uses %s: keep-last %d, keep-within-days %d, keep-daily %d, keep-weekly %d, keep-monthly %d, keep-yearly %d (-1 = all); the latest and pinned snapshots are always kept\n",
			v.Serial, whose, p.KeepLast, p.KeepWithinDays, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly)
	case *store.Snapshot:
		if v.Pinned {
			fmt.Fprintf(tw, "Pinned %s (%s): %s\n", v.ID, v.Time.Local().Format("2006-01-02 15:04"), v.PinReason)
		} else {
			fmt.Fprintf(tw, "Unpinned %s (%s).\n", v.ID, v.Time.Local().Format("2006-01-02 15:04"))
		}
	case *store.GCReport:
		printGC(tw, v)
	case *admin.GCResult:
		printGCResult(tw, v)
	case *store.LifecycleReport:
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
		}
		if v.GC != nil {
			printGC(tw, v.GC)
		}
	case *store.RepairReport:
		if v.IndexMovedAside != "" {
			fmt.Fprintf(tw, "The index would not open: moved it aside to %s (delete it once check is clean).\n", v.IndexMovedAside)
		}
		fmt.Fprintf(tw, "Rebuilt the index from %d pack files: %d blobs, %d snapshots; %d damaged records left out (their neighbours kept), %d torn bytes.\n",
			v.Packs, v.Blobs, v.Snapshots, v.Damaged, v.TornBytes)
		for _, sp := range v.Spans {
			fmt.Fprintf(tw, "  %s\n", sp)
		}
		if v.Lost > 0 {
			fmt.Fprintf(tw, "%d blob(s) that snapshots use have no intact copy: they are marked damaged and heal when a laptop\n"+
				"that has them backs up (xs-admin damaged lists them). Uploads of unfinished backups were forgotten; laptops send them again.\n", v.Lost)
		}
	case *admin.StatusResult:
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
	case *[]admin.DamagedRow:
		if len(*v) == 0 {
			fmt.Fprintln(tw, "No damaged data known. (The nightly scrub and xs-admin check --read-data look for it.)")
			break
		}
		fmt.Fprintln(tw, "BLOB\tSINCE\tLAPTOPS\tREASON")
		for _, d := range *v {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Ref, d.Since.Local().Format("2006-01-02 15:04"), strings.Join(d.Laptops, " "), d.Reason)
		}
		fmt.Fprintf(tw, "%d damaged. Each heals at the next backup of one of its laptops that still has the file.\n", len(*v))
	case *store.ScrubReport:
		fmt.Fprintf(tw, "Scrub: read %d pack file(s), %d blobs, %s in %d ms; %d damaged found.\n", v.Packs, v.Blobs, cli.Bytes(v.BytesRead), v.DurationMS, len(v.Damaged))
		for _, d := range v.Damaged {
			fmt.Fprintf(tw, "  damaged: %s\n", d)
		}
	}
}

// cmdArgs are the parsed arguments of one command.
type cmdArgs struct {
	admin.Args
	json, repair, overwrite bool
	to, tar, xoj, raw       string
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseArgs reads a command's flags, which may come before, between or
// after its positional arguments.
func parseArgs(cmd string, args []string) (cmdArgs, []string, error) {
	var a cmdArgs
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&a.json, "json", false, "print JSON")
	fs.BoolVar(&a.ReadData, "read-data", false, "")
	fs.BoolVar(&a.repair, "repair", false, "")
	fs.BoolVar(&a.DryRun, "dry-run", false, "")
	fs.BoolVar(&a.Reset, "reset", false, "")
	fs.StringVar(&a.At, "at", "", "")
	fs.StringVar(&a.Serial, "user", "", "")
	fs.StringVar(&a.Reason, "reason", "", "")
	fs.Float64Var(&a.CompactBelow, "compact-below", 0, "")
	fs.BoolVar(&a.Files, "files", false, "")
	fs.StringVar(&a.Nickname, "nickname", "", "")
	fs.StringVar(&a.Key, "key", "", "")
	fs.BoolVar(&a.NewHistory, "new-history", false, "")
	fs.StringVar(&a.Expires, "expires", "", "")
	fs.StringVar(&a.Snapshot, "snapshot", "", "")
	fs.Var((*listFlag)(&a.Entries), "entry", "")
	fs.Var((*listFlag)(&a.Titles), "title", "")
	fs.StringVar(&a.to, "to", "", "")
	fs.StringVar(&a.tar, "tar", "", "")
	fs.StringVar(&a.xoj, "xoj", "", "")
	fs.StringVar(&a.raw, "raw", "", "")
	fs.BoolVar(&a.overwrite, "overwrite", false, "")
	fs.BoolVar(&a.ExpirePending, "expire-pending", false, "")
	fs.BoolVar(&a.All, "all", false, "")
	var soft, hard string
	fs.StringVar(&soft, "soft", "", "")
	fs.StringVar(&hard, "hard", "", "")
	var p store.Policy
	keep := map[string]*int{"keep-last": &p.KeepLast, "keep-within-days": &p.KeepWithinDays, "keep-daily": &p.KeepDaily,
		"keep-weekly": &p.KeepWeekly, "keep-monthly": &p.KeepMonthly, "keep-yearly": &p.KeepYearly}
	for name, v := range keep {
		fs.IntVar(v, name, 0, "")
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return a, nil, fmt.Errorf("%s: %v (see xs-admin --help)", cmd, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	for _, v := range []struct {
		text string
		dst  **int64
	}{{soft, &a.Soft}, {hard, &a.Hard}} {
		if v.text == "" {
			continue
		}
		n, err := cli.ParseSize(v.text)
		if err != nil {
			return a, nil, err
		}
		*v.dst = &n
	}
	fs.Visit(func(f *flag.Flag) {
		if _, ok := keep[f.Name]; ok {
			a.Policy = &p
		}
	})
	return a, pos, nil
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

// restoreSummary is what `xs-admin restore` prints.
type restoreSummary struct {
	Serial string `json:"serial"`
	To     string `json:"to"`
	Format string `json:"format"`
	Files  int64  `json:"files"`
	Bytes  int64  `json:"bytes"`
	// Damaged lists what was left out (the exit code is then 1).
	Damaged []restore.DamagedFile `json:"damaged,omitempty"`
}

// runRestore exports from the daemon (or the stopped store) and writes the
// result where staff asked.
func runRestore(ctx context.Context, data, sock string, a cmdArgs) (*restoreSummary, error) {
	var dest string
	n := 0
	for _, v := range []struct{ dir, format string }{{a.to, admin.FormatTar}, {a.tar, admin.FormatTar}, {a.xoj, admin.FormatXOJ}, {a.raw, admin.FormatRaw}} {
		if v.dir != "" {
			dest, a.Format = v.dir, v.format
			n++
		}
	}
	if n != 1 || a.Serial == "" {
		return nil, fmt.Errorf("%w: xs-admin restore SERIAL [--snapshot ID|latest|DATE] [--entry UID]... [--title TEXT]... and one of --to DIR, --tar FILE, --xoj DIR, --raw DIR", admin.ErrUsage)
	}
	sum := &restoreSummary{Serial: a.Serial, To: dest, Format: a.Format}
	if a.tar != "" {
		sum.Format = "tar file"
	}
	bar := cli.NewProgress(os.Stderr)
	defer bar.Done()
	sink := func(total int64, r io.Reader) error {
		if a.tar != "" {
			n, err := writeFileAtomic(a.tar, a.overwrite, &progressReader{r: r, total: total, bar: bar})
			sum.Bytes = n
			return err
		}
		st, err := restore.ExtractTar(r, dest, a.overwrite, func(n int64, name string) { bar.Update(n, total, name) })
		sum.Files, sum.Bytes = st.Files, st.Bytes
		return err
	}
	if c, err := admin.Dial(sock); err == nil {
		return sum, c.Export(ctx, a.Args, sink)
	}
	s, err := store.Open(ctx, data, store.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	pipeR, pw := io.Pipe()
	started := make(chan int64, 1)
	done := make(chan error, 1)
	go func() {
		err := (&admin.Service{S: s}).Export(ctx, a.Args, func(total int64) { started <- total }, pw)
		close(started)
		var de *restore.DamagedError
		if errors.As(err, &de) {
			pw.Close() // the archive is complete without the damaged files
		} else {
			pw.CloseWithError(err)
		}
		done <- err
	}()
	total, ok := <-started
	if !ok {
		io.Copy(io.Discard, pipeR)
		return nil, <-done
	}
	serr := sink(total, pipeR)
	if serr != nil {
		pipeR.CloseWithError(serr) // stops the export
	} else {
		io.Copy(io.Discard, pipeR)
	}
	if err := <-done; err != nil {
		return sum, err
	}
	return sum, serr
}

// writeFileAtomic writes r to name through a temporary file in the same
// directory, moved into place only when complete: never a cut archive
// under the name staff asked for.
func writeFileAtomic(name string, overwrite bool, r io.Reader) (int64, error) {
	if !overwrite {
		if _, err := os.Lstat(name); err == nil {
			return 0, fmt.Errorf("%s exists (--overwrite replaces it)", name)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".xs-restore-*.tmp")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if overwrite {
			err = os.Rename(f.Name(), name)
		} else if err = os.Link(f.Name(), name); err == nil {
			os.Remove(f.Name())
		}
	}
	if err != nil {
		os.Remove(f.Name())
		return n, err
	}
	return n, nil
}

// progressReader updates a progress bar as bytes are read.
type progressReader struct {
	r     io.Reader
	n     int64
	total int64
	bar   *cli.Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.bar.Update(p.n, p.total, "")
	return n, err
}
