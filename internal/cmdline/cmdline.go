// Package cmdline is what the xs-backup programs share around
// spf13/cobra: a command tree finished the same way in each (--version
// and a version command, cobra's completion command, the hidden gen-docs
// command the packages use for man pages and completions) and one rule
// from errors to exit codes:
//
//   - a command that has said what it had to say returns Exit(code);
//   - any other error its RunE returns is a failure: printed, exit 1
//     (cli.ExitFailed);
//   - every error cobra raises before RunE runs (an unknown command or
//     flag, a bad flag value, missing or extra arguments, a required flag
//     left out) is a usage error: printed with a pointer to --help, exit 2
//     (cli.ExitUsage).
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/version"
)

// exitError ends a command with an exit code; the command has already
// printed why.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Exit returns the error that ends a command with exit code code (nil for
// cli.ExitOK); the command has already printed what it had to say.
func Exit(code int) error {
	if code == cli.ExitOK {
		return nil
	}
	return exitError(code)
}

// failure is an error a command's RunE returned: the command ran and failed.
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

// Finish completes root, a program's command tree, once all its commands
// are added: --version and a version subcommand printing
// version.Long(root.Name()), the hidden gen-docs command, quiet errors
// (Run prints them) and RunE errors told from usage errors.
func Finish(root *cobra.Command) {
	prog := root.Name()
	// Not root.Version: printing it our way would take SetVersionTemplate,
	// and a text/template that runs keeps every exported method in the
	// binary (xo-backup grows by a third, on a 256 MB XO-1).
	showVersion := root.Flags().Bool("version", false, "print the version of "+prog+" and exit")
	run := root.RunE
	if run == nil { // a root that only holds commands: help, as cobra does
		run = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if *showVersion {
			fmt.Fprintln(cmd.OutOrStdout(), version.Long(prog))
			return nil
		}
		return run(cmd, args)
	}
	root.SilenceErrors, root.SilenceUsage = true, true
	root.DisableAutoGenTag = true // reproducible man pages
	root.SuggestionsMinimumDistance = 2
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version of " + prog + " and exit",
		Long: "Print the program, its version, the Go release it was built with and the\n" +
			"platform, on one line, and exit.",
		Example: "  " + prog + " version",
		Args:    NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version.Long(prog))
			return nil
		},
	})
	if gd := genDocsCommand(prog); gd != nil {
		root.AddCommand(gd)
	}
	root.InitDefaultCompletionCmd()
	markFailures(root)
}

// markFailures wraps every RunE in the tree so that the errors it returns
// are failures, told apart from cobra's usage errors.
func markFailures(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			var e exitError
			if err == nil || errors.As(err, &e) {
				return err
			}
			return failure{err}
		}
	}
	for _, sub := range c.Commands() {
		markFailures(sub)
	}
}

// Run executes the finished tree root with args and returns the exit code.
//
// With XS_BACKUP_CPUPROFILE=FILE in the environment, the run's CPU profile
// is written to FILE (go tool pprof reads it): how the benchmarks profile
// the real programs, on any architecture. XS_BACKUP_MEMPROFILE=FILE writes
// its allocation profile when it ends.
func Run(ctx context.Context, root *cobra.Command, args []string) int {
	if path := os.Getenv("XS_BACKUP_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(root.ErrOrStderr(), "%s: XS_BACKUP_CPUPROFILE: %v (running without a profile)\n", root.Name(), err)
		} else {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if path := os.Getenv("XS_BACKUP_MEMPROFILE"); path != "" {
		// Every allocation of 4 KiB sampled: what a run takes from the
		// heap (and so, collecting no garbage, from the kernel).
		runtime.MemProfileRate = 4096
		defer func() {
			f, err := os.Create(path)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				fmt.Fprintf(root.ErrOrStderr(), "%s: XS_BACKUP_MEMPROFILE: %v\n", root.Name(), err)
			}
		}()
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	var (
		code exitError
		f    failure
	)
	switch {
	case err == nil:
		return cli.ExitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &f):
		fmt.Fprintf(root.ErrOrStderr(), "%s: %v\n", root.Name(), f.err)
		return cli.ExitFailed
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(root.ErrOrStderr(), "%s: %v\nRun '%s --help' for usage.\n", root.Name(), err, cmd.CommandPath())
	return cli.ExitUsage
}

// NoArgs is cobra.NoArgs with a message that names the command; on a
// command with subcommands an argument is an unknown command, and the
// message suggests the nearest ones.
func NoArgs(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return nil
	case cmd.HasAvailableSubCommands():
		msg := fmt.Sprintf("unknown command %q for %s", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return errors.New(msg)
	}
	return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
}
