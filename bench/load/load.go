// Package load is the whole-school load test of xs-backup: a thousand
// laptops, each with its own identity and Journal, whose backup timers fire
// within a few seconds of each other, against one real xs-backupd process on
// loopback. It measures what the brief (section 8) holds the server to:
// every backup completes, the server's memory stays bounded, and admission
// slots spread the load instead of refusing it.
//
// The laptops run in this process (one goroutine each, calling agent.Run as
// xo-backup run does); the daemon is a subprocess, so its peak RSS and CPU
// time, read from /proc, are the server's alone.
//
// Time is scaled down so the run takes minutes, not a school day: see
// Options for the defaults and why they keep the proportions of a real
// school. bench/cmd/load is the command; bench/README.md shows the figures.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/procstat"
)

// Comeback says when a laptop whose run ended Later (a slot beyond its
// MaxSlotWait) runs again.
type Comeback string

const (
	// ComebackTimer: at its timer's next firing (TimerPeriod plus up to
	// TimerDelay), as the shipped xo-backup.timer does. xo-backup keeps the
	// slot the server reserved (slot.json), so the firings before the slot
	// end at once without touching the network, and the first one within
	// MaxSlotWait of it connects and waits for it. The default.
	ComebackTimer Comeback = "timer"
	// ComebackSlot: at the slot the server reserved for it (a laptop that
	// schedules its next run for the slot, so it never runs early).
	ComebackSlot Comeback = "slot"
)

// Options configure a run. A zero field takes the default in its comment.
//
// The defaults scale a real school's clock down 120×: the server's slot of
// 2 minutes becomes 1 s, xo-backup's MaxSlotWait of 10 minutes 5 s, the
// shipped timer's 5-minute period 2.5 s and its RandomizedDelaySec of
// 1 minute 0.5 s, and a class switching its laptops on over 10 minutes a
// 5 s spread of first firings. Sessions shrink by about as much: a
// first backup of a 1–2 MB Journal on loopback takes a tenth of a second,
// where a day's changes over a school's shared Wi-Fi take tens of seconds.
// Capacity is 4 by default (the shipped [admission] max_sessions is 64):
// a small ceiling makes admission spread the crowd on this scale.
type Options struct {
	// Laptops is how many laptops back up (default 1000).
	Laptops int
	// Capacity is the server's [admission] max_sessions, the most
	// sessions at once (default 4); how many run is measured below it.
	Capacity int
	// SlotLength is only reported: the measured admission has no slot
	// windows (it was the fixed-window admission's, before issue 17).
	SlotLength time.Duration
	// MaxConnections is the server's max_connections (default: the
	// server's own default, 512).
	MaxConnections int
	// Spread: each laptop's timer first fires at a random time in
	// [0, Spread] after the start: the school switching on (default 5 s).
	Spread time.Duration
	// MaxSlotWait is agent.RunOptions.MaxSlotWait: the longest a run waits
	// for its slot, connected; given a slot further away it ends with the
	// outcome Later, and later runs end Later at once, offline, until the
	// kept slot is within MaxSlotWait (default 5 s, the shipped 10 minutes).
	MaxSlotWait time.Duration
	// Comeback is when a laptop runs again after a Later (default
	// ComebackTimer, the shipped behaviour).
	Comeback Comeback
	// TimerPeriod is the timer's period (OnUnitActiveSec): a laptop's timer
	// fires again this long after a run that failed, was skipped or, with
	// ComebackTimer, ended Later (default 2.5 s, the shipped 5 minutes).
	TimerPeriod time.Duration
	// TimerDelay is the timer's RandomizedDelaySec: each later firing comes
	// up to this much after TimerPeriod, at random (default 0.5 s, the
	// shipped 1 minute).
	TimerDelay time.Duration
	// Deadline bounds the backups: laptops without a committed backup
	// this long after the first timer firing count as failed (default 15 min).
	Deadline time.Duration
	// Seed makes the Journals and the timers reproducible (default 1).
	Seed uint64
	// Journal shapes every laptop's Journal (its Seed is replaced by one
	// per laptop). Default DefaultJournal.
	Journal *journalgen.Options
	// ServerBin is an xs-backupd binary; "" builds ./cmd/xs-backupd.
	ServerBin string
	// WorkDir holds the Journals, the laptops' state and the server's
	// store; "" uses a new temporary directory.
	WorkDir string
	// Keep leaves the work directory in place (a temporary one is
	// otherwise removed).
	Keep bool
	// SkipVerify skips asking the server, laptop by laptop, for the
	// snapshot each committed.
	SkipVerify bool
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// DefaultJournal is a laptop's Journal in the default run: 14 entries, three
// of them 256 KiB books from a school-wide set of nine (shared byte for byte,
// so the server stores each once), photos around 128 KiB and text documents
// around 16 KiB: about 1–2 MB per laptop.
func DefaultJournal() journalgen.Options {
	return journalgen.Options{Entries: 14, MediaBytes: 128 << 10, DocBytes: 16 << 10,
		SharedBooks: 3, BookSeed: 42, BookBytes: 256 << 10}
}

func (o *Options) setDefaults() error {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	set(&o.Laptops, 1000)
	set(&o.Capacity, 4)
	setd(&o.SlotLength, time.Second)
	setd(&o.Spread, 5*time.Second)
	setd(&o.MaxSlotWait, 5*time.Second)
	setd(&o.TimerPeriod, 2500*time.Millisecond)
	setd(&o.TimerDelay, 500*time.Millisecond)
	setd(&o.Deadline, 15*time.Minute)
	if o.Comeback == "" {
		o.Comeback = ComebackTimer
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Journal == nil {
		j := DefaultJournal()
		o.Journal = &j
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.Laptops < 1 || o.Capacity < 1 || o.MaxConnections < 0:
		return errors.New("laptops and capacity must be at least 1, max connections not negative")
	case o.SlotLength < time.Second:
		return errors.New("the slot length must be at least 1s (xs-backupd refuses less)")
	case o.Spread < 0 || o.MaxSlotWait < 0 || o.TimerPeriod < 0 || o.TimerDelay < 0 || o.Deadline < 0:
		return errors.New("durations must not be negative")
	case o.Comeback != ComebackSlot && o.Comeback != ComebackTimer:
		return fmt.Errorf("comeback must be %q or %q, not %q", ComebackSlot, ComebackTimer, o.Comeback)
	case o.Journal.Entries < 1:
		return errors.New("a Journal needs at least one entry")
	}
	return nil
}

// Run sets up the laptops and the daemon, lets every laptop's timer fire
// and reports what happened. It returns an error only when the run itself
// could not happen (build, start, set-up); backups that did not complete
// are in the Report, as failures.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }
	t0 := time.Now()
	work := o.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "xs-load-"); err != nil {
			return nil, err
		}
		if !o.Keep {
			defer func() {
				if err != nil {
					logf("work directory kept for a look at what went wrong (the daemon's log is xs-backupd.log): %s", work)
					return
				}
				os.RemoveAll(work)
			}()
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	if o.Keep {
		logf("work directory (kept): %s", work)
	}
	bin := o.ServerBin
	if bin == "" {
		logf("building xs-backupd")
		var err error
		if bin, err = buildServer(ctx, filepath.Join(work, "bin")); err != nil {
			return nil, err
		}
	}

	// The laptops' Journals.
	laptops := make([]*laptop, o.Laptops)
	for i := range laptops {
		laptops[i] = newLaptop(filepath.Join(work, "laptops"), i, o.Seed*1_000_003+uint64(i))
	}
	if err := parallel(ctx, runtime.NumCPU(), laptops, func(l *laptop) error { return l.generate(*o.Journal) }); err != nil {
		return nil, err
	}
	var journalBytes int64
	for _, l := range laptops {
		journalBytes += l.bytes
	}
	logf("%d Journals generated (%s) in %s", len(laptops), mib(journalBytes), time.Since(t0).Round(time.Second))

	// The server.
	data := filepath.Join(work, "server")
	cfgPath := filepath.Join(work, "xs-backup.toml")
	cfgText := serverConfig(data, &o)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		return nil, err
	}
	d, err := startDaemon(bin, cfgPath, filepath.Join(work, "xs-backupd.log"))
	if err != nil {
		return nil, err
	}
	defer d.stop()
	logf("xs-backupd (pid %d) listens on %s, metrics on %s", d.pid(), d.addr, d.metrics)
	t1 := time.Now()
	if err := parallel(ctx, 8, laptops, func(l *laptop) error { return l.register(ctx, d.addr) }); err != nil {
		return nil, err
	}
	logf("%d laptops registered in %s", len(laptops), time.Since(t1).Round(100*time.Millisecond))
	powerDir := filepath.Join(work, "power_supply") // empty: every laptop is on AC
	if err := os.MkdirAll(powerDir, 0o755); err != nil {
		return nil, err
	}

	// The school day: every timer fires within Spread of start.
	cpuBefore, err := cpuSeconds(d.pid())
	if err != nil {
		return nil, fmt.Errorf("read the daemon's CPU time: %w", err)
	}
	simBefore := selfCPU()
	start := time.Now().Add(200 * time.Millisecond)
	runCtx, cancel := context.WithDeadline(ctx, start.Add(o.Deadline))
	defer cancel()
	var serverDied error
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-d.exited:
			serverDied = fmt.Errorf("xs-backupd exited during the run (%v); see %s", d.waitErr, filepath.Join(work, "xs-backupd.log"))
			cancel()
		case <-runCtx.Done():
		}
	}()
	smp := &sampler{pid: d.pid(), metrics: d.metrics, log: logf, start: start, total: len(laptops)}
	smpDone := make(chan struct{})
	smpCtx, stopSampler := context.WithCancel(ctx)
	go func() { defer close(smpDone); smp.run(smpCtx) }()
	rng := rand.New(rand.NewPCG(o.Seed, 7))
	var wg sync.WaitGroup
	for _, l := range laptops {
		lo := lifeOptions{
			arrive:      start.Add(time.Duration(rng.Int64N(int64(o.Spread) + 1))),
			maxSlotWait: o.MaxSlotWait, comeback: o.Comeback, period: o.TimerPeriod, delay: o.TimerDelay,
			powerDir: powerDir, rng: rand.New(rand.NewPCG(o.Seed, rng.Uint64())),
		}
		wg.Add(1)
		go func() { defer wg.Done(); l.live(runCtx, lo) }()
	}
	wg.Wait()
	finished := time.Now()
	cancel()
	<-watchDone
	stopSampler()
	<-smpDone
	if serverDied != nil {
		return nil, serverDied
	}
	// Interrupted (Ctrl-C), the laptops stopped as at the deadline; the
	// report still says what happened.
	interrupted := ctx.Err() != nil
	if interrupted {
		logf("interrupted: reporting what happened so far")
	}
	final, err := scrape(context.WithoutCancel(ctx), d.metrics)
	if err != nil {
		return nil, fmt.Errorf("read the daemon's metrics at the end: %w", err)
	}
	cpuAfter, err := cpuSeconds(d.pid())
	if err != nil {
		return nil, fmt.Errorf("read the daemon's CPU time: %w", err)
	}
	simAfter := selfCPU()
	logf("backups over after %s", finished.Sub(start).Round(100*time.Millisecond))

	var verifyErrs []error
	verified := !o.SkipVerify && !interrupted
	if verified {
		vctx, vcancel := context.WithTimeout(ctx, 5*time.Minute)
		var done []*laptop
		for _, l := range laptops {
			if l.result != nil {
				done = append(done, l)
			}
		}
		var mu sync.Mutex
		err := parallel(vctx, 4, done, func(l *laptop) error {
			if err := l.verify(vctx); err != nil {
				mu.Lock()
				verifyErrs = append(verifyErrs, err)
				mu.Unlock()
			}
			return nil
		})
		vcancel()
		if err != nil {
			verifyErrs = append(verifyErrs, fmt.Errorf("the check stopped before every laptop was asked: %w", err))
		}
		logf("snapshots checked on the server: %d errors", len(verifyErrs))
	}
	hwm, err := procStatusKB(d.pid(), "VmHWM")
	if err != nil {
		return nil, fmt.Errorf("read the daemon's peak RSS: %w", err)
	}
	cpuTotal, _ := cpuSeconds(d.pid())
	if err := d.stop(); err != nil {
		return nil, fmt.Errorf("xs-backupd did not stop cleanly: %w (see %s)", err, filepath.Join(work, "xs-backupd.log"))
	}

	r := &Report{
		Options: o, Config: cfgText, Machine: machine(), Date: t0,
		Start: start, Finished: finished, SetupTime: start.Sub(t0),
		ServerPeakRSS: hwm, ServerCPU: cpuAfter - cpuBefore, ServerCPUTotal: cpuTotal,
		SimulatorCPU: simAfter - simBefore, JournalBytes: journalBytes,
		Samples: smp.peaks, Metrics: final,
		PackBytes: dirSize(filepath.Join(data, "packs")), IndexBytes: dirSize(filepath.Join(data, "index")),
		DataBytes: dirSize(data), Verified: verified, VerifyErrors: verifyErrs, Interrupted: interrupted,
	}
	r.collect(laptops)
	return r, nil
}

// parallel calls fn for every item with n workers and returns the first error.
func parallel[T any](ctx context.Context, n int, items []T, fn func(T) error) error {
	ch := make(chan T)
	var once sync.Once
	var first error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(it); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// cpuSeconds is a process's user+system CPU time, in seconds.
func cpuSeconds(pid int) (float64, error) {
	d, err := procstat.CPU(pid, false)
	return d.Seconds(), err
}

// selfCPU is this process's user+system CPU time (the simulated laptops').
func selfCPU() float64 { return procstat.Self().Seconds() }

// sampler watches the daemon while the laptops run: its RSS and the
// gauges of its metrics, keeping the peaks, and logs progress every 10 s.
type sampler struct {
	pid     int
	metrics string
	log     func(string, ...any)
	start   time.Time
	total   int
	peaks   Peaks
}

func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rss, _ := procStatusKB(s.pid, "VmRSS")
		m, err := scrape(ctx, s.metrics)
		if err != nil {
			continue
		}
		p := &s.peaks
		p.Samples++
		p.RSS = max(p.RSS, rss)
		p.Connections = max(p.Connections, int(m["xs_connections_active"]))
		p.Sessions = max(p.Sessions, int(m["xs_sessions_active"]))
		p.Waiting = max(p.Waiting, int(m["xs_sessions_waiting"]))
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			s.log("%5.0fs  committed %4.0f/%d  sessions %2.0f  holding a slot %4.0f  connections %4.0f  server RSS %s",
				time.Since(s.start).Seconds(), m["xs_commits_total"], s.total, m["xs_sessions_active"],
				m["xs_sessions_waiting"], m["xs_connections_active"], mib(rss))
		}
	}
}

// Peaks are the highest values sampled (every 250 ms) while the laptops ran.
type Peaks struct {
	Samples     int
	RSS         int64 // server VmRSS
	Connections int   // xs_connections_active
	Sessions    int   // xs_sessions_active
	Waiting     int   // xs_sessions_waiting: laptops holding a reservation
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
