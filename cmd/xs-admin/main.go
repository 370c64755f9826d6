// Command xs-admin is the staff tool of xs-backup: laptops, backups, checks.
package main

import (
	"context"
	"crypto/ed25519"
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
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/proto"
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
  gc [--dry-run] [--compact-below FRACTION]
                              delete chunks nothing uses and rewrite pack files
                              with little live data
  lifecycle [--at TIME] [--dry-run]
                              the nightly run now: retention, quota, expiry of
                              abandoned uploads, gc
  check [--read-data] [--repair]
                              verify the store (--read-data re-hashes every
                              chunk); --repair rebuilds the index from the pack
                              files (xs-backupd must be stopped)

Every command takes --json. While xs-backupd runs, xs-admin talks to it
through its admin socket (DATA/admin.sock); when it is stopped, xs-admin
opens the store itself.

Exit codes: 0 ok, 1 failed (or check found problems), 2 usage error.
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
		out, err = restore(ctx, *data, *sock, a)
	} else {
		out, err = do(ctx, *data, *sock, cmd, a.Args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xs-admin:", err)
		if errors.Is(err, admin.ErrUsage) {
			return cli.ExitUsage
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
	return cli.ExitOK
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
		out = new(store.GCReport)
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
	readOnly := cmd == "users" || cmd == "pending" || cmd == "snapshots" || cmd == "check" || cmd == "ls" ||
		(cmd == "quota" && a.Soft == nil && a.Hard == nil && !a.Reset) ||
		(cmd == "policy" && a.Policy == nil && !a.Reset) ||
		(a.DryRun && (cmd == "retention" || cmd == "gc" || cmd == "lifecycle"))
	s, err := store.Open(ctx, data, store.Options{ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return (&admin.Service{S: s}).Do(ctx, cmd, a)
}

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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", u.Serial, u.Nickname, u.Registered.Local().Format("2006-01-02"), last, u.Snapshots, cli.Bytes(u.Usage), state)
		}
	case *[]*store.Snapshot:
		fmt.Fprintln(tw, "SNAPSHOT\tTIME\tFILES\tSIZE\tSTORED\tPINNED")
		for _, s := range *v {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Time.Local().Format("2006-01-02 15:04"), s.Files, cli.Bytes(s.Size), cli.Bytes(s.Stored), s.PinReason)
		}
	case *store.User:
		fmt.Fprintf(tw, "%s: serial %s, approved %v, revoked %v", cmd, v.Serial, v.Approved, v.Revoked)
		if len(v.Aliases) > 0 {
			fmt.Fprintf(tw, ", formerly %s", strings.Join(v.Aliases, ", "))
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
		} else {
			fmt.Fprintf(tw, "%d problem(s). Run xs-admin check --repair (with xs-backupd stopped) to rebuild the index.\n", len(v.Problems))
		}
	case *admin.Listing:
		fmt.Fprintf(tw, "%s, snapshot %s (%s)\n", v.Serial, v.Snapshot, v.Time.Local().Format("2006-01-02 15:04"))
		if v.Files != nil {
			fmt.Fprintln(tw, "TYPE\tSIZE\tMODIFIED\tPATH")
			for _, f := range v.Files {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Type, cli.Bytes(f.Size), f.MTime.Local().Format("2006-01-02 15:04"), f.Path)
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Title, e.Activity, date, size, e.UID)
		}
		fmt.Fprintf(tw, "%d entries. Restore one with: xs-admin restore %s --snapshot %s --title TITLE --xoj DIR\n", len(v.Entries), v.Serial, v.Snapshot)
	case *admin.LinkResult:
		fmt.Fprintf(tw, "Restore page for %s (works until %s):\n%s\n", v.Serial, v.Expires.Local().Format("2006-01-02 15:04"), v.URL)
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", q.Serial, cli.Bytes(q.Used), limit(q.Soft), limit(q.Hard), cli.Bytes(q.FairShare), note)
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
		fmt.Fprintf(tw, "Rebuilt the index from %d pack files: %d blobs, %d snapshots; %d damaged records skipped, %d torn bytes.\n",
			v.Packs, v.Blobs, v.Snapshots, v.Damaged, v.TornBytes)
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
		fmt.Fprintf(tw, "Kept pack %s; run xs-admin check --read-data\n", k)
	}
}

// restoreSummary is what `xs-admin restore` prints.
type restoreSummary struct {
	Serial string `json:"serial"`
	To     string `json:"to"`
	Format string `json:"format"`
	Files  int64  `json:"files"`
	Bytes  int64  `json:"bytes"`
}

// restore exports from the daemon (or the stopped store) and writes the
// result where staff asked.
func restore(ctx context.Context, data, sock string, a cmdArgs) (*restoreSummary, error) {
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
			flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if a.overwrite {
				flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(a.tar, flag, 0o644)
			if err != nil {
				return fmt.Errorf("%w (--overwrite replaces it)", err)
			}
			n, err := io.Copy(f, &progressReader{r: r, total: total, bar: bar})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			sum.Bytes = n
			return err
		}
		st, err := backup.ExtractTar(r, dest, a.overwrite, func(n int64, name string) { bar.Update(n, total, name) })
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
	pr, pw := io.Pipe()
	started := make(chan int64, 1)
	go func() {
		err := (&admin.Service{S: s}).Export(ctx, a.Args, func(total int64) { started <- total }, pw)
		close(started)
		pw.CloseWithError(err)
	}()
	total, ok := <-started
	if !ok {
		_, err := io.Copy(io.Discard, pr)
		return nil, err
	}
	return sum, sink(total, pr)
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
