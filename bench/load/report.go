package load

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/server"
)

// Report is what a run measured. Run fills everything but Command.
type Report struct {
	Options Options
	// Config is the daemon's configuration file.
	Config  string
	Machine Machine
	Date    time.Time
	// Command is how the run was started, for the record (set by the caller).
	Command string
	// Interrupted: the run was stopped (its context ended) before the
	// deadline; laptops without a backup by then count as failed.
	Interrupted bool

	// Start is when the first timer could fire; Finished when the last
	// laptop finished (committed, or gave up at the deadline); LastCommit
	// when the last backup was acknowledged.
	Start, Finished, LastCommit time.Time
	// SetupTime is the time spent before Start: build, Journals, registration.
	SetupTime time.Duration

	Laptops   int
	Completed int // laptops with a committed backup
	Failed    int // laptops without one at the deadline
	// FailedBy counts the failed laptops by what they were doing at the deadline.
	FailedBy map[string]int
	// FailedExamples are a few failed laptops' last states, in full.
	FailedExamples []string
	// RunErrors counts runs that failed or were skipped and were retried
	// at the next timer firing, by error kind.
	RunErrors map[string]int
	// RunErrorExamples holds one message of each kind in RunErrors.
	RunErrorExamples map[string]string
	// Runs is the number of agent.Run calls; Laters those that ended with a
	// slot beyond MaxSlotWait, LatersOffline the Laters that ended before
	// contacting the server (the slot kept from an earlier run was still
	// beyond MaxSlotWait); MaxRuns the most one laptop needed.
	Runs, Laters, LatersOffline, MaxRuns int

	// Session is a backup session: from the grant to the acknowledged
	// commit (backup.Result.Duration, measured by the engine).
	Session Dist
	// Completion is from the laptop's first timer firing to its commit:
	// what admission made it wait, plus the session.
	Completion Dist
	// Arrivals are the first timer firings and SessionStarts the grants
	// (commit time minus session), as offsets from Start.
	Arrivals, SessionStarts []time.Duration

	// Server figures: peak RSS (VmHWM, whole life), CPU seconds while the
	// laptops ran and over its whole life (registration and the check of
	// every snapshot included).
	ServerPeakRSS             int64
	ServerCPU, ServerCPUTotal float64
	// SimulatorCPU is this process's CPU while the laptops ran: the
	// laptops' side (chunking, hashing, compression, QUIC), on the same cores.
	SimulatorCPU float64
	// Samples are the peaks sampled while the laptops ran.
	Samples Peaks
	// Metrics are the daemon's Prometheus metrics once the laptops stopped.
	Metrics map[string]float64

	// JournalBytes is the size of all Journals; LogicalBytes of what the
	// committed backups scanned (their data, metadata and index files);
	// SentBytes the blob bytes they uploaded (compressed) and WireBytes
	// their QUIC bytes both ways. PackBytes, IndexBytes and DataBytes are
	// the server's pack files, Badger index and whole data directory,
	// measured once the daemon has stopped.
	JournalBytes, LogicalBytes, SentBytes, WireBytes int64
	PackBytes, IndexBytes, DataBytes                 int64

	// Verified says the server was asked for every committed snapshot;
	// VerifiedCount found it, VerifyErrors did not.
	Verified      bool
	VerifiedCount int
	VerifyErrors  []error
}

// Dist summarises durations.
type Dist struct {
	N             int
	P50, P95, Max time.Duration
}

func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Dist{N: len(s), P50: q(0.50), P95: q(0.95), Max: s[len(s)-1]}
}

func (d Dist) String() string {
	if d.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", dur(d.P50), dur(d.P95), dur(d.Max))
}

// collect fills the per-laptop figures.
func (r *Report) collect(laptops []*laptop) {
	r.Laptops = len(laptops)
	r.FailedBy, r.RunErrors, r.RunErrorExamples = map[string]int{}, map[string]int{}, map[string]string{}
	var sessions, completions []time.Duration
	for _, l := range laptops {
		r.Runs += l.runs
		r.Laters += l.laters
		r.LatersOffline += l.latersOffline
		r.MaxRuns = max(r.MaxRuns, l.runs)
		for k, n := range l.errs {
			r.RunErrors[k] += n
		}
		for k, msg := range l.errExamples {
			r.RunErrorExamples[k] = msg
		}
		if !l.arrived.IsZero() {
			r.Arrivals = append(r.Arrivals, l.arrived.Sub(r.Start))
		}
		if l.result == nil {
			r.Failed++
			r.FailedBy[l.failKind]++
			if len(r.FailedExamples) < 5 {
				r.FailedExamples = append(r.FailedExamples, l.serial+": "+l.lastFail)
			}
			continue
		}
		r.Completed++
		if l.done.After(r.LastCommit) {
			r.LastCommit = l.done
		}
		if l.verified {
			r.VerifiedCount++
		}
		sessions = append(sessions, l.session)
		completions = append(completions, l.done.Sub(l.arrived))
		r.SessionStarts = append(r.SessionStarts, l.done.Add(-l.session).Sub(r.Start))
		b := l.result.Backup
		r.LogicalBytes += b.BytesScanned
		r.SentBytes += b.BytesSent
		r.WireBytes += l.result.WireSent + l.result.WireReceived
	}
	r.Session, r.Completion = distOf(sessions), distOf(completions)
}

// Wall is the time from the first timer firing to the last commit, or to
// the deadline if some laptops never committed.
func (r *Report) Wall() time.Duration {
	if r.Failed > 0 || r.LastCommit.IsZero() {
		return r.Finished.Sub(r.Start)
	}
	return r.LastCommit.Sub(r.Start)
}

// Target is one of the brief's numbers and whether the run met it.
type Target struct {
	What, Want, Got string
	Met             bool
}

// Targets are the brief's figures for this test (section 8).
func (r *Report) Targets() []Target {
	busy := int(r.Metrics[`xs_errors_total{kind="busy"}`])
	failedRuns := 0
	for _, n := range r.RunErrors {
		failedRuns += n
	}
	slots := r.Metrics["xs_slots_issued_total"]
	ts := []Target{
		{"every backup completes", "0 failed", fmt.Sprintf("%d of %d failed", r.Failed, r.Laptops), r.Failed == 0},
		{"server memory stays bounded", "peak RSS < 1 GiB", mib(r.ServerPeakRSS), r.ServerPeakRSS < 1<<30},
		{"slots spread the load instead of refusing it", "slots issued; ≤ capacity at once; no run refused or failed",
			fmt.Sprintf("%.0f slots; at most %d at once (capacity %d); %d runs refused or failed (%d as busy)",
				slots, r.Samples.Sessions, r.Options.Capacity, failedRuns, busy),
			(slots > 0 || r.Laptops <= r.Options.Capacity) && r.Samples.Sessions <= r.Options.Capacity && failedRuns == 0 && busy == 0},
	}
	if r.Verified {
		ts = append(ts, Target{"every committed snapshot is on the server", "all listed",
			fmt.Sprintf("%d of %d", r.VerifiedCount, r.Completed), r.VerifiedCount == r.Completed})
	}
	return ts
}

// Met reports whether every target was met (never for an interrupted run).
func (r *Report) Met() bool {
	if r.Interrupted {
		return false
	}
	for _, t := range r.Targets() {
		if !t.Met {
			return false
		}
	}
	return true
}

// Markdown renders the whole report (bench/results/load.md).
func (r *Report) Markdown() string {
	var b bytes.Buffer
	o := r.Options
	fmt.Fprintf(&b, "# Load test: %d laptops, one xs-backupd\n\n", r.Laptops)
	fmt.Fprintf(&b, "Written by `bench/cmd/load` (package `bench/load`); see bench/README.md.\n\n")
	fmt.Fprintf(&b, "- **Date**: %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine**: %s\n", r.Machine)
	if r.Command != "" {
		fmt.Fprintf(&b, "- **Command**: `%s`\n", r.Command)
	}
	verdict := "**every target met**"
	if !r.Met() {
		verdict = "**some targets missed** (see below)"
	}
	if r.Interrupted {
		verdict += "; **the run was interrupted** before every laptop had finished"
	}
	fmt.Fprintf(&b, "- **Result**: %s\n\n", verdict)

	b.WriteString("## Targets (brief, section 8)\n\n| target | wanted | measured | met |\n|---|---|---|---|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.What, t.Want, t.Got, yesNo(t.Met))
	}

	b.WriteString("\n## Set-up\n\n")
	fmt.Fprintf(&b, "%d laptops, each with its own ed25519 identity (registered with `agent.Register`, its own state directory and serial) "+
		"and its own Journal from `internal/journalgen` (%d entries; %d of them books of %s from a school-wide set of %d, so the same bytes "+
		"sit on many laptops; photos around %s, documents around %s): %s in all, %s per laptop on average. "+
		"The laptops run in the load process, one goroutine each calling `agent.Run` as `xo-backup run` does; "+
		"the server is a real `xs-backupd` subprocess on loopback, so its RSS and CPU are its own. Client and server share the machine's cores.\n\n",
		r.Laptops, o.Journal.Entries, o.Journal.SharedBooks, kib(o.Journal.BookBytes), o.Journal.SharedBooks*3,
		kib(o.Journal.MediaBytes), kib(o.Journal.DocBytes), mib(r.JournalBytes), mib(r.JournalBytes/int64(max(r.Laptops, 1))))
	fmt.Fprintf(&b, "Every laptop's timer first fires at a random moment within %s of the start (a school switching on at 10:00), "+
		"then again %s after each run that did not commit a backup, plus a random delay of up to %s, as the shipped xo-backup.timer does "+
		"(every 5 minutes, RandomizedDelaySec 1 minute). "+
		"A run waits up to %s (MaxSlotWait) for its slot while connected; given a slot further away, it ends with the outcome Later "+
		"and the laptop keeps the slot (`slot.json` in its state directory), as the shipped xo-backup does. ",
		dur(o.Spread), dur(o.TimerPeriod), dur(o.TimerDelay), dur(o.MaxSlotWait))
	if o.Comeback == ComebackTimer {
		fmt.Fprintf(&b, "Its next timer firings before the slot end Later at once, without touching the network; "+
			"the first within MaxSlotWait of the slot connects and waits for it. ")
		if o.TimerPeriod+o.TimerDelay <= o.MaxSlotWait {
			fmt.Fprintf(&b, "Firings are at most %s apart, less than MaxSlotWait, so one always falls in that window and no reservation is missed. ",
				dur(o.TimerPeriod+o.TimerDelay))
		} else {
			fmt.Fprintf(&b, "Firings can be up to %s apart, more than MaxSlotWait, so a laptop can miss its window "+
				"(the reservation lapses two slot lengths after the slot and the late run asks the server again). ",
				dur(o.TimerPeriod+o.TimerDelay))
		}
	} else {
		b.WriteString("Here (`-comeback slot`) the laptop runs again exactly at the slot instead of at its timer's next firing. " +
			"(The shipped xo-backup has no such schedule: its timer fires every 5 minutes and the runs before the slot end at once; " +
			"the default, `-comeback timer`, models that.) ")
	}
	fmt.Fprintf(&b, "A failed or skipped run is retried at the next timer firing (%s plus up to %s). "+
		"A laptop without a committed backup %s after the start counts as failed.\n\n", dur(o.TimerPeriod), dur(o.TimerDelay), dur(o.Deadline))
	fmt.Fprintf(&b, "**Scale.** A real school runs MaxSlotWait 10 minutes and the shipped timer every 5 minutes with a 1-minute random delay, "+
		"its laptops switched on over about 10 minutes; "+
		"here the clock runs 120× faster (MaxSlotWait %s, timer period %s, random delay %s, switch-on spread %s) because sessions are about that much shorter: "+
		"a first backup of a 1–2 MB Journal on loopback takes a tenth of a second (median %s here), a day's changes over a school's shared Wi-Fi tens of seconds. "+
		"`-capacity` sets the server's `[admission] max_sessions` to %d, far below the shipped %d, so that admission has to spread the crowd on this scale; "+
		"below that ceiling, how many laptops back up at once and when the others come back are measured by the server, not fixed per slot window "+
		"(`-slot`, %s here, is only reported).\n\n",
		dur(o.MaxSlotWait), dur(o.TimerPeriod), dur(o.TimerDelay), dur(o.Spread), dur(r.Session.P50), max(o.Capacity, 2), shippedMaxSessions,
		dur(o.SlotLength))
	b.WriteString("The daemon's configuration:\n\n```toml\n" + r.Config + "```\n")

	b.WriteString("\n## Figures\n\n| figure | value |\n|---|---:|\n")
	for _, row := range r.figures() {
		fmt.Fprintf(&b, "| %s | %s |\n", row[0], row[1])
	}
	if len(r.RunErrors) > 0 {
		b.WriteString("\nRuns that failed or were skipped (each retried at the laptop's next timer firing):\n\n")
		for _, k := range sortedKeys(r.RunErrors) {
			fmt.Fprintf(&b, "- %s: %d", k, r.RunErrors[k])
			if msg, ok := r.RunErrorExamples[k]; ok {
				fmt.Fprintf(&b, " (for example: %s)", msg)
			}
			b.WriteString("\n")
		}
	}
	if r.Failed > 0 {
		b.WriteString("\nLaptops without a backup at the deadline, by what they were doing:\n\n")
		for _, k := range sortedKeys(r.FailedBy) {
			fmt.Fprintf(&b, "- %s: %d\n", k, r.FailedBy[k])
		}
		b.WriteString("\nFor example:\n\n")
		for _, e := range r.FailedExamples {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if len(r.VerifyErrors) > 0 {
		b.WriteString("\nSnapshots the server did not list:\n\n")
		for i, e := range r.VerifyErrors {
			if i == 5 {
				fmt.Fprintf(&b, "- … and %d more\n", len(r.VerifyErrors)-5)
				break
			}
			fmt.Fprintf(&b, "- %v\n", e)
		}
	}

	b.WriteString("\n## When sessions started\n\n")
	b.WriteString(r.histogram())
	b.WriteString("\n## Definitions\n\n")
	b.WriteString("- **session**: from the grant to the acknowledged commit, as `backup.Result.Duration` measures it " +
		"(scan, chunk, ask the server what it lacks, upload, commit). A session's start is its commit time minus that duration.\n")
	b.WriteString("- **completion**: from the laptop's first timer firing to its commit: the wait admission imposed, plus the session.\n")
	b.WriteString("- **wall time**: from the first moment a timer could fire to the last commit.\n")
	b.WriteString("- **slots issued**: `xs_slots_issued_total` from the daemon's /metrics, every reservation it handed out " +
		"(a laptop whose reserved slot found the server full gets a new one). **Later**: runs that ended because the slot was beyond MaxSlotWait: " +
		"**offline** when the slot kept from an earlier run was (the run ended before contacting the server, 0 bytes on the wire), " +
		"**after asking the server** when the server's answer was.\n")
	b.WriteString("- **runs refused or failed**: `agent.Run` calls that returned an error or skipped (refused as busy, refused by QUIC, " +
		"unreachable, a server error), each retried at the laptop's next timer firing; they count against the admission target even when the laptop finished later.\n")
	b.WriteString("- **peaks** (sessions, connections, reservations, RSS): the highest of the samples taken every 250 ms from /metrics and /proc/PID/status.\n")
	b.WriteString("- **server CPU**: utime + stime from /proc/PID/stat; **peak RSS**: VmHWM from /proc/PID/status, over the daemon's whole life.\n")
	return b.String()
}

// figures are the rows of the figures table.
func (r *Report) figures() [][2]string {
	m := r.Metrics
	ratio := "–"
	if r.PackBytes > 0 {
		ratio = fmt.Sprintf("%.1f×", float64(r.LogicalBytes)/float64(r.PackBytes))
	}
	return [][2]string{
		{"laptops", fmt.Sprint(r.Laptops)},
		{"backups completed / failed", fmt.Sprintf("**%d / %d**", r.Completed, r.Failed)},
		{"wall time (first timer to last commit)", "**" + dur(r.Wall()) + "**"},
		{"set-up before it (build, Journals, registration)", dur(r.SetupTime)},
		{"session p50 / p95 / max (grant → commit)", r.Session.String()},
		{"completion p50 / p95 / max (first timer → commit)", r.Completion.String()},
		{"session starts, first / last", firstLast(r.SessionStarts)},
		{"timer firings, first / last", firstLast(r.Arrivals)},
		{"runs (agent.Run calls) / most for one laptop", fmt.Sprintf("%d / %d", r.Runs, r.MaxRuns)},
		{"runs ended Later: offline (kept slot, no network) / after asking the server", fmt.Sprintf("%d / %d", r.LatersOffline, r.Laters-r.LatersOffline)},
		{"slots issued (server)", fmt.Sprintf("%.0f", m["xs_slots_issued_total"])},
		{"sessions granted / commits (server)", fmt.Sprintf("%.0f / %.0f", m["xs_sessions_started_total"], m["xs_commits_total"])},
		{"peak sessions at once (capacity)", fmt.Sprintf("%d (%d)", r.Samples.Sessions, r.Options.Capacity)},
		{"peak laptops holding a reservation", fmt.Sprint(r.Samples.Waiting)},
		{"peak open connections (max_connections)", fmt.Sprintf("%d (%s)", r.Samples.Connections, maxConns(r.Options.MaxConnections))},
		{"connections refused as busy", fmt.Sprintf("%.0f", m[`xs_errors_total{kind="busy"}`])},
		{"server peak RSS (VmHWM)", "**" + mib(r.ServerPeakRSS) + "**"},
		{"server CPU while the laptops ran / whole life", fmt.Sprintf("**%.1f s** / %.1f s", r.ServerCPU, r.ServerCPUTotal)},
		{"laptops' CPU (the load process) while they ran", fmt.Sprintf("%.1f s", r.SimulatorCPU)},
		{"logical bytes backed up (all Journals, scanned)", mib(r.LogicalBytes)},
		{"blob bytes uploaded (compressed) / received by the server", fmt.Sprintf("%s / %s", mib(r.SentBytes), mib(int64(m["xs_received_bytes_total"])))},
		{"QUIC bytes both ways (laptops' count)", mib(r.WireBytes)},
		{"stored: pack files", fmt.Sprintf("**%s** (logical / stored = %s)", mib(r.PackBytes), ratio)},
		{"stored: index / whole data directory (daemon stopped)", fmt.Sprintf("%s / %s", mib(r.IndexBytes), mib(r.DataBytes))},
	}
}

// histogram renders timer firings and session starts per time bucket.
func (r *Report) histogram() string {
	span := time.Duration(0)
	for _, d := range append(slices.Clone(r.Arrivals), r.SessionStarts...) {
		span = max(span, d)
	}
	width := time.Second
	for _, w := range []time.Duration{1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1800} {
		width = w * time.Second
		if span/width < 20 {
			break
		}
	}
	n := int(span/width) + 1
	arr, st := make([]int, n), make([]int, n)
	for _, d := range r.Arrivals {
		arr[min(int(max(d, 0)/width), n-1)]++
	}
	for _, d := range r.SessionStarts {
		st[min(int(max(d, 0)/width), n-1)]++
	}
	peak := max(slices.Max(st), 1)
	var b strings.Builder
	fmt.Fprintf(&b, "Seconds after the start, in buckets of %s (at most %d sessions run at once: `[admission] max_sessions`).\n\n",
		dur(width), max(r.Options.Capacity, 2))
	b.WriteString("| from | first timer firings | sessions started | |\n|---:|---:|---:|---|\n")
	for i := range n {
		fmt.Fprintf(&b, "| %s | %d | %d | %s |\n", dur(time.Duration(i)*width), arr[i], st[i], strings.Repeat("█", (st[i]*30+peak-1)/peak))
	}
	return b.String()
}

// shippedMaxSessions is the daemon's default [admission] max_sessions,
// which the reports compare the benchmark's -capacity with.
var shippedMaxSessions = server.DefaultConfig().Admission.MaxSessions

// ReadmeSection is the text bench/README.md carries between the load markers.
func (r *Report) ReadmeSection() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "## %d laptops through one server (bench/load)\n\n    make bench-load\n\n", r.Laptops)
	fmt.Fprintf(&b, "%d laptops, each with its own key, serial and Journal (%s on average, books shared across the school), "+
		"in the load process; one real `xs-backupd` subprocess on loopback with `[admission] max_sessions = %d` (`-capacity`). "+
		"Every laptop's timer first fires within %s of the start, so admission has to spread them out, ",
		r.Laptops, mib(r.JournalBytes/int64(max(r.Laptops, 1))), max(o.Capacity, 2), dur(o.Spread))
	if o.Comeback == ComebackTimer {
		fmt.Fprintf(&b, "and then every %s plus up to %s, like the shipped xo-backup.timer: a laptop keeps the slot the server reserved, "+
			"its runs before the slot end at once without touching the network, and the first within MaxSlotWait (%s) of it connects and waits. ",
			dur(o.TimerPeriod), dur(o.TimerDelay), dur(o.MaxSlotWait))
	} else {
		fmt.Fprintf(&b, "and a laptop given a slot beyond MaxSlotWait (%s) runs again exactly at it (`-comeback slot`, not the shipped timer). ",
			dur(o.MaxSlotWait))
	}
	b.WriteString("The clock runs 120× faster than a school's (the 10-minute MaxSlotWait becomes 5 s, the 5-minute timer 2.5 s, " +
		"sessions on loopback are that much shorter than on Wi-Fi); " +
		"the set-up, the definitions and a histogram of session starts are in [results/load.md](results/load.md). ")
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", r.Date.Format("2006-01-02"), r.Machine)
	b.WriteString("| target (brief, section 8) | measured | met |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "| %s (%s) | %s | %s |\n", t.What, t.Want, t.Got, yesNo(t.Met))
	}
	b.WriteString("\n| figure | value |\n|---|---:|\n")
	keep := map[string]bool{"wall time (first timer to last commit)": true, "session p50 / p95 / max (grant → commit)": true,
		"completion p50 / p95 / max (first timer → commit)": true, "slots issued (server)": true, "server peak RSS (VmHWM)": true,
		"server CPU while the laptops ran / whole life": true, "logical bytes backed up (all Journals, scanned)": true,
		"stored: pack files": true, "peak open connections (max_connections)": true,
		"runs ended Later: offline (kept slot, no network) / after asking the server": true}
	for _, row := range r.figures() {
		if keep[row[0]] {
			fmt.Fprintf(&b, "| %s | %s |\n", row[0], row[1])
		}
	}
	fmt.Fprintf(&b, "\nThe server's ceiling here, %d sessions at once (`-capacity`), is far below the shipped `[admission] max_sessions` of %d, "+
		"so that admission has to spread the crowd on this scale: how fast this run drained it is no estimate for a school "+
		"with the shipped settings, whose limit is measured up to %d (the school morning, `make bench-morning`, measures that through an emulated network).\n",
		max(o.Capacity, 2), shippedMaxSessions, shippedMaxSessions)
	return b.String()
}

// Readme markers around the section UpdateReadme rewrites.
const (
	ReadmeBegin = "<!-- load:begin -->"
	ReadmeEnd   = "<!-- load:end -->"
)

// UpdateReadme replaces the text between ReadmeBegin and ReadmeEnd in the
// file at path with section, appending the markers if the file has none.
func UpdateReadme(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	s := string(b)
	i, j := strings.Index(s, ReadmeBegin), strings.Index(s, ReadmeEnd)
	switch {
	case i < 0 && j < 0:
		s = strings.TrimRight(s, "\n") + "\n\n" + ReadmeBegin + "\n" + ReadmeEnd + "\n"
		i, j = strings.Index(s, ReadmeBegin), strings.Index(s, ReadmeEnd)
	case i < 0 || j < i:
		return errors.New(path + " has one load marker without the other, or them in the wrong order: fix them by hand (" + ReadmeBegin + " then " + ReadmeEnd + ")")
	}
	s = s[:i+len(ReadmeBegin)] + "\n" + strings.TrimSpace(section) + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// Machine describes where the run happened.
type Machine struct {
	CPU            string
	Cores          int
	RAM            int64
	Kernel, OS, Go string
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown CPU", OS: runtime.GOOS}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.RAM = kb << 10
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.0f GiB RAM, %s, %s, %s", m.CPU, m.Cores, float64(m.RAM)/(1<<30), m.Kernel, m.OS, m.Go)
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}

func firstLast(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s", dur(slices.Min(ds)), dur(slices.Max(ds)))
}

func kib(n int) string { return fmt.Sprintf("%d KiB", n>>10) }

func maxConns(n int) string {
	if n == 0 {
		return "512, the default"
	}
	return fmt.Sprint(n)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
