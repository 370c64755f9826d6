// Command morning runs the school-morning benchmark of traffic control
// (package bench/traffic): laptops whose timers fire over a spread of
// minutes back up, in real time, through an emulated school network to one
// xs-backupd (a subprocess: its RSS and CPU are its own), first with
// measured admission, then with the fixed windows it replaced, then with a
// class's bulk download on the same link. It prints the report, writes it
// and the plots to -out, and rewrites the morning section of -readme.
//
// Exit codes: 0 every target met, 1 a target missed or the run failed,
// 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/bench/netem"
	"github.com/xs-backup/xs-backup/bench/traffic"
	"github.com/xs-backup/xs-backup/internal/journalgen"
)

const usage = `morning runs the school-morning benchmark of traffic control.

Usage:
  go run ./bench/cmd/morning [flags]     (make bench-morning)

The full morning is 1000 laptops over 20 minutes through 20 Mbit/s; -scale
runs a proportional part of it (laptops and spread scaled together, so they
arrive at the same rate, through the same link).

Flags:
`

func main() {
	traffic.ServeIfChild()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("morning", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
		fmt.Fprint(os.Stderr, "\nExit codes: 0 every target met, 1 a target missed or the run failed, 2 usage error.\n")
	}
	scale := fs.Float64("scale", 1, "fraction of the school: laptops and spread scaled together")
	laptops := fs.Int("laptops", 1000, "laptops at scale 1")
	spread := fs.Duration("spread", 20*time.Minute, "the timers' first firings spread at scale 1")
	rate := fs.Float64("rate", 20e6, "link rate, bits per second")
	rtt := fs.Duration("rtt", 10*time.Millisecond, "round-trip time of the link")
	loss := fs.Float64("loss", 0.005, "random loss")
	delta := fs.Int("delta-bytes", 1500000, "a small delta's photo of the day, on average (0: text changes only)")
	old := fs.Bool("old", true, "also run the fixed windows admission, for comparison")
	polite := fs.Bool("polite", true, "also run with a class's bulk download on the link")
	oldFor := fs.Duration("old-deadline", 0, "deadline of the fixed-windows run (default: twice the spread plus 5 minutes)")
	out := fs.String("out", "bench/results", "directory for morning.md and the plots")
	readme := fs.String("readme", "", "rewrite the morning section of this README")
	loopback := fs.Bool("loopback", false, "run the morning without the link emulator (laptops reach the server on loopback) and report the server's CPU while laptops wait, instead of the link runs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n := max(int(float64(*laptops)**scale+0.5), 20)
	sp := time.Duration(float64(*spread) * *scale)
	small := journalgen.Small(0)
	// A first backup is a whole Journal: photos and recordings, about 25 MB.
	first := journalgen.Options{Entries: 40, MediaBytes: 2 << 20, DocBytes: 16 << 10, SharedBooks: 3, BookSeed: 42, BookBytes: 256 << 10}
	base := traffic.Options{
		Laptops: n, Spread: sp,
		Link:    netem.LinkConfig{Rate: *rate, Delay: *rtt / 2, Jitter: *rtt / 10, Loss: *loss},
		Journal: &small, FirstJournal: &first, DeltaBytes: *delta,
		Deadline: sp + 15*time.Minute,
		Probe:    true,
		Server:   traffic.Subprocess,
		Log:      os.Stderr,
	}
	rep := &traffic.Report{Command: strings.Join(append([]string{"go run ./bench/cmd/morning"}, args...), " "), Scale: *scale,
		Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()), Date: time.Now().UTC().Format("2006-01-02")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				rep.Machine = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":")) + ", " + rep.Machine
				break
			}
		}
	}
	var err error
	if *loopback {
		return runLoopback(ctx, rep, base, *old, *out, *readme)
	}
	fmt.Fprintf(os.Stderr, "measured admission: %d laptops over %v\n", n, sp)
	if rep.New, err = traffic.Run(ctx, base); err != nil {
		fmt.Fprintln(os.Stderr, "morning:", err)
		return 1
	}
	if *old {
		o := base
		o.Old = true
		o.Deadline = *oldFor
		if o.Deadline == 0 {
			o.Deadline = 2*sp + 5*time.Minute
		}
		fmt.Fprintf(os.Stderr, "fixed windows: deadline %v\n", o.Deadline)
		if rep.Old, err = traffic.Run(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "morning:", err)
			return 1
		}
	}
	if *polite {
		o := base
		o.BulkAt, o.BulkFor = sp/5, max(sp/2, time.Minute)
		fmt.Fprintf(os.Stderr, "measured admission with a class's download from %v for %v\n", o.BulkAt, o.BulkFor)
		if rep.Polite, err = traffic.Run(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "morning:", err)
			return 1
		}
	}
	os.MkdirAll(*out, 0o755)
	svgNew, svgOld := filepath.Join(*out, "morning-measured.svg"), filepath.Join(*out, "morning-fixed.svg")
	os.WriteFile(svgNew, []byte(rep.New.SVG("measured admission")), 0o644)
	if rep.Old != nil {
		os.WriteFile(svgOld, []byte(rep.Old.SVG("fixed windows (4 sessions, 2-minute windows)")), 0o644)
	}
	rel := func(p string) string {
		if *readme == "" {
			return p
		}
		r, err := filepath.Rel(filepath.Dir(*readme), p)
		if err != nil {
			return p
		}
		return r
	}
	for name, r := range map[string]*traffic.Result{"measured": rep.New, "fixed": rep.Old, "polite": rep.Polite} {
		if r != nil {
			os.WriteFile(filepath.Join(*out, "morning-"+name+".csv"), []byte(r.CSV()), 0o644)
		}
	}
	md := rep.Markdown(rel(svgNew), rel(svgOld))
	fmt.Print(md)
	os.WriteFile(filepath.Join(*out, "morning.md"), []byte(md), 0o644)
	if *readme != "" {
		if err := traffic.UpdateReadme(*readme, md); err != nil {
			fmt.Fprintln(os.Stderr, "morning:", err)
			return 1
		}
	}
	if rep.New.Failed > 0 {
		return 1
	}
	return 0
}

// runLoopback runs the mornings without the link (measured admission, and
// the fixed windows if old) and reports the server's CPU while laptops wait.
func runLoopback(ctx context.Context, rep *traffic.Report, base traffic.Options, old bool, out, readme string) int {
	base.Loopback, base.Probe = true, false
	var err error
	fmt.Fprintf(os.Stderr, "measured admission on loopback: %d laptops over %v\n", base.Laptops, base.Spread)
	if rep.Loopback, err = traffic.Run(ctx, base); err != nil {
		fmt.Fprintln(os.Stderr, "morning:", err)
		return 1
	}
	if old {
		o := base
		o.Old = true
		fmt.Fprintf(os.Stderr, "fixed windows on loopback\n")
		if rep.LoopbackOld, err = traffic.Run(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "morning:", err)
			return 1
		}
	}
	os.MkdirAll(out, 0o755)
	for name, r := range map[string]*traffic.Result{"loopback": rep.Loopback, "loopback-fixed": rep.LoopbackOld} {
		if r != nil {
			os.WriteFile(filepath.Join(out, "morning-"+name+".csv"), []byte(r.CSV()), 0o644)
		}
	}
	md := rep.LoopbackMarkdown()
	fmt.Print(md)
	os.WriteFile(filepath.Join(out, "morning-loopback.md"), []byte(md), 0o644)
	if readme != "" {
		if err := traffic.UpdateReadmeSection(readme, traffic.ReadmeLoopbackBegin, traffic.ReadmeLoopbackEnd, md); err != nil {
			fmt.Fprintln(os.Stderr, "morning:", err)
			return 1
		}
	}
	if rep.Loopback.Failed > 0 {
		return 1
	}
	return 0
}
