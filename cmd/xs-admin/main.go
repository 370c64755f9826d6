// Command xs-admin is the staff tool of xs-backup: laptops, backups, checks.
//
// Each command is built by a constructor (commands.go) that declares its
// own flags and arguments, turns them into the staff API's typed request
// (pkg/admin), calls it through the daemon's admin socket or, with the
// daemon stopped, on the store in this process, and prints the typed
// result. Errors become a message, advice and an exit code in one place:
// run below, with internal/cli.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/version"
)

func main() {
	cobra.EnableCommandSorting = false // the commands in the order newRootCmd adds them
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := newRootCmd(a)
	root.SetArgs(argv)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	var ex exitError
	switch {
	case err == nil:
		return cli.ExitOK
	case errors.As(err, &ex):
		return int(ex) // the command said why
	case !a.started || isUsage(err):
		// Cobra's own checks (unknown command or flag, arguments, bad
		// values, required flags) fail before a command starts.
		fmt.Fprintln(stderr, "xs-admin:", err)
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return cli.ExitUsage
	}
	fmt.Fprintln(stderr, "xs-admin:", err)
	if hint := cli.StaffAdvice(err, a.place); hint != "" {
		fmt.Fprintln(stderr, "xs-admin:", hint)
	}
	return cli.StaffExitCode(err)
}

// exitError ends a command with an exit code after it printed why.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// usageError is a command line a command found wrong once started
// (options that go together or exclude each other).
type usageError struct{ error }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

const rootLong = `xs-admin manages the school's backups: the laptops, their backups, getting
documents back, and the health of the store.

While xs-backupd runs, xs-admin talks to it through its admin socket; when it
is stopped, xs-admin opens the store itself. Both are found in the daemon's
configuration file (--config, default /etc/xs-backup/xs-backup.toml, or
$XS_BACKUP_CONFIG): its data and admin_socket settings. Without that file the
store is /var/lib/xs-backup and the socket DATA/admin.sock; --data and
--socket override either (with --data naming another store than the
config's, the socket is that store's DATA/admin.sock). xs-admin never creates
a store: xs-backupd does at its first start, and a directory without one is
an error.

Every command that takes SERIAL also takes a user's ID (xs-admin users --json)
or a former serial. Every command takes --json for scripts.

Exit codes:
  0  done
  1  failed (the message says why and what to do next), or check found
     problems, or restore left out files whose data is damaged or missing
     (it restores everything else, then lists them with the older snapshot
     that holds each intact)
  2  usage error: unknown command or flag, wrong arguments, a bad value
  6  the store is in use by another process: xs-backupd (or another
     xs-admin) has it open, and either its admin socket is not where
     xs-admin looked (see --socket and the config) or the command needs the
     store to itself (check --repair, storage migrate: stop xs-backupd)`

// newRootCmd builds the xs-admin command tree.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "xs-admin",
		Short: "Manage the school's backups",
		Long:  rootLong,
		Example: `  xs-admin users
  xs-admin --config /etc/xs-backup/xs-backup.toml pending
  xs-admin restore SHC1234567 --title "science fair" --xoj /media/usb
  xs-admin gc --dry-run --json`,
		Version:           version.String(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true, // reproducible man pages
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(a.stderr)
			cmd.Help()
			return usagef("no command given")
		},
	}
	root.SetVersionTemplate(version.Long("xs-admin") + "\n")
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", defaultConfig, "the daemon's configuration file, for its data directory and admin socket (env XS_BACKUP_CONFIG)")
	pf.StringVar(&a.data, "data", "", "store directory (default: data in the config, else /var/lib/xs-backup)")
	pf.StringVar(&a.socket, "socket", "", "the daemon's admin socket (default: admin_socket in the config for its data, else DATA/admin.sock)")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON, for scripts")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddGroup(
		&cobra.Group{ID: "laptops", Title: "Laptops and backups:"},
		&cobra.Group{ID: "documents", Title: "Getting documents back:"},
		&cobra.Group{ID: "disk", Title: "Keeping the disk healthy:"},
		&cobra.Group{ID: "daemon", Title: "The daemon:"},
		&cobra.Group{ID: "offsite", Title: "Off-site (mothership):"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("laptops", usersCmd(a), pendingCmd(a), snapshotsCmd(a), approveCmd(a), claimCodeCmd(a),
		revokeCmd(a), unrevokeCmd(a), registerCmd(a), aliasCmd(a))
	add("documents", lsCmd(a), restoreCmd(a), restoreLinkCmd(a))
	add("disk", retentionCmd(a), policyCmd(a), quotaCmd(a), pinCmd(a), unpinCmd(a), gcCmd(a),
		lifecycleCmd(a), checkCmd(a), damagedCmd(a), scrubCmd(a), storageCmd(a))
	add("offsite", syncCmd(a), exportCmd(a), importCmd(a), recoveryKitCmd(a), recoverCmd(a), schoolsCmd(a))
	add("daemon", statusCmd(a))
	root.AddCommand(versionCmd(a))
	if gd := genDocsCmd(a, root); gd != nil {
		root.AddCommand(gd)
	}
	return root
}
