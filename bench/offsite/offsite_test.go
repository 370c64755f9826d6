package offsite

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestOffsiteTiny runs the whole benchmark on a tiny school (3 laptops, 2
// nights) through a fast link: it checks that every part works, not any
// figure. Skipped with -short and under the race detector.
func TestOffsiteTiny(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("runs rsync, a mothership and two school stores (~10 s)")
	}
	res, err := Run(context.Background(), Options{Laptops: 3, Nights: 2, JournalMB: 1, Scale: 16,
		Rate: 200e6, Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Log: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Verified)
	for k, n := range res.Nights {
		if n.XS.Wire == 0 || n.Store.Wire == 0 || n.Tree.Wire == 0 {
			t.Errorf("night %d measured nothing: %+v", k, n)
		}
	}
	if res.TwoPacks <= res.OnePacks || res.Unique2 <= 0 || res.Shared2 <= 0 {
		t.Errorf("disk figures: one %d, two %d, unique %d, shared %d", res.OnePacks, res.TwoPacks, res.Unique2, res.Shared2)
	}
	if md := res.Markdown("go test"); len(md) < 500 {
		t.Errorf("report: %q", md)
	}
}

// BenchmarkOffsite is the issue's benchmark (bench/README.md, "Off-site
// replication"): Default() unless XS_BENCH_LAPTOPS, XS_BENCH_NIGHTS,
// XS_BENCH_JOURNAL_MB or XS_BENCH_SCALE say otherwise. The report is logged
// and, with XS_BENCH_OFFSITE_OUT=FILE, written to FILE; XS_BENCH_WORK=DIR
// keeps everything in DIR.
//
//	go test -run '^$' -bench Offsite -benchtime 1x -timeout 60m ./bench/...
func BenchmarkOffsite(b *testing.B) {
	o := Default()
	o.Laptops = envInt(b, "XS_BENCH_LAPTOPS", o.Laptops)
	o.Nights = envInt(b, "XS_BENCH_NIGHTS", o.Nights)
	o.JournalMB = envInt(b, "XS_BENCH_JOURNAL_MB", o.JournalMB)
	o.Scale = envInt(b, "XS_BENCH_SCALE", o.Scale)
	if os.Getenv("XS_BENCH_NO_BASELINES") != "" {
		o.NoBaselines = true
	}
	if v := os.Getenv("XS_BENCH_TARGET_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("XS_BENCH_TARGET_DELAY=%q: %v", v, err)
		}
		o.TargetDelay = d
	}
	if w := os.Getenv("XS_BENCH_WORK"); w != "" {
		o.Work, o.Keep = w, true
	}
	o.Log = func(s string) {
		fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05"), s) // progress while it runs
		b.Log(s)
	}
	for b.Loop() {
		res, err := Run(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		md := res.Markdown("go test -run '^$' -bench Offsite -benchtime 1x -timeout 60m ./bench/...")
		b.Log("\n" + md)
		if p := os.Getenv("XS_BENCH_OFFSITE_OUT"); p != "" {
			if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		t := res.Totals(1)
		if t.Store.Wire > 0 {
			b.ReportMetric(float64(t.XS.Wire)/float64(t.Store.Wire), "wire/rsync-store")
			b.ReportMetric(float64(t.XS.Wire)/float64(t.Tree.Wire), "wire/rsync-folders")
		}
		b.ReportMetric(float64(res.TwoPacks)/float64(res.OnePacks+res.Unique2), "disk2/(disk1+unique2)")
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
