package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/cmdline"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

type runOptions struct {
	agent.RunOptions
	jitter  time.Duration
	jsonOut bool
}

func newRunCmd(g *globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Back up now if due (the timer runs this every 5 minutes)",
		Long: `Back up the Journal if it is due: at most once a day, not on low battery,
and when the school server gives this laptop a place. Most runs end at once
without touching the network.

Each run prints one line on standard output saying what it did, also under
the timer (for the journal):

    done: backup ID, N files, X sent, duration   (exit 0)
    skipped: why                                 (exit 3: done today, battery,
                                                  not registered, unreachable,
                                                  another run in progress, an
                                                  empty Journal after a reflash
                                                  waiting for restore --all)
    busy: come back at T                         (exit 4)

or one line on standard error when it could not back up:

    xo-backup: over quota: ...                   (exit 5)
    xo-backup: failed: why; what to do           (exit 1)

--force backs up now: even if a backup already completed today, on low
battery, or before the time a busy server reserved for this laptop (the run
asks the server again, which may still keep it waiting or give it another
time: exit 4). After a reflash it also backs up the empty Journal that runs
otherwise skip: that backup becomes this laptop's latest, and
xo-backup restore --all still brings back the newest backup from before
the reflash.

-q prints only the standard error lines, -v says more; --json prints one
JSON object instead.`,
		Example: `  xo-backup run                          # what the timer runs
  xo-backup run --force -v               # now, even if done today, on battery or before a reserved time
  */5 * * * * xo-backup run --jitter 1m  # in cron, which has no random delay`,
		Args: cmdline.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdline.Exit(runRun(cmd.Context(), g, o))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Source, "source", "", "directory to back up (default the Journal, ~/.sugar/default/datastore)")
	fs.BoolVar(&o.Force, "force", false, "back up now: even if already done today, on low battery or before the time the server reserved; after a reflash, also the empty Journal")
	fs.DurationVar(&o.jitter, "jitter", 0, "sleep a random time up to this first (for cron, which has no random delay)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 60*time.Second, "give up on a server that stopped answering after this long (the next run resumes)")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON summary instead of the line")
	return cmd
}

func runRun(ctx context.Context, g *globals, o runOptions) int {
	if o.jitter < 0 || o.IdleTimeout < 0 {
		fmt.Fprintln(os.Stderr, "xo-backup: --jitter and --idle-timeout must not be negative")
		return cli.ExitUsage
	}
	if o.jitter > 0 {
		select {
		case <-time.After(rand.N(o.jitter)):
		case <-ctx.Done():
			return cli.ExitFailed
		}
	}
	var bar *cli.Progress
	if !g.quiet {
		bar = cli.NewProgress(os.Stderr)
		o.Progress = func(p backup.Progress) { bar.Update(p.BytesRead, p.BytesScanned, p.Path) }
	}
	res, err := agent.Run(ctx, g.st(), o.RunOptions)
	if bar != nil {
		bar.Done()
	}
	if o.jsonOut {
		cli.JSON(os.Stdout, runJSON(res, err))
	} else if err != nil {
		if !errors.Is(err, proto.ErrOverQuota) { // its message starts "over quota:"
			err = fmt.Errorf("failed: %w", err)
		}
		fail(err)
	} else if !g.quiet {
		summary(os.Stdout, res, g.verbose)
	}
	switch {
	case err != nil:
		return cli.ExitCode(err)
	case res.Outcome == agent.Skipped:
		return cli.ExitSkipped
	case res.Outcome == agent.Later:
		return cli.ExitLater
	}
	return cli.ExitOK
}

// summary writes the one line that says what a run that did not fail did
// (and with verbose, the files it left out).
func summary(w io.Writer, res *agent.RunResult, verbose bool) {
	switch res.Outcome {
	case agent.Skipped:
		why := res.Reason
		switch res.Skip {
		case agent.SkipNotRegistered:
			why += "; " + cli.ClientAdvice(agent.ErrNotRegistered)
		case agent.SkipRestorePending:
			why += " (xo-backup restore --all; or xo-backup run --force to back up the empty Journal anyway)"
		}
		fmt.Fprintln(w, "skipped:", why)
		return
	case agent.Later:
		fmt.Fprintf(w, "busy: come back at %s (the school server reserved this laptop a place then; runs before it end at once)\n",
			res.Slot.Local().Format("15:04:05"))
		return
	}
	b := res.Backup
	d := b.Duration
	if d == 0 {
		d = time.Duration(b.DurationMS) * time.Millisecond
	}
	var line strings.Builder
	fmt.Fprintf(&line, "done: backup %s, %d files, %s sent", b.Snapshot, b.Files, cli.Bytes(b.BytesSent))
	if verbose {
		fmt.Fprintf(&line, " (%d of %d chunks new), %s scanned, %s read, %s on the wire", b.ChunksNew, b.ChunksTotal,
			cli.Bytes(b.BytesScanned), cli.Bytes(b.BytesRead), cli.Bytes(res.WireSent))
		if res.RoundTrips > 0 {
			fmt.Fprintf(&line, " in %d requests", res.RoundTrips)
		}
	}
	fmt.Fprintf(&line, ", %s", d.Round(100*time.Millisecond))
	if verbose && res.Quota.Hard > 0 {
		fmt.Fprintf(&line, ", quota %s of %s used", cli.Bytes(res.Quota.Used), cli.Bytes(res.Quota.Hard))
	}
	if n := len(b.Skipped); n > 0 {
		fmt.Fprintf(&line, "; %d file(s) left out (they vanished or could not be read; the next run tries again)", n)
	}
	fmt.Fprintln(w, line.String())
	if verbose {
		for _, p := range b.Skipped {
			fmt.Fprintln(w, "  left out:", journal.Printable(p)) // a name may hold line breaks and escapes
		}
	}
}

// runJSON is run --json's one object.
func runJSON(res *agent.RunResult, err error) map[string]any {
	out := map[string]any{"outcome": "failed"}
	if res != nil {
		out["outcome"], out["reason"] = res.Outcome, res.Reason
		if res.Skip != "" {
			out["skip"] = res.Skip
		}
		if !res.Slot.IsZero() {
			out["slot"] = res.Slot
		}
		out["wire_bytes_sent"], out["wire_bytes_received"], out["round_trips"] = res.WireSent, res.WireReceived, res.RoundTrips
		if b := res.Backup; b != nil {
			for k, v := range map[string]any{"snapshot": b.Snapshot, "files": b.Files, "bytes_scanned": b.BytesScanned,
				"bytes_read": b.BytesRead, "bytes_sent": b.BytesSent, "chunks_new": b.ChunksNew,
				"chunks_total": b.ChunksTotal, "duration_ms": b.DurationMS} {
				out[k] = v
			}
		}
	}
	if err != nil {
		out["outcome"] = "failed"
		out["error"], out["error_kind"] = err.Error(), proto.KindOf(err).String()
	}
	return out
}
