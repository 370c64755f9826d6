// Command xo-backup is the laptop side of xs-backup: it registers the laptop
// with the school server, backs up the Sugar Journal when the timer says so,
// lists the backups and restores them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

const usage = `xo-backup backs up this laptop's Sugar Journal to the school server.

Usage:
  xo-backup [--state DIR] register --server HOST[:PORT] [--serial SN] [--nickname NAME] [--claim CODE]
  xo-backup [--state DIR] run [--source DIR] [--force] [--jitter DUR] [--idle-timeout DUR] [--json]
  xo-backup [--state DIR] list [--json]
  xo-backup [--state DIR] restore [--snapshot ID|latest] (--to DIR [PATH...] | --all [--force])
  xo-backup [--state DIR] restore-link [--no-open] [--json]

Commands:
  register  register with the school server (once); pins the server's key.
            A laptop the server knows by its serial (reflashed, or prepared
            by staff) gets its backups back only when staff approve its key
            (it prints the key to compare) or with --claim CODE, a one-time
            code from staff (xs-admin claim-code SERIAL); then run
            xo-backup restore --all
  run       back up now if due: the timer runs this every 5 minutes
  list      list this laptop's backups on the server
  restore   bring files back: chosen paths into DIR, or --all to rebuild the
            whole Journal in place (e.g. after a reflash)
  restore-link
            print (and open in the browser, if there is one) a link to the
            school's restore page showing this laptop's backups; it works
            for one hour

Global options:
  --state DIR   where the laptop's key, server pin and file cache live
                (default ~/.sugar/default/xs-backup)

Exit codes:
  0 done   1 failed (the message says what to do; for restore also: some
    files were left out because their copy on the server is damaged or
    missing — everything else was restored, and the list names them)
  2 usage error
  3 skipped by design (done today, low battery, not registered, server
    unreachable, another run in progress)   4 server busy: a slot is reserved
    (runs before the slot end at once with 4; the one 10 minutes before it waits)
  5 over quota: this laptop's backups fill its quota on the server; ask
    staff (xs-admin quota) — nothing was lost, the last backup is still there
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	global := flag.NewFlagSet("xo-backup", flag.ContinueOnError)
	global.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	stateDir := global.String("state", agent.DefaultStateDir(), "state directory")
	if err := global.Parse(args); err != nil {
		return helpOr(err)
	}
	if global.NArg() == 0 {
		fmt.Fprint(os.Stderr, usage)
		return cli.ExitUsage
	}
	st := agent.State{Dir: *stateDir}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := global.Arg(0), global.Args()[1:]
	switch cmd {
	case "register":
		return cmdRegister(ctx, st, rest)
	case "run":
		return cmdRun(ctx, st, rest)
	case "list":
		return cmdList(ctx, st, rest)
	case "restore":
		return cmdRestore(ctx, st, rest)
	case "restore-link":
		return cmdRestoreLink(ctx, st, rest)
	case "help":
		fmt.Print(usage)
		return cli.ExitOK
	}
	fmt.Fprintf(os.Stderr, "xo-backup: unknown command %q\n\n%s", cmd, usage)
	return cli.ExitUsage
}

func helpOr(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitOK
	}
	return cli.ExitUsage
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "xo-backup:", err)
	return cli.ExitFailed
}

func cmdRegister(ctx context.Context, st agent.State, args []string) int {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	server := fs.String("server", "", "school server, HOST[:PORT] (UDP port 7457 by default)")
	serial := fs.String("serial", "", "serial number (default: read from the XO's firmware)")
	nick := fs.String("nickname", "", "the student's name as Sugar shows it")
	claim := fs.String("claim", "", "one-time claim code from staff: continue this serial's backups at once")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return helpOr(err)
	}
	reg, err := agent.Register(ctx, st, agent.RegisterOptions{Server: *server, Serial: *serial, Nickname: *nick, Claim: *claim})
	if err != nil {
		return fail(err)
	}
	if *jsonOut {
		cli.JSON(os.Stdout, reg)
		return cli.ExitOK
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
	return cli.ExitOK
}

func cmdRun(ctx context.Context, st agent.State, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	source := fs.String("source", agent.DefaultSource(), "directory to back up")
	force := fs.Bool("force", false, "back up even if already done today or on low battery")
	jitter := fs.Duration("jitter", 0, "sleep a random time up to this first (for cron, which has no random delay)")
	idle := fs.Duration("idle-timeout", 60*time.Second, "give up on a server that stopped answering after this long (the next run resumes)")
	jsonOut := fs.Bool("json", false, "print one JSON summary")
	if err := fs.Parse(args); err != nil {
		return helpOr(err)
	}
	if *jitter > 0 {
		select {
		case <-time.After(rand.N(*jitter)):
		case <-ctx.Done():
			return cli.ExitFailed
		}
	}
	bar := cli.NewProgress(os.Stderr)
	res, err := agent.Run(ctx, st, agent.RunOptions{Source: *source, Force: *force, IdleTimeout: *idle,
		Progress: func(p backup.Progress) { bar.Update(p.BytesRead, p.BytesScanned, p.Path) }})
	bar.Done()
	if *jsonOut {
		out := map[string]any{"outcome": "failed"}
		if res != nil {
			out["outcome"], out["reason"] = res.Outcome, res.Reason
			if !res.Slot.IsZero() {
				out["slot"] = res.Slot
			}
			out["wire_bytes_sent"], out["wire_bytes_received"] = res.WireSent, res.WireReceived
			if b := res.Backup; b != nil {
				for k, v := range map[string]any{"snapshot": b.Snapshot, "files": b.Files, "bytes_scanned": b.BytesScanned,
					"bytes_read": b.BytesRead, "bytes_sent": b.BytesSent, "chunks_new": b.ChunksNew,
					"chunks_total": b.ChunksTotal, "duration_ms": b.DurationMS} {
					out[k] = v
				}
			}
		}
		if err != nil {
			out["error"], out["error_kind"] = err.Error(), proto.KindOf(err).String()
		}
		cli.JSON(os.Stdout, out)
	}
	if err != nil {
		if !*jsonOut {
			fail(err)
		}
		return cli.ExitCode(err)
	}
	switch res.Outcome {
	case agent.Skipped:
		if !*jsonOut && cli.IsTerminal(os.Stdout) {
			fmt.Println("Skipped:", res.Reason)
		}
		return cli.ExitSkipped
	case agent.Later:
		if !*jsonOut && cli.IsTerminal(os.Stdout) {
			fmt.Println(res.Reason)
		}
		return cli.ExitLater
	}
	if !*jsonOut {
		b := res.Backup
		fmt.Printf("Backup %s: %d files, %s scanned, %s read, %s sent (%s on the wire).\n", b.Snapshot, b.Files,
			cli.Bytes(b.BytesScanned), cli.Bytes(b.BytesRead), cli.Bytes(b.BytesSent), cli.Bytes(res.WireSent))
	}
	return cli.ExitOK
}

func cmdList(ctx context.Context, st agent.State, args []string) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return helpOr(err)
	}
	sns, err := agent.Snapshots(ctx, st)
	if err != nil {
		return fail(err)
	}
	if *jsonOut {
		if sns == nil {
			sns = []proto.SnapshotInfo{}
		}
		cli.JSON(os.Stdout, sns)
		return cli.ExitOK
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
	return cli.ExitOK
}

func cmdRestore(ctx context.Context, st agent.State, args []string) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	snap := fs.String("snapshot", "latest", "snapshot ID (see list) or latest")
	to := fs.String("to", "", "directory to restore into")
	all := fs.Bool("all", false, "restore the whole Journal (into --to, or back into the Journal itself)")
	force := fs.Bool("force", false, "overwrite existing files")
	source := fs.String("journal", agent.DefaultSource(), "the Journal directory, for --all without --to")
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return helpOr(err)
	}
	target := *to
	if target == "" && *all {
		target = *source
	}
	bar := cli.NewProgress(os.Stderr)
	res, sn, err := agent.Restore(ctx, st, agent.RestoreOptions{Snapshot: *snap, Target: target, Paths: fs.Args(),
		All: *all, Overwrite: *force, Progress: func(p restore.Progress) { bar.Update(p.Bytes, p.TotalBytes, p.Path) }})
	bar.Done()
	if err != nil && res == nil {
		return fail(err)
	}
	if *jsonOut {
		damaged := res.Damaged
		if damaged == nil {
			damaged = []restore.DamagedFile{}
		}
		cli.JSON(os.Stdout, map[string]any{"snapshot": sn.ID, "files": res.Files, "bytes": res.Bytes, "damaged": damaged})
	} else {
		fmt.Printf("Restored %d files (%s) from %s into %s.\n", res.Files, cli.Bytes(res.Bytes), sn.ID, target)
	}
	var de *restore.DamagedError
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
	return cli.ExitOK
}

func cmdRestoreLink(ctx context.Context, st agent.State, args []string) int {
	fs := flag.NewFlagSet("restore-link", flag.ContinueOnError)
	noOpen := fs.Bool("no-open", false, "only print the link")
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return helpOr(err)
	}
	url, exp, err := agent.RestoreLink(ctx, st, 0)
	if err != nil {
		return fail(err)
	}
	if *jsonOut {
		cli.JSON(os.Stdout, map[string]any{"url": url, "expires": exp})
	} else {
		fmt.Printf("Your backups: %s\n(the link works until %s)\n", url, exp.Local().Format("15:04"))
	}
	if !*noOpen && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
		if p, err := exec.LookPath("xdg-open"); err == nil {
			exec.Command(p, url).Start()
		}
	}
	return cli.ExitOK
}
