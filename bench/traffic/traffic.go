// Package traffic is the school-morning scenario of the benchmark suite:
// laptops whose backup timers fire over a spread of minutes back up, in
// real time, through an emulated school network (bench/netem: one shared
// bottleneck with a rate, a delay, loss and a drop-tail buffer) to one
// xs-backupd. It measures what section 8 of the brief holds traffic
// control to: every backup completes, the school is done close to what the
// network physically allows, the link stays busy while laptops wait, small
// deltas do not wait long, and backups leave room for a class on the same
// link (a probe datagram every 100 ms; a competing bulk download).
//
// Laptops are goroutines calling agent.Run as xo-backup run does (with the
// shipped timer and MaxSlotWait), each with its own identity, Journal
// (internal/journalgen) and file cache. Before the morning, every laptop
// but the first-backup share has backed up once (directly, not through
// the link); then 70% get a day of small changes, 25% none, and 5% have
// never backed up. The server runs in this process, or as a subprocess
// (Options.Server) so that its RSS and CPU are its own.
package traffic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/bench/netem"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// Options configure a morning. Zero values take the defaults shown.
type Options struct {
	// Laptops is how many laptops back up (default 150).
	Laptops int
	// Spread: each laptop's timer first fires at a random time in
	// [0, Spread] after the start (default 20 s).
	Spread time.Duration
	// Link is the school's network (default 10 Mbit/s, 5 ms one way).
	Link netem.LinkConfig
	// Loopback runs the morning without the link: the laptops reach the
	// server on loopback, so that the server's CPU, not a network, is
	// what they wait for (no probe, no bulk download; Link is ignored).
	Loopback bool
	// Old runs the admission xs-backup had before: 4 sessions at once,
	// 2-minute windows (proto.FixedWindow).
	Old bool
	// Deadline: laptops without a backup this long after the start count
	// as failed (default 10 minutes).
	Deadline time.Duration
	// MaxSlotWait, TimerPeriod and TimerDelay are the laptop's (defaults:
	// the shipped 10 minutes, 5 minutes and up to 1 minute).
	MaxSlotWait, TimerPeriod, TimerDelay time.Duration
	// Journal shapes each Journal (default journalgen.Small), and
	// FirstJournal those of the laptops that never backed up (default
	// Journal): a real school's first backups are its big ones.
	Journal, FirstJournal *journalgen.Options
	// DeltaBytes, if set, adds to each small-delta laptop's day of changes
	// a photo of DeltaBytes/2 to 3·DeltaBytes/2 (a day's changes in a
	// real Journal are photos and recordings, not only text).
	DeltaBytes int
	// Probe sends a small datagram through the link every 100 ms and
	// reports the delay it saw.
	Probe bool
	// BulkAt and BulkFor run a competing bulk download (QUIC, through
	// the same link) for BulkFor, from BulkAt after the start (none if
	// BulkFor is 0).
	BulkAt, BulkFor time.Duration
	// Pacing is the server's [traffic] target delay (0: the default
	// 25 ms; negative: off).
	TargetDelay time.Duration
	// Server, if set, starts the daemon as a subprocess (see Serve).
	Server func(ctx context.Context, cfg ServeConfig) (Daemon, error)
	// WorkDir holds everything (default a new temporary directory, removed).
	WorkDir string
	Seed    uint64
	Log     io.Writer
}

func (o *Options) setDefaults() {
	if o.Laptops <= 0 {
		o.Laptops = 150
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Spread, 20*time.Second)
	def(&o.Deadline, 10*time.Minute)
	def(&o.MaxSlotWait, 10*time.Minute)
	def(&o.TimerPeriod, 5*time.Minute)
	def(&o.TimerDelay, time.Minute)
	if o.Link.Rate == 0 {
		o.Link.Rate = 10e6
		if o.Link.Delay == 0 {
			o.Link.Delay = 5 * time.Millisecond
		}
	}
	if o.Journal == nil {
		j := journalgen.Small(0)
		o.Journal = &j
	}
	if o.FirstJournal == nil {
		o.FirstJournal = o.Journal
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Class is what a laptop has to back up this morning.
type Class string

// The classes of the mix.
const (
	SmallDelta Class = "small delta"  // a day of changes (70%)
	Unchanged  Class = "unchanged"    // nothing new (25%)
	First      Class = "first backup" // never backed up (5%)
)

func classOf(i, n int) Class {
	// Every twentieth laptop has never backed up; of the rest, 70 in 95
	// have a day of changes.
	switch {
	case i%20 == 19:
		return First
	case (i%20)*95/19 < 70:
		return SmallDelta
	default:
		return Unchanged
	}
}

type laptop struct {
	i       int
	class   Class
	state   agent.State
	journal string

	arrive   time.Time
	done     time.Time
	session  time.Duration
	wire     int64
	runs     int
	errs     map[string]int    // runs that did not back up, by what ended them
	examples map[string]string // the last message of each kind of error
	lastErr  string
}

// Sample is the state of the morning at one second.
type Sample struct {
	T        time.Duration
	Waiting  float64 // laptops waiting for a place
	Running  float64 // sessions running
	Limit    float64 // admission's limit
	LinkBits float64 // bits per second through the link
	Paced    float64 // the server's paced rate, bits per second (0: unpaced)
	QDelay   time.Duration
	// ServerCPU is the CPU the server used in the second, in cores
	// (subprocess only); MachineBusy the fraction of the machine's CPU
	// time that was busy (laptops and server together).
	ServerCPU, MachineBusy float64
	// MachineIOWait is the fraction of the machine's CPU time spent
	// idle waiting for the disk.
	MachineIOWait float64
}

// Result is what a morning measured.
type Result struct {
	Options   Options
	Start     time.Time
	Completed int
	Failed    int
	ByClass   map[Class]int
	FailedBy  map[string]int
	Examples  map[string]string
	// Wall is from the start to the last backup done; Physical is what
	// the network allows: every laptop's wire bytes over the link rate,
	// after the last timer fired... counted as spread + bytes / rate.
	Wall, Physical time.Duration
	WireBytes      int64
	// Waits are, per class, each laptop's time from its timer's first
	// firing to the start of its session (run time minus session time).
	Waits map[Class][]time.Duration
	// LinkUseWaiting is the link's mean utilisation (bytes through it,
	// backups and anything else, over its rate) during the seconds with
	// laptops waiting: the target "link ≥ 85% busy while anyone waits".
	// BusyWhileWaiting is the stricter share of those seconds in which
	// the link carried at least 85% of its rate.
	LinkUseWaiting   float64
	BusyWhileWaiting float64
	SecondsWaiting   int
	// ServerCPUWaiting is the server's mean CPU use, in cores, over the
	// seconds with laptops waiting; MachineBusyWaiting the machine's busy
	// fraction over the same seconds; CPUs the machine's count.
	ServerCPUWaiting, MachineBusyWaiting, MachineIOWaitWaiting float64
	CPUs                                                       int
	Samples                                                    []Sample
	// Probe: the delay each probe datagram saw beyond the link's own
	// delay, p50 and p95, while sessions ran, and how many were lost.
	ProbeAdded50, ProbeAdded95 time.Duration
	ProbeLost, ProbeCount      int
	// Bulk: the competing download's rate, and its share of the link,
	// while backups ran.
	BulkBits, BulkShare float64
	// Server: peak RSS and CPU seconds (subprocess only).
	ServerRSS int64
	ServerCPU float64
	Metrics   map[string]float64
	Expired   float64
}

// Run runs one morning.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.setDefaults()
	work := o.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "xs-traffic-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	// The server.
	sc := ServeConfig{Data: filepath.Join(work, "server"), Old: o.Old, TargetDelay: o.TargetDelay}
	start := o.Server
	if start == nil {
		start = startInProcess
	}
	srv, err := start(ctx, sc)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	// The laptops, registered and backed up once, directly.
	fmt.Fprintf(o.Log, "preparing %d laptops in %s\n", o.Laptops, work)
	laps := make([]*laptop, o.Laptops)
	if err := prepare(ctx, o, work, srv.Addr(), laps); err != nil {
		return nil, err
	}
	// The network.
	var link *netem.Link
	if !o.Loopback {
		link = netem.NewLink(o.Link)
		defer link.Close()
		relay, err := netem.NewRelay(link, srv.Addr())
		if err != nil {
			return nil, err
		}
		defer relay.Close()
		for _, l := range laps {
			if err := pointAt(l.state, relay.Addr()); err != nil {
				return nil, err
			}
		}
	}
	res := &Result{Options: o, ByClass: map[Class]int{}, FailedBy: map[string]int{}, Examples: map[string]string{}, Waits: map[Class][]time.Duration{}}
	mctx, cancel := context.WithTimeout(ctx, o.Deadline)
	defer cancel()
	res.Start = time.Now()
	var probe *netem.Probe
	if o.Probe && link != nil {
		probe = link.StartProbe(64, 100*time.Millisecond)
	}
	var bulk *bulkFlow
	if o.BulkFor > 0 && link != nil {
		if bulk, err = startBulk(link); err != nil {
			return nil, err
		}
		defer bulk.Close()
	}
	// Sample once a second.
	var samples []Sample
	var smu sync.Mutex
	sdone := make(chan struct{})
	go func() {
		defer close(sdone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		_, lastCPU := srv.Usage()
		lastBusy, lastIO, lastTotal := machineCPU()
		lastT := time.Now()
		for {
			select {
			case <-mctx.Done():
				return
			case <-t.C:
			}
			var st netem.Stats
			if link != nil {
				st = link.Stats()
			}
			a := srv.Admission()
			s := Sample{T: time.Since(res.Start), Waiting: a.Waiting, Running: a.Running, Limit: a.Limit,
				LinkBits: float64(st.Bytes-last) * 8, Paced: a.Paced * 8, QDelay: a.QDelay}
			last = st.Bytes
			now := time.Now()
			_, cpu := srv.Usage()
			busy, iowait, total := machineCPU()
			s.ServerCPU = (cpu - lastCPU) / now.Sub(lastT).Seconds()
			if total > lastTotal {
				s.MachineBusy = (busy - lastBusy) / (total - lastTotal)
				s.MachineIOWait = (iowait - lastIO) / (total - lastTotal)
			}
			lastCPU, lastBusy, lastIO, lastTotal, lastT = cpu, busy, iowait, total, now
			smu.Lock()
			samples = append(samples, s)
			smu.Unlock()
		}
	}()
	if bulk != nil {
		go bulk.window(mctx, res.Start.Add(o.BulkAt), o.BulkFor)
	}
	// The morning.
	var wg sync.WaitGroup
	remaining := make(chan struct{}, o.Laptops)
	rng := rand.New(rand.NewPCG(o.Seed, 99))
	for _, l := range laps {
		l.arrive = res.Start.Add(time.Duration(rng.Int64N(int64(o.Spread) + 1)))
		seed := rng.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.live(mctx, o, rand.New(rand.NewPCG(seed, 3)))
			remaining <- struct{}{}
		}()
	}
	doneAll := make(chan struct{})
	go func() { wg.Wait(); close(doneAll) }()
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-doneAll:
			break wait
		case <-progress.C:
			n := 0
			for _, l := range laps {
				if !l.done.IsZero() {
					n++
				}
			}
			a := srv.Admission()
			fmt.Fprintf(o.Log, "%3.0fs: %d of %d done, %v waiting, %v running, limit %v\n", time.Since(res.Start).Seconds(), n, o.Laptops, a.Waiting, a.Running, a.Limit)
		}
	}
	cancel()
	<-sdone
	// Results.
	res.Samples = samples
	var last time.Time
	for _, l := range laps {
		res.WireBytes += l.wire
		if l.done.IsZero() {
			res.Failed++
			k := "not done by the deadline"
			if l.lastErr != "" {
				k += ": " + l.lastErr
			}
			res.FailedBy[k]++
			continue
		}
		res.Completed++
		res.ByClass[l.class]++
		if l.done.After(last) {
			last = l.done
		}
		w := l.done.Sub(l.arrive) - l.session
		res.Waits[l.class] = append(res.Waits[l.class], max(w, 0))
		for k, n := range l.errs {
			res.FailedBy["run retried, "+k] += n
		}
		maps.Copy(res.Examples, l.examples)
	}
	for c := range res.Waits {
		slices.Sort(res.Waits[c])
	}
	res.Wall = last.Sub(res.Start)
	// IP and UDP headers come on top of QUIC's bytes (~1.4 KB packets).
	res.Physical = o.Spread
	if !o.Loopback {
		res.Physical += time.Duration(float64(res.WireBytes) * (1 + 28.0/1350) * 8 / o.Link.Rate * float64(time.Second))
	}
	res.CPUs = runtime.NumCPU()
	for _, s := range samples {
		if s.Waiting > 0 {
			res.SecondsWaiting++
			if o.Link.Rate > 0 {
				res.LinkUseWaiting += s.LinkBits / o.Link.Rate
			}
			if s.LinkBits >= 0.85*o.Link.Rate {
				res.BusyWhileWaiting++
			}
			res.ServerCPUWaiting += s.ServerCPU
			res.MachineBusyWaiting += s.MachineBusy
			res.MachineIOWaitWaiting += s.MachineIOWait
		}
	}
	if res.SecondsWaiting > 0 {
		res.LinkUseWaiting /= float64(res.SecondsWaiting)
		res.BusyWhileWaiting /= float64(res.SecondsWaiting)
		res.ServerCPUWaiting /= float64(res.SecondsWaiting)
		res.MachineBusyWaiting /= float64(res.SecondsWaiting)
		res.MachineIOWaitWaiting /= float64(res.SecondsWaiting)
	}
	if probe != nil {
		ds, lost := probe.Stop()
		base := o.Link.Delay + time.Duration(float64((64+28)*8)/o.Link.Rate*float64(time.Second))
		var added []time.Duration
		for _, d := range ds {
			added = append(added, max(d-base, 0))
		}
		slices.Sort(added)
		res.ProbeCount, res.ProbeLost = len(ds)+lost, lost
		res.ProbeAdded50, res.ProbeAdded95 = pctl(added, 0.5), pctl(added, 0.95)
	}
	if bulk != nil {
		res.BulkBits = bulk.rate()
		res.BulkShare = res.BulkBits / o.Link.Rate
	}
	res.Metrics = srv.Metrics()
	res.Expired = res.Metrics["xs_admission_expired_total"]
	res.ServerRSS, res.ServerCPU = srv.Usage()
	return res, nil
}

// machineCPU reads the machine's busy, iowait and total CPU time (in
// USER_HZ ticks) from /proc/stat; zeros where there is none.
func machineCPU() (busy, iowait, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, 0
	}
	iowait, _ = strconv.ParseFloat(f[5], 64)
	for i, v := range f[1:min(len(f), 9)] { // guest time is in user already
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy, iowait, total
}

func pctl(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// prepare generates the Journals, registers every laptop and backs up all
// but the first-backup share once, then applies a day of changes to the
// small-delta share.
func prepare(ctx context.Context, o Options, work, addr string, laps []*laptop) error {
	power := filepath.Join(work, "power")
	os.MkdirAll(power, 0o755)
	sem := make(chan struct{}, 4)
	errc := make(chan error, len(laps))
	var wg sync.WaitGroup
	for i := range laps {
		dir := filepath.Join(work, fmt.Sprintf("laptop%04d", i))
		l := &laptop{i: i, class: classOf(i, len(laps)), state: agent.State{Dir: filepath.Join(dir, "state")}, journal: filepath.Join(dir, "journal"), errs: map[string]int{}, examples: map[string]string{}}
		laps[i] = l
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			j := *o.Journal
			if l.class == First {
				j = *o.FirstJournal
			}
			j.Seed = o.Seed*1000 + uint64(i)
			if _, err := journalgen.Generate(l.journal, j); err != nil {
				errc <- err
				return
			}
			if _, err := agent.Register(ctx, l.state, agent.RegisterOptions{Server: addr, Serial: fmt.Sprintf("TRAF%04d", i), Nickname: "traffic"}); err != nil {
				errc <- fmt.Errorf("register laptop %d: %w", i, err)
				return
			}
			if l.class == First {
				return
			}
			res, err := agent.Run(ctx, l.state, agent.RunOptions{Source: l.journal, PowerSupplyDir: power, Force: true, Host: "traffic"})
			if err == nil && res.Outcome != agent.Done {
				err = fmt.Errorf("%s: %s", res.Outcome, res.Reason)
			}
			if err != nil {
				errc <- fmt.Errorf("the day-before backup of laptop %d: %w", i, err)
				return
			}
			// The backup was yesterday: today's timer runs.
			os.Remove(filepath.Join(l.state.Dir, "last.json"))
			if l.class == SmallDelta {
				if err := journalgen.Mutate(l.journal, j.Seed, 1); err != nil {
					errc <- err
				}
				if o.DeltaBytes > 0 {
					r := rand.New(rand.NewPCG(j.Seed, 11))
					e := journalgen.Entry{UID: fmt.Sprintf("%02x%030x", i%256, j.Seed), Title: "Photo of today", Activity: "org.laptop.RecordActivity",
						Mime: "image/jpeg", Data: journalgen.Random(r, o.DeltaBytes/2+r.IntN(o.DeltaBytes+1))}
					if err := journalgen.WriteEntry(l.journal, e, time.Now()); err != nil {
						errc <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// pointAt makes the laptop reach the server at addr (the relay), as if
// the school's network were in between from the start.
func pointAt(st agent.State, addr string) error {
	path := filepath.Join(st.Dir, "server.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	m["server"] = addr
	b, _ = json.Marshal(m)
	return os.WriteFile(path, b, 0o600)
}

// live is the laptop's morning: its timer fires at l.arrive and then every
// TimerPeriod plus up to TimerDelay after a run that did not back up.
func (l *laptop) live(ctx context.Context, o Options, rng *rand.Rand) {
	power := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(l.state.Dir))), "power")
	if !sleepUntil(ctx, l.arrive) {
		return
	}
	for {
		l.runs++
		res, err := agent.Run(ctx, l.state, agent.RunOptions{Source: l.journal, PowerSupplyDir: power, MaxSlotWait: o.MaxSlotWait, Host: "traffic"})
		if res != nil {
			l.wire += res.WireSent + res.WireReceived
		}
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			k := "error"
			var pe *proto.Error
			if errors.As(err, &pe) {
				k = pe.Kind.String()
			} else if errors.Is(err, proto.ErrUnreachable) {
				k = "unreachable"
			}
			l.errs["error: "+k]++
			l.lastErr = err.Error()
			l.examples["error: "+k] = l.lastErr
		case res.Outcome == agent.Done:
			l.done, l.session = time.Now(), res.Backup.Duration
			return
		case res.Outcome == agent.Later:
			// Told when to come back: admission's answer, not an error.
		default:
			l.lastErr = "skipped: " + res.Reason
			l.errs[l.lastErr]++
		}
		next := time.Now().Add(o.TimerPeriod + time.Duration(rng.Int64N(int64(o.TimerDelay)+1)))
		if !sleepUntil(ctx, next) {
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
