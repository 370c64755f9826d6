// Command xo-backup is the laptop side of xs-backup: it registers the laptop
// with the school server, backs up the Sugar Journal when the timer says so,
// lists the backups and restores them.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/cmdline"
	"github.com/xs-backup/xs-backup/internal/logging"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// memoryLimit is the Go runtime's soft memory limit for xo-backup unless
// GOMEMLIMIT says otherwise: an XO-1 has 256 MB for everything, and without
// it a first backup of a 1 GB Journal peaked at 72 MB resident (garbage the
// collector had not yet needed to reclaim) against 54 MB with it, at no
// measurable CPU cost (bench/README.md, "The XO-1 build").
//
// Under that limit the collector does not run at all unless GOGC is set: a
// run is a short process, and a nightly run with nothing new (an unchanged
// 1000-entry Journal, ~10 MB of heap) then spends no CPU on collections
// that free what the exit frees anyway. Once the heap nears the limit it
// collects as before.
const memoryLimit = 48 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(-1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmdline.Run(ctx, newRootCmd(), os.Args[1:])
	stop()
	os.Exit(code)
}

const long = `xo-backup backs up this laptop's Sugar Journal to the school server.

Register once with the school server; then a timer runs "xo-backup run"
every 5 minutes, which backs up at most once a day and otherwise ends at
once. Every run prints one line saying what it did (done, skipped and why,
busy, over quota, failed), so the journal tells why a laptop did or did not
back up.

Exit codes:

    0  done
    1  failed: the message says what to do (for restore also: some files were
       left out because their copy on the server is damaged or missing;
       everything else was restored, and the list names them)
    2  usage error
    3  skipped by design: done today, low battery, not registered, server
       unreachable, another run in progress, a reflashed laptop's empty
       Journal waiting for restore --all
    4  server busy: a slot is reserved; runs before the slot end at once with
       4, the one 10 minutes before it waits
    5  over quota: this laptop's backups fill its quota on the server; ask
       staff (xs-admin quota); nothing was lost, the last backup is still there`

// globals are the flags every command takes.
type globals struct {
	state          string
	verbose, quiet bool
}

func (g *globals) st() agent.State {
	if g.state == "" {
		return agent.State{Dir: agent.DefaultStateDir()}
	}
	return agent.State{Dir: g.state}
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	cmd := &cobra.Command{
		Use:   "xo-backup",
		Short: "Back up this laptop's Sugar Journal to the school server",
		Long:  long,
		Example: `  xo-backup register --server schoolserver   # once; pins the server's key
  xo-backup run                               # what the timer runs every 5 minutes
  xo-backup list
  xo-backup restore --to ~/restored           # everything, or name paths after DIR
  xo-backup restore --all                     # rebuild the whole Journal after a reflash`,
		Args: cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(os.Stderr)
			cmd.Usage()
			return cmdline.Exit(cli.ExitUsage)
		},
	}
	pf := cmd.PersistentFlags()
	// Defaults under the home directory are resolved when used, so that
	// help and the man pages say ~ rather than the home of whoever built them.
	pf.StringVar(&g.state, "state", "", "where the laptop's key, server pin, file cache and TLS session ticket live (default ~/.sugar/default/xs-backup)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "say more (run: data scanned and read, chunks, quota, files left out)")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print errors only (run, register and restore say nothing when all is well)")
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.verbose && g.quiet {
			return errors.New("-v (--verbose) and -q (--quiet) contradict each other: give one")
		}
		return nil
	}
	cmd.AddCommand(newRegisterCmd(g), newRunCmd(g), newListCmd(g), newRestoreCmd(g), newRestoreLinkCmd(g))
	cmdline.Finish(cmd)
	return cmd
}

// fail prints a command's error with what to do next, and returns its
// exit code. On the journal it is an error (priority 3) for journalctl -p err.
func fail(err error) int {
	prefix := ""
	if logging.OnJournal(os.Stderr) {
		prefix = logging.Prefix(slog.LevelError)
	}
	msg := strings.Replace(err.Error(), restore.ExistsHint, "", 1)
	if advice := cli.ClientAdvice(err); advice != "" {
		msg += "; " + advice
	}
	fmt.Fprintf(os.Stderr, "%sxo-backup: %s\n", prefix, msg)
	return cli.ExitCode(err)
}

func newRegisterCmd(g *globals) *cobra.Command {
	var (
		o       agent.RegisterOptions
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "register --server HOST[:PORT]",
		Short: "Register this laptop with the school server (once)",
		Long: `Register this laptop with the school server, once; it pins the server's key.

A laptop the server knows by its serial (reflashed, or prepared by staff)
gets its backups back only when staff approve its key (register prints the
key to compare) or with --claim CODE, a one-time code from staff
(xs-admin claim-code SERIAL); then run xo-backup restore --all.

Exit code 0 when it is recorded (approved or waiting: the message says which
and what staff must run), 1 when it is refused (a wrong claim code, a
revoked key, the server busy with registrations).`,
		Example: `  xo-backup register --server schoolserver
  xo-backup register --server 10.0.0.1:7457 --nickname "Ana"
  xo-backup register --server schoolserver --claim k7m2p-x9qra   # after a reflash`,
		Args: cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := agent.Register(cmd.Context(), g.st(), o)
			if err != nil {
				return cmdline.Exit(fail(err))
			}
			if jsonOut {
				cli.JSON(os.Stdout, reg)
				return nil
			}
			if g.quiet {
				return nil
			}
			fmt.Printf("Registered %s with %s. This laptop's key: %s\n", reg.Serial, reg.Server, reg.Key)
			switch {
			case reg.Continued:
				fmt.Printf("The claim code was accepted: this laptop continues %s's %d backup(s). Get the Journal back with: xo-backup restore --all\n", reg.Serial, reg.Snapshots)
			case reg.KeyChange:
				fmt.Printf("The server already knows %s with another key (a reflashed laptop?). Ask staff to check the key above and run:\n  xs-admin approve %s --key %s\nThen this laptop continues its backups; get the Journal back with: xo-backup restore --all\n", reg.Serial, reg.Serial, reg.Key)
			case !reg.Approved:
				fmt.Println("Staff must approve this laptop before it can back up (xs-admin approve " + reg.Serial + ").")
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Server, "server", "", "the school server, HOST[:PORT] (UDP port "+agent.DefaultPort+" by default)")
	cmdline.Checked(fs, &o.Serial, "serial", "", "SERIAL", "serial number (default: read from the XO's firmware)", checkSerial)
	fs.StringVar(&o.Nickname, "nickname", "", "the student's name as Sugar shows it")
	fs.StringVar(&o.Claim, "claim", "", "one-time claim code from staff: continue this serial's backups at once")
	fs.BoolVar(&jsonOut, "json", false, "print the registration as JSON")
	cmd.MarkFlagRequired("server")
	return cmd
}

// checkSerial is the server's rule for serials, checked here so that a
// typo is a usage error before anything is sent (the server checks again).
func checkSerial(sn string) error {
	if sn == "" || len(sn) > 64 {
		return errors.New("a serial is 1 to 64 characters")
	}
	for _, r := range sn {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return errors.New("a serial has only letters, digits, '-', '_' and '.'")
		}
	}
	if sn[0] == '-' || sn[0] == '.' {
		return errors.New("a serial does not start with '-' or '.'")
	}
	return nil
}

func newListCmd(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List this laptop's backups on the school server",
		Long: `List this laptop's backups on the school server, oldest first: ID, time,
files, size, and whether staff pinned it. The ID is what restore --snapshot takes.`,
		Example: `  xo-backup list
  xo-backup list --json`,
		Args: cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sns, err := agent.Snapshots(cmd.Context(), g.st())
			if err != nil {
				return cmdline.Exit(fail(err))
			}
			if jsonOut {
				if sns == nil {
					sns = []proto.SnapshotInfo{}
				}
				cli.JSON(os.Stdout, sns)
				return nil
			}
			if len(sns) == 0 {
				fmt.Println("No backups yet.")
			}
			for _, sn := range sns {
				pin := ""
				if sn.Pinned {
					pin = " pinned: " + sn.PinReason
				}
				fmt.Printf("%s  %s  %6d files  %10s%s\n", sn.ID, sn.Time.Local().Format("2006-01-02 15:04"), sn.Files, cli.Bytes(sn.Size), pin)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var (
		o         agent.RestoreOptions
		to, jpath string
		jsonOut   bool
	)
	cmd := &cobra.Command{
		Use:   "restore (--to DIR [PATH...] | --all)",
		Short: "Bring files back from the school server",
		Long: `Bring files back from a backup on the school server (the latest unless
--snapshot says which; xo-backup list shows them):

    --to DIR [PATH...]  the whole backup, or only the named paths, into DIR
                        (paths inside the Journal, as the datastore lays
                        them out: 3f/3f9c... for the entry whose UID is
                        3f9c..., 3f/3f9c.../data for its document; staff
                        list a backup's paths with
                        xs-admin ls SERIAL SNAPSHOT --files)
    --all               the whole Journal back into place (e.g. after a
                        reflash: then the newest backup from before it,
                        even if new work was backed up since); it refuses
                        a Journal that holds entries unless --force
                        (Sugar's files in a new, empty Journal are no
                        entries); the timer's backups wait meanwhile

Entries restored into the Journal itself (--all, or --to the datastore
directory Sugar uses) are listed by Sugar's Journal once Sugar starts
again: log out of Sugar and back in, or restart the laptop.

Files whose copy on the server is damaged or missing are left out (never
written in part) and listed, with an older backup that has them intact;
everything else is restored, and the exit code is then 1.`,
		Example: `  xo-backup restore --to ~/restored
  xo-backup restore --snapshot 20261031T081203Z-1a2b3c --to ~/restored 3f/3f9c.../data
  xo-backup restore --all`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case to == "" && !o.All:
				return errors.New("say where to restore to: --to DIR, or --all to bring the whole Journal back into place")
			case o.All && to == "" && len(args) > 0:
				return fmt.Errorf("--all restores the whole Journal in place: give no PATH (%q), or use --to DIR", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target, o.Paths = to, args
			if o.Target == "" && o.All {
				o.Target = cmp.Or(jpath, agent.DefaultSource())
				o.Journal = true
			}
			return cmdline.Exit(runRestore(cmd.Context(), g, o, jsonOut))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Snapshot, "snapshot", "latest", "backup ID (see xo-backup list) or latest")
	fs.StringVar(&to, "to", "", "directory to restore into")
	fs.BoolVar(&o.All, "all", false, "restore the whole Journal (into --to, or back into the Journal itself)")
	fs.BoolVar(&o.Overwrite, "force", false, "overwrite existing files")
	fs.StringVar(&jpath, "journal", "", "the Journal directory, for --all without --to (default ~/.sugar/default/datastore)")
	fs.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

// sugarRestart is said after files were restored into the Journal itself.
const sugarRestart = "The Journal lists the restored entries once Sugar starts again: log out of Sugar and back in, or restart the laptop."

func runRestore(ctx context.Context, g *globals, o agent.RestoreOptions, jsonOut bool) int {
	bar := cli.NewProgress(os.Stderr)
	o.Progress = func(p restore.Progress) { bar.Update(p.Bytes, p.TotalBytes, p.Path) }
	// Before the restore: Sugar's index is there or not whatever it writes.
	intoJournal := o.Journal || journal.IsDatastore(o.Target)
	res, sn, err := agent.Restore(ctx, g.st(), o)
	bar.Done()
	// Sugar could not be asked to list the entries: said apart from how
	// the restore went.
	var re *agent.ReindexError
	if errors.As(err, &re) {
		fmt.Fprintf(os.Stderr, "xo-backup: %v\n", re)
		err = withoutReindex(err, re)
	}
	sugar := intoJournal && res != nil && res.Files > 0 && re == nil
	if errors.Is(err, context.Canceled) {
		again := "run the same command again to fetch the rest"
		if o.All {
			again += " (with --force: the files restored whole are kept and not fetched again)"
		}
		fmt.Fprintf(os.Stderr, "xo-backup: %v; %s\n", err, again)
		if sugar {
			fmt.Fprintln(os.Stderr, sugarRestart)
		}
		return cli.ExitFailed
	}
	var de *restore.DamagedError
	if err != nil && (res == nil || !errors.As(err, &de)) {
		code := fail(err) // no summary: it would read as a success
		if sugar {
			fmt.Fprintln(os.Stderr, sugarRestart)
		}
		return code
	}
	if jsonOut {
		damaged := res.Damaged
		if damaged == nil {
			damaged = []restore.DamagedFile{}
		}
		cli.JSON(os.Stdout, map[string]any{"snapshot": sn.ID, "files": res.Files, "bytes": res.Bytes, "kept": res.Kept, "damaged": damaged, "journal_reindex": sugar})
	} else if !g.quiet {
		fmt.Printf("Restored %d files (%s) from %s into %s.\n", res.Files, cli.Bytes(res.Bytes), sn.ID, o.Target)
		if res.Kept > 0 {
			fmt.Printf("%d of them were already restored whole by the interrupted run, and were not fetched again.\n", res.Kept)
		}
		if sugar {
			fmt.Println(sugarRestart)
		}
	}
	if errors.As(err, &de) {
		fmt.Fprintf(os.Stderr, "xo-backup: %d file(s) left out: their copy on the school server is damaged or missing (everything else was restored):\n", len(de.Files))
		for _, f := range de.Files {
			name := journal.Printable(f.Path)
			if f.Dir {
				name += "/ (the whole folder)"
			}
			if f.OlderSnapshot != "" {
				fmt.Fprintf(os.Stderr, "  %s: an older copy is intact in backup %s (xo-backup restore --snapshot %s --to DIR %s)\n", name, f.OlderSnapshot, f.OlderSnapshot, name)
			} else {
				fmt.Fprintf(os.Stderr, "  %s: no older backup has it intact\n", name)
			}
		}
		fmt.Fprintln(os.Stderr, "If this laptop still has those files, its next backup repairs the server's copy; tell staff either way.")
		return cli.ExitFailed
	}
	if err != nil {
		return fail(err)
	}
	if re != nil {
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// withoutReindex is err without re, which agent.Restore joined to it.
func withoutReindex(err error, re *agent.ReindexError) error {
	if err == error(re) {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var rest []error
		for _, e := range j.Unwrap() {
			if e != error(re) {
				rest = append(rest, e)
			}
		}
		return errors.Join(rest...)
	}
	return err
}

func newRestoreLinkCmd(g *globals) *cobra.Command {
	var noOpen, jsonOut bool
	cmd := &cobra.Command{
		Use:   "restore-link",
		Short: "Print (and open) a link to the school's restore page for this laptop",
		Long: `Print, and open in the browser if there is one, a link to the school
server's restore page showing this laptop's backups: the documents of each
day, each downloadable as a Journal entry or a file. The link is signed with
this laptop's key and works for one hour.`,
		Example: `  xo-backup restore-link
  xo-backup restore-link --no-open --json`,
		Args: cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, exp, err := agent.RestoreLink(cmd.Context(), g.st(), 0)
			if err != nil {
				return cmdline.Exit(fail(err))
			}
			if jsonOut {
				cli.JSON(os.Stdout, map[string]any{"url": url, "expires": exp})
			} else {
				fmt.Printf("Your backups: %s\n(the link works until %s)\n", url, exp.Local().Format("15:04"))
			}
			if !noOpen && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
				if p, err := exec.LookPath("xdg-open"); err == nil {
					exec.Command(p, url).Start()
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noOpen, "no-open", false, "only print the link")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}
