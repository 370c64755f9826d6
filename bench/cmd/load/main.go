// Command load runs the whole-school load test (package bench/load): a
// thousand simulated laptops back up through one real xs-backupd on
// loopback. It prints the report, writes it to -out, rewrites the load
// section of bench/README.md with -readme, and exits 0 when every target
// was met, 1 when one was missed or the run could not happen, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/bench/load"
)

const usage = `load runs the 1000-laptop load test against one xs-backupd subprocess.

Usage:
  go run ./bench/cmd/load [flags]     (make bench-load)

Flags:
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
		fmt.Fprint(os.Stderr, "\nExit codes: 0 every target met, 1 a target missed or the run failed, 2 usage error.\n")
	}
	var o load.Options
	fs.IntVar(&o.Laptops, "laptops", 1000, "simulated laptops")
	fs.IntVar(&o.Capacity, "capacity", 4, "the server's capacity (backup sessions at once)")
	fs.DurationVar(&o.SlotLength, "slot", time.Second, "only reported: the measured admission has no slot windows")
	fs.IntVar(&o.MaxConnections, "max-connections", 0, "the server's max_connections (0: its default, 512)")
	fs.DurationVar(&o.Spread, "spread", 5*time.Second, "the laptops' timers first fire within this of the start (the school switching on)")
	fs.DurationVar(&o.MaxSlotWait, "max-slot-wait", 5*time.Second, "how long a run waits, connected, for a slot (xo-backup's 10 minutes / 120)")
	comeback := fs.String("comeback", string(load.ComebackTimer), "after a slot beyond max-slot-wait, run again at the next \"timer\" firing (shipped: runs before the kept slot end at once, offline) or exactly at the \"slot\"")
	fs.DurationVar(&o.TimerPeriod, "timer", 2500*time.Millisecond, "the laptops' timer period (the shipped 5 minutes / 120)")
	fs.DurationVar(&o.TimerDelay, "timer-delay", 500*time.Millisecond, "the timer's random delay added to each later firing (the shipped RandomizedDelaySec of 1 minute / 120)")
	fs.DurationVar(&o.Deadline, "deadline", 15*time.Minute, "laptops without a backup this long after the start count as failed")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the Journals and timers")
	fs.StringVar(&o.ServerBin, "server", "", "xs-backupd binary (default: build ./cmd/xs-backupd)")
	fs.StringVar(&o.WorkDir, "work", "", "work directory (default: a temporary one, removed afterwards)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory")
	fs.BoolVar(&o.SkipVerify, "skip-verify", false, "do not ask the server for every committed snapshot afterwards")
	out := fs.String("out", "", "write the report (Markdown) to this file, e.g. bench/results/load.md")
	readme := fs.String("readme", "", "rewrite the load section of this README (between "+load.ReadmeBegin+" and "+load.ReadmeEnd+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "load: unexpected argument %q (flags only; see -help)\n", fs.Arg(0))
		return 2
	}
	o.Comeback = load.Comeback(*comeback)
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := load.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	rep.Command = strings.Join(append([]string{"go run ./bench/cmd/load"}, args...), " ")
	md := rep.Markdown()
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "load: write the report:", err)
			return 1
		}
	}
	if *readme != "" {
		if err := load.UpdateReadme(*readme, rep.ReadmeSection()); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			return 1
		}
	}
	if !rep.Met() {
		fmt.Fprintln(os.Stderr, "load: some targets were missed; the report says which")
		return 1
	}
	return 0
}
