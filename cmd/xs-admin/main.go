// Command xs-admin is the staff tool of xs-backup: laptops, backups, checks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/store"
)

const usage = `xs-admin manages the school's backups.

Usage:
  xs-admin [--data DIR] [--socket PATH] [--json] COMMAND [ARGS]

Commands:
  users                       every laptop: serial, name, last backup, usage
  snapshots SERIAL            a laptop's backups
  approve SERIAL              let a registered laptop back up (registration = "approve")
  revoke SERIAL               stop a laptop from backing up or restoring
  alias OLD_SERIAL NEW_SERIAL move a student's backups to a replacement laptop;
                              the new laptop then runs: xo-backup restore --all
  check [--read-data] [--repair]
                              verify the store (--read-data re-hashes every
                              chunk); --repair rebuilds the index from the pack
                              files (xs-backupd must be stopped)

While xs-backupd runs, xs-admin talks to it through its admin socket
(DATA/admin.sock); when it is stopped, xs-admin opens the store itself.

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
	var a admin.Args
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	readData := sub.Bool("read-data", false, "re-hash every chunk")
	repair := sub.Bool("repair", false, "rebuild the index from the pack files")
	subJSON := sub.Bool("json", false, "print JSON")
	if err := sub.Parse(rest); err != nil {
		return cli.ExitUsage
	}
	*jsonOut = *jsonOut || *subJSON
	pos := sub.Args()
	if len(pos) > 0 {
		a.Serial = pos[0]
	}
	if len(pos) > 1 {
		a.NewSerial = pos[1]
	}
	a.ReadData = *readData
	if cmd == "check" && *repair {
		cmd = "repair"
	}
	if cmd == "help" {
		fmt.Print(usage)
		return cli.ExitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *sock == "" {
		*sock = filepath.Join(*data, admin.DefaultSocket)
	}
	out, err := do(ctx, *data, *sock, cmd, a)
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
	case "snapshots":
		out = new([]*store.Snapshot)
	case "approve", "revoke", "alias":
		out = new(store.User)
	case "check":
		out = new(store.CheckReport)
	case "repair":
		out = new(store.RepairReport)
	default:
		return nil, fmt.Errorf("%w: unknown command %q (see xs-admin --help)", admin.ErrUsage, cmd)
	}
	if c, err := admin.Dial(sock); err == nil {
		return out, c.Do(ctx, cmd, a, out)
	}
	readOnly := cmd == "users" || cmd == "snapshots" || cmd == "check"
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
			if u.Revoked {
				state = "revoked"
			} else if !u.Approved {
				state = "waiting for approval"
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
		fmt.Fprintln(tw)
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
	case *store.RepairReport:
		fmt.Fprintf(tw, "Rebuilt the index from %d pack files: %d blobs, %d snapshots; %d damaged records skipped, %d torn bytes.\n",
			v.Packs, v.Blobs, v.Snapshots, v.Damaged, v.TornBytes)
	}
}
