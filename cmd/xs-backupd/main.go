// Command xs-backupd is the school server's backup daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/cmdline"
	"github.com/xs-backup/xs-backup/internal/logging"
	"github.com/xs-backup/xs-backup/internal/version"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/server"
)

func main() {
	// SIGHUP (a reload, from habit or a logrotate script) must not kill the
	// daemon mid-backup: it is ignored (the configuration is read at start).
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmdline.Run(ctx, newRootCmd(), os.Args[1:])
	stop()
	os.Exit(code)
}

const long = `xs-backupd keeps the backups of every laptop in the school: laptops
(xo-backup) connect over QUIC on UDP, staff use xs-admin through its admin
socket, Prometheus reads /metrics and students use the restore page.

It runs with no configuration at all; the configuration file (TOML,
optional at the default path) changes the defaults, and the flags below
override the file. The package installs it as /etc/xs-backup/xs-backup.toml
(the default --config), listing every setting with its default
(dist/xs-backup.toml in the source).

Logs go to standard error. Under systemd (when $JOURNAL_STREAM names
standard error) each line starts with its syslog priority and has no
timestamp (journald adds its own), so that journalctl -p err shows the
errors only:

    <3> error   <4> warning   <6> info   <7> debug

Elsewhere they are slog's text form; --log-format json writes one JSON
object per line.

Exit codes: 0 stopped cleanly (SIGTERM or SIGINT), 1 failed (the log says
why), 2 usage error. SIGHUP is ignored: the configuration is read at start
(restart the service to change it).`

const examples = `  # the defaults: data in /var/lib/xs-backup, UDP 7457, /metrics on 127.0.0.1:7458
  xs-backupd

  # the OLPC school server layout
  xs-backupd --config /etc/xs-backup/xs-backup.toml --data /library/xs-backup

  # staff approve each laptop; JSON logs for a log collector
  xs-backupd --registration approve --log-format json

  xs-backupd version`

// options are the command line's settings; those given override the
// configuration file.
type options struct {
	config, listen, data, metrics, page, registration string
	maxSessions                                       int
	logLevel, logFormat                               string
	gone                                              int
}

func newRootCmd() *cobra.Command {
	def := server.DefaultConfig()
	var o options
	cmd := &cobra.Command{
		Use:     "xs-backupd",
		Short:   "The school server's backup daemon",
		Long:    long,
		Example: examples,
		Args:    cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdline.Exit(serve(cmd, o))
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.config, "config", server.DefaultConfigPath, "TOML configuration file (\"\" for none; a missing file at the default path is fine)")
	fs.StringVar(&o.data, "data", def.Data, "store directory")
	fs.StringVar(&o.listen, "listen", def.Listen, "UDP address for laptops")
	fs.StringVar(&o.metrics, "metrics", def.Metrics, "HTTP address for Prometheus /metrics (\"\" disables it)")
	fs.StringVar(&o.page, "page", def.RestorePage.Listen, "HTTP address of the students' restore page (\"\" disables it)")
	cmdline.Enum(fs, &o.registration, "registration", def.Registration,
		"open: laptops back up once registered; approve: staff approve each (xs-admin approve)", "open", "approve")
	cmdline.IntAtLeast(fs, &o.maxSessions, "max-sessions", def.Admission.MaxSessions, 2, "the most backup sessions at once (how many run is measured, up to this)")
	cmdline.Checked(fs, &o.logLevel, "log-level", def.LogLevel, "level", "least important log level: debug, info, warn or error",
		func(s string) error {
			if _, err := logging.ParseLevel(s); err != nil {
				return errors.New("use debug, info, warn or error")
			}
			return nil
		})
	cmdline.Enum(fs, &o.logFormat, "log-format", string(logging.Auto),
		"auto: journal under systemd, text elsewhere; journal: syslog priority prefixes, no timestamp; json; text", "auto", "journal", "json", "text")
	fs.IntVar(&o.gone, "capacity", 0, "gone: see --max-sessions")
	fs.MarkHidden("capacity")
	cmdline.Finish(cmd)
	return cmd
}

// serve loads the configuration, applies the flags and runs the daemon
// until SIGTERM or SIGINT.
func serve(cmd *cobra.Command, o options) int {
	fs := cmd.Flags()
	if fs.Changed("capacity") {
		fmt.Fprintln(os.Stderr, "xs-backupd: --capacity is gone: how many laptops back up at once is measured now; bound it with --max-sessions if you must")
		return cli.ExitUsage
	}
	cfg, err := server.LoadConfig(o.config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xs-backupd:", err)
		return cli.ExitFailed
	}
	// Flags given on the command line win over the file.
	for name, set := range map[string]func(){
		"listen":       func() { cfg.Listen = o.listen },
		"data":         func() { cfg.Data = o.data },
		"metrics":      func() { cfg.Metrics = o.metrics },
		"page":         func() { cfg.RestorePage.Listen = o.page },
		"registration": func() { cfg.Registration = o.registration },
		"max-sessions": func() { cfg.Admission.MaxSessions = o.maxSessions },
		"log-level":    func() { cfg.LogLevel = o.logLevel },
	} {
		if fs.Changed(name) {
			set()
		}
	}
	if spec := os.Getenv("XS_TEST_CRASH"); spec != "" { // crash tests only
		if cfg.Hook, err = server.CrashHook(spec); err != nil {
			fmt.Fprintln(os.Stderr, "xs-backupd:", err)
			return cli.ExitUsage
		}
	}
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "xs-backupd: configuration %s: %v\n", o.config, err)
		return cli.ExitFailed
	}
	log := slog.New(logging.New(os.Stderr, logging.Options{Format: logging.Format(o.logFormat), Level: level}))
	log.Info("xs-backupd starting", "version", version.String(), "config", o.config)
	d, err := server.NewDaemon(cmd.Context(), cfg, log)
	if err != nil {
		if advice := dataAdvice(err, cfg.Data); advice != "" {
			log.Error("cannot start", "err", err, "advice", advice)
		} else {
			log.Error("cannot start", "err", err)
		}
		return cli.ExitFailed
	}
	if err := d.Run(cmd.Context()); err != nil {
		log.Error("stopped", "err", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// dataAdvice says what to do when the store's directory cannot be made or
// written ("" for other errors).
func dataAdvice(err error, data string) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Sprintf("%s is on a read-only file system: the packaged service (ProtectSystem=strict) may write only /var/lib/xs-backup and an existing /library/xs-backup; for another place, add ReadWritePaths=%s with: systemctl edit xs-backupd", data, data)
	case errors.Is(err, iofs.ErrPermission) || errors.Is(err, errkind.ErrPermission):
		return fmt.Sprintf("the data directory must exist and be writable by the user xs-backupd runs as (xs-backup, as packaged): mkdir -p %s && chown -R xs-backup: %s", data, data)
	}
	return ""
}
