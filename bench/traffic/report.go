package traffic

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Report is a morning's runs side by side: measured admission (New), the
// fixed windows it replaced (Old), and a run with a class's bulk download
// on the same link (Polite, optional).
type Report struct {
	Command, Machine, Date string
	Scale                  float64
	New, Old, Polite       *Result
	// Loopback and LoopbackOld are mornings without the link (Options.Loopback),
	// measured admission and the fixed windows.
	Loopback, LoopbackOld *Result
}

// Targets are the brief's figures for a morning (section 8, issue 17).
type target struct {
	what, want, got string
	ok              bool
}

func (r *Result) targets() []target {
	ratio := r.Wall.Seconds() / r.Physical.Seconds()
	small := r.Waits[SmallDelta]
	t := []target{
		{"every backup completes", "0 failed", fmt.Sprintf("%d of %d failed", r.Failed, r.Completed+r.Failed), r.Failed == 0},
		{"done within 1.25× the physical limit", "≤ 1.25", fmt.Sprintf("%.2f (%s vs %s)", ratio, dur(r.Wall), dur(r.Physical)), r.Failed == 0 && ratio <= 1.25},
		{"link busy while anyone waits", "≥ 85%", fmt.Sprintf("%.0f%% over %d s (≥ 85%% in %.0f%% of those seconds)", 100*r.LinkUseWaiting, r.SecondsWaiting, 100*r.BusyWhileWaiting),
			r.SecondsWaiting == 0 || r.LinkUseWaiting >= 0.85},
		{"small deltas' wait, p95", "≤ 2 min", fmt.Sprintf("p50 %s, p95 %s", dur(pctl(small, 0.5)), dur(pctl(small, 0.95))), pctl(small, 0.95) <= 2*time.Minute},
	}
	if r.ServerRSS > 0 {
		t = append(t, target{"server RSS", "< 1 GiB", fmt.Sprintf("%d MiB (CPU %.1f s)", r.ServerRSS>>20, r.ServerCPU), r.ServerRSS < 1<<30})
	}
	if r.ProbeCount > 0 {
		t = append(t, target{"probe: added delay p95", "≤ 50 ms", fmt.Sprintf("%s (p50 %s; %d of %d lost)", dur(r.ProbeAdded95), dur(r.ProbeAdded50), r.ProbeLost, r.ProbeCount), r.ProbeAdded95 <= 50*time.Millisecond})
	}
	if r.Options.BulkFor > 0 {
		t = append(t, target{"a class's bulk download keeps", "≥ 50% of the link", fmt.Sprintf("%.0f%% (%.1f Mbit/s)", 100*r.BulkShare, r.BulkBits/1e6), r.BulkShare >= 0.5})
	}
	return t
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return fmt.Sprintf("%.1f min", d.Minutes())
	case d >= time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
}

// Markdown renders the report.
func (rep *Report) Markdown(svgNew, svgOld string) string {
	var b strings.Builder
	o := rep.New.Options
	fmt.Fprintf(&b, "### The school morning (traffic control)\n\n")
	fmt.Fprintf(&b, "`%s` on %s, %s.\n\n", rep.Command, rep.Machine, rep.Date)
	if rep.Scale != 1 {
		fmt.Fprintf(&b, "**Scaled run**: %.0f%% of the school — %d laptops whose timers fire over %s (the brief's 1000 over 20 min "+
			"scaled by the same factor, so laptops arrive at the same rate) through the same %.0f Mbit/s link; "+
			"a full run does not fit this 2-core machine's time budget.\n\n",
			100*rep.Scale, o.Laptops, dur(o.Spread), o.Link.Rate/1e6)
	}
	fmt.Fprintf(&b, "Network: one shared bottleneck (bench/netem) of %.0f Mbit/s, %s one-way delay (+ up to %s jitter), %.1f%% random loss, "+
		"a %d KiB drop-tail buffer. Mix: 70%% small deltas (a day of journalgen changes, plus a photo of %s on average), 25%% unchanged, 5%% first backups "+
		"(bigger Journals). The laptops run xo-backup's own code (agent.Run) with the shipped timer (5 min + up to 1 min) and MaxSlotWait (10 min). "+
		"Physical limit = the spread of the timers + every laptop's QUIC wire bytes (both ways, from its runs, plus IP/UDP headers) / link rate.\n\n",
		o.Link.Rate/1e6, dur(o.Link.Delay), dur(o.Link.Jitter), 100*o.Link.Loss, rep.New.linkBuffer()>>10, mb(o.DeltaBytes))
	fmt.Fprintf(&b, "| target | want | measured admission | fixed windows (before) |\n|---|---|---|---|\n")
	nt, ot := rep.New.targets(), []target(nil)
	if rep.Old != nil {
		ot = rep.Old.targets()
	}
	for i, t := range nt {
		old := "—"
		if i < len(ot) {
			old = ot[i].got + mark(ot[i].ok)
		}
		fmt.Fprintf(&b, "| %s | %s | %s%s | %s |\n", t.what, t.want, t.got, mark(t.ok), old)
	}
	if p := rep.Polite; p != nil {
		for _, t := range p.targets() {
			if strings.HasPrefix(t.what, "a class") {
				fmt.Fprintf(&b, "| %s (download from %s to %s) | %s | %s%s | — |\n", t.what, dur(p.Options.BulkAt), dur(p.Options.BulkAt+p.Options.BulkFor), t.want, t.got, mark(t.ok))
			}
		}
	}
	fmt.Fprintf(&b, "\n| run | done | wall | physical | wire bytes | waits: small p50/p95, unchanged p95, first p95 | peak RSS | CPU | come-back times | expired |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		r    *Result
	}{{"measured", rep.New}, {"fixed windows", rep.Old}, {"measured + class download", rep.Polite}} {
		if x.r == nil {
			continue
		}
		r := x.r
		fmt.Fprintf(&b, "| %s | %d/%d | %s | %s | %.1f MB | %s / %s, %s, %s | %d MiB | %.1f s | %.0f | %.0f |\n", x.name, r.Completed, r.Completed+r.Failed, dur(r.Wall), dur(r.Physical),
			float64(r.WireBytes)/1e6, dur(pctl(r.Waits[SmallDelta], 0.5)), dur(pctl(r.Waits[SmallDelta], 0.95)), dur(pctl(r.Waits[Unchanged], 0.95)), dur(pctl(r.Waits[First], 0.95)),
			r.ServerRSS>>20, r.ServerCPU, r.Metrics["xs_slots_issued_total"], r.Expired)
	}
	for _, x := range []struct {
		name string
		r    *Result
	}{{"measured", rep.New}, {"fixed windows", rep.Old}, {"measured + class download", rep.Polite}} {
		if x.r == nil || len(x.r.FailedBy) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nRuns that failed, or ended without a backup and were retried (%s):", x.name)
		for _, k := range slices.Sorted(maps.Keys(x.r.FailedBy)) {
			fmt.Fprintf(&b, " %s × %d;", k, x.r.FailedBy[k])
		}
		for _, k := range slices.Sorted(maps.Keys(x.r.Examples)) {
			fmt.Fprintf(&b, " e.g. %q;", x.r.Examples[k])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nQueue length, sessions admitted and link rate, second by second:\n\n![measured admission](%s)\n\n", svgNew)
	if rep.Old != nil {
		fmt.Fprintf(&b, "![fixed windows](%s)\n\n", svgOld)
	}
	return b.String()
}

func mb(n int) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func mark(ok bool) string {
	if ok {
		return " ✓"
	}
	return " ✗"
}

func (r *Result) linkBuffer() int {
	if r.Options.Link.Buffer > 0 {
		return r.Options.Link.Buffer
	}
	return max(64<<10, int(r.Options.Link.Rate/8*0.1))
}

// CSV is the samples, one line a second.
func (r *Result) CSV() string {
	var b strings.Builder
	b.WriteString("seconds,waiting,running,limit,link_bits_per_second,paced_bits_per_second,queueing_delay_ms,server_cpu_cores,machine_busy\n")
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.1f,%.2f,%.2f\n", s.T.Seconds(), s.Waiting, s.Running, s.Limit, s.LinkBits, s.Paced, float64(s.QDelay)/1e6, s.ServerCPU, s.MachineBusy)
	}
	return b.String()
}

// SVG plots the queue length, the sessions admitted and the link's rate.
func (r *Result) SVG(title string) string {
	const w, h, pad = 900, 300, 50
	n := len(r.Samples)
	if n == 0 {
		return ""
	}
	maxCount := 1.0
	for _, s := range r.Samples {
		maxCount = max(maxCount, s.Waiting, s.Running)
	}
	rate := r.Options.Link.Rate
	x := func(i int) float64 { return pad + float64(i)*float64(w-2*pad)/float64(max(n-1, 1)) }
	y := func(v, top float64) float64 { return h - pad - v/top*float64(h-2*pad) }
	line := func(color string, val func(Sample) float64, top float64) string {
		var pts []string
		for i, s := range r.Samples {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(min(val(s), top), top)))
		}
		return fmt.Sprintf(`<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/><text x="%d" y="20" font-size="14">%s</text>`, w, h, pad, title)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`, pad, h-pad, w-pad, h-pad, pad, pad, pad, h-pad)
	for i := 0; i <= 4; i++ {
		v := maxCount * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.0f</text>`, pad-4, y(v, maxCount)+4, v)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">%.0f</text>`, w-pad+4, y(rate*float64(i)/4, rate)+4, rate*float64(i)/4/1e6)
	}
	secs := r.Samples[n-1].T.Seconds()
	for i := 0; i <= 6; i++ {
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%.0f s</text>`, pad+float64(i)*float64(w-2*pad)/6, h-pad+16, secs*float64(i)/6)
	}
	b.WriteString(line("#1f77b4", func(s Sample) float64 { return s.LinkBits }, rate))
	b.WriteString(line("#d62728", func(s Sample) float64 { return s.Waiting }, maxCount))
	b.WriteString(line("#2ca02c", func(s Sample) float64 { return s.Running }, maxCount))
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#d62728">laptops waiting</text><text x="%d" y="%d" fill="#2ca02c">sessions admitted</text><text x="%d" y="%d" fill="#1f77b4">link Mbit/s (right axis)</text>`,
		pad+250, 20, pad+380, 20, pad+520, 20)
	b.WriteString("</svg>\n")
	return b.String()
}

// LoopbackMarkdown renders the loopback mornings (Loopback, LoopbackOld):
// what the server's CPU does while laptops wait for a place.
func (rep *Report) LoopbackMarkdown() string {
	var b strings.Builder
	r := rep.Loopback
	o := r.Options
	fmt.Fprintf(&b, "### The school morning on loopback (server CPU)\n\n")
	fmt.Fprintf(&b, "`%s` on %s, %s.\n\n", rep.Command, rep.Machine, rep.Date)
	fmt.Fprintf(&b, "%d laptops whose timers fire over %s reach the server on loopback, with no link emulator: what they wait for is the server "+
		"(a subprocess) and the machine's %d CPUs, which the laptops (goroutines of the benchmark) share with it. "+
		"\"Server CPU\" is the server's own CPU time per second, as a share of all %d CPUs; \"machine busy\" is the whole machine's "+
		"(/proc/stat), laptops included, and in brackets the share spent idle waiting for the disk; all averaged over the seconds in which someone waited for a place.\n\n",
		o.Laptops, dur(o.Spread), r.CPUs, r.CPUs)
	fmt.Fprintf(&b, "| run | done | wall | seconds with laptops waiting | server CPU while waiting (≥ 80%%) | machine busy (iowait) while waiting | waits: small p50/p95, unchanged p95, first p95 | come-back times | peak RSS | server CPU |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		r    *Result
	}{{"measured", rep.Loopback}, {"fixed windows", rep.LoopbackOld}} {
		if x.r == nil {
			continue
		}
		r := x.r
		share := r.ServerCPUWaiting / float64(max(r.CPUs, 1))
		fmt.Fprintf(&b, "| %s | %d/%d | %s | %d | %.0f%% (%.2f cores)%s | %.0f%% (%.0f%%) | %s / %s, %s, %s | %.0f | %d MiB | %.1f s |\n", x.name, r.Completed, r.Completed+r.Failed, dur(r.Wall), r.SecondsWaiting,
			100*share, r.ServerCPUWaiting, mark(r.SecondsWaiting == 0 || share >= 0.8), 100*r.MachineBusyWaiting, 100*r.MachineIOWaitWaiting,
			dur(pctl(r.Waits[SmallDelta], 0.5)), dur(pctl(r.Waits[SmallDelta], 0.95)), dur(pctl(r.Waits[Unchanged], 0.95)), dur(pctl(r.Waits[First], 0.95)),
			r.Metrics["xs_slots_issued_total"], r.ServerRSS>>20, r.ServerCPU)
	}
	return b.String()
}

// Markers delimit the morning's sections in bench/README.md.
const (
	ReadmeBegin         = "<!-- morning:begin -->"
	ReadmeEnd           = "<!-- morning:end -->"
	ReadmeLoopbackBegin = "<!-- morning-loopback:begin -->"
	ReadmeLoopbackEnd   = "<!-- morning-loopback:end -->"
)

// UpdateReadme replaces the morning's section of a README (appending it if
// absent).
func UpdateReadme(path, section string) error {
	return UpdateReadmeSection(path, ReadmeBegin, ReadmeEnd, section)
}

// UpdateReadmeSection replaces the section between the markers begin and
// end of a README (appending it if absent).
func UpdateReadmeSection(path, begin, end, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	body := begin + "\n" + strings.TrimRight(section, "\n") + "\n" + end
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i < 0 && j < 0:
		s = strings.TrimRight(s, "\n") + "\n\n" + body + "\n"
	case i >= 0 && j > i:
		s = s[:i] + body + s[j+len(end):]
	default:
		return fmt.Errorf("%s: the morning markers are out of order", path)
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
