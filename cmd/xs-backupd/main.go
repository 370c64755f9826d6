// Command xs-backupd is the school server's backup daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/server"
)

const usage = `xs-backupd keeps the backups of every laptop in the school.

Usage:
  xs-backupd [--config FILE] [--listen ADDR] [--data DIR] [--metrics ADDR]
             [--page ADDR] [--registration open|approve] [--max-sessions N]
             [--log-level LEVEL]

It runs with no configuration at all (defaults below); flags override the
configuration file (default /etc/xs-backup/xs-backup.toml, optional).

Options:
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("xs-backupd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
		fmt.Fprint(os.Stderr, "\nExit codes: 0 stopped cleanly, 1 failed (the log says why), 2 usage error.\n")
	}
	def := server.DefaultConfig()
	cfgPath := fs.String("config", server.DefaultConfigPath, "TOML configuration file")
	listen := fs.String("listen", def.Listen, "UDP address for laptops")
	data := fs.String("data", def.Data, "store directory")
	metrics := fs.String("metrics", def.Metrics, "HTTP address for Prometheus /metrics (\"\" disables)")
	page := fs.String("page", def.RestorePage.Listen, "HTTP address of the students' restore page (\"\" disables)")
	reg := fs.String("registration", def.Registration, "open: laptops back up once registered; approve: staff approve each")
	maxSessions := fs.Int("max-sessions", def.Admission.MaxSessions, "the most backup sessions at once (how many run is measured, up to this)")
	gone := fs.Int("capacity", 0, "gone: how many laptops back up at once is measured now (see --max-sessions)")
	level := fs.String("log-level", def.LogLevel, "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if *gone != 0 {
		fmt.Fprintln(os.Stderr, "xs-backupd: --capacity is gone: how many laptops back up at once is measured now; bound it with --max-sessions if you must")
		return cli.ExitUsage
	}
	cfg, err := server.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xs-backupd:", err)
		return cli.ExitFailed
	}
	// Flags given on the command line win over the file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "data":
			cfg.Data = *data
		case "metrics":
			cfg.Metrics = *metrics
		case "page":
			cfg.RestorePage.Listen = *page
		case "registration":
			cfg.Registration = *reg
		case "max-sessions":
			cfg.Admission.MaxSessions = *maxSessions
		case "log-level":
			cfg.LogLevel = *level
		}
	})
	if spec := os.Getenv("XS_TEST_CRASH"); spec != "" { // crash tests only
		if cfg.Hook, err = server.CrashHook(spec); err != nil {
			fmt.Fprintln(os.Stderr, "xs-backupd:", err)
			return cli.ExitUsage
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "xs-backupd: log level %q: use debug, info, warn or error\n", cfg.LogLevel)
		return cli.ExitUsage
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := server.NewDaemon(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return cli.ExitFailed
	}
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}
