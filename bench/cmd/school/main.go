// Command school runs the whole-school benchmark (package bench/school) and
// writes bench/results/school-<size>.md and .svg, and with -readme the
// section of bench/README.md between the school markers.
//
// Exit codes: 0 the run finished and every system that ran verified its
// restores; 1 the run failed or a system failed; 2 usage error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/bench/school"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	d := school.Small()
	fs := flag.NewFlagSet("school", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, "school runs the whole-school benchmark: xs-backup against rsync --link-dest (over its daemon and over SSH, as ds-backup ran it), restic and borg on the same simulated school. Run as root, it installs missing baselines with apt-get.\n\nUsage: go run ./bench/cmd/school [flags]\n\n")
		fs.PrintDefaults()
	}
	o := school.Options{}
	fs.StringVar(&o.Size, "size", d.Size, "name of the run: results go to school-<size>.md and .svg")
	fs.IntVar(&o.Laptops, "laptops", d.Laptops, "laptops in the school")
	fs.IntVar(&o.Nights, "nights", d.Nights, "nightly backups (night 0 is the first full one)")
	fs.IntVar(&o.JournalMB, "journal-mb", d.JournalMB, "size of each Journal on night 0, MiB")
	fs.IntVar(&o.Concurrency, "concurrency", d.Concurrency, "laptops backing up at once")
	fs.Uint64Var(&o.Seed, "seed", d.Seed, "seed of the generated school")
	fs.StringVar(&o.Work, "work", "", "working directory (default: a temporary one, removed afterwards)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the working directory")
	fs.StringVar(&o.Repo, "repo", "", "xs-backup source tree to build (default: found from the current directory)")
	systems := fs.String("systems", "", "comma-separated systems to compare with xs-backup: rsync,rsync+ssh,restic,borg (default: all installed)")
	fs.BoolVar(&o.NoChunkStudy, "no-chunk-study", false, "skip the chunk-size study")
	out := fs.String("out", "bench/results", "directory for school-<size>.md and .svg")
	readme := fs.String("readme", "", "also rewrite the school section of this README (bench/README.md)")
	quiet := fs.Bool("q", false, "print no progress")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "school: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *systems != "" {
		o.Systems = strings.Split(*systems, ",")
	}
	o.Command = "go run ./bench/cmd/school " + strings.Join(args, " ")
	if !*quiet {
		start := time.Now()
		o.Log = func(s string) { fmt.Fprintf(os.Stderr, "[%6.0fs] %s\n", time.Since(start).Seconds(), s) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := school.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "school:", err)
		return 1
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "school:", err)
		return 1
	}
	base := filepath.Join(*out, "school-"+res.Options.Size)
	for name, text := range map[string]string{base + ".md": res.Markdown(), base + ".svg": res.SVG()} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "school:", err)
			return 1
		}
	}
	fmt.Printf("Wrote %s.md and %s.svg (%s).\n", base, base, res.Duration.Round(time.Second))
	if *readme != "" {
		if err := school.UpdateReadme(*readme, res.ReadmeSection()); err != nil {
			fmt.Fprintln(os.Stderr, "school:", err)
			return 1
		}
		fmt.Printf("Updated the school section of %s.\n", *readme)
	}
	for _, t := range res.Targets() {
		verdict := "not judged"
		if t.Judged {
			verdict = "NOT MET"
			if t.Met {
				verdict = "met"
			}
		}
		fmt.Printf("  %-34s %-9s %s (%s)\n", t.Name, verdict, t.Value, t.Gap)
	}
	code := 0
	for _, s := range res.Systems {
		if s.Skipped != "" {
			fmt.Printf("  %s\n", s.Skipped)
		} else if !s.OK() {
			fmt.Printf("  %s FAILED: %s%s%s\n", s.Name, s.Failed, s.RestoreWholeErr, s.RestoreDocErr)
			code = 1
		}
	}
	return code
}
