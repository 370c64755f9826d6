package proto

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"
)

// Work is what a laptop expects its backup to send, from its file cache:
// the bytes of new or changed files and how many files that is. A zero Work
// (an older xo-backup that does not say) counts as a small job.
type Work struct {
	Bytes int64 `json:"bytes,omitempty"`
	Files int64 `json:"files,omitempty"`
}

// maxWork bounds what a laptop may declare: a laptop's Journal is a few
// GB; the bounds only keep a hostile or broken laptop's figures from
// overflowing the estimates (or, negative, from passing a large backup
// off as a small one).
const (
	maxWorkBytes = 1 << 40
	maxWorkFiles = 1 << 30
)

// sane is w within [0, maxWork].
func (w Work) sane() Work {
	return Work{Bytes: min(max(w.Bytes, 0), maxWorkBytes), Files: min(max(w.Files, 0), maxWorkFiles)}
}

// AdmissionConfig tunes admission. Zero values take the defaults shown;
// none of them is a capacity: the number of sessions that run at once is
// measured (see gradientLimit).
type AdmissionConfig struct {
	// MaxSessions is the most sessions the adaptive limits ever allow at
	// once, both lanes together (default 64); MinSessions the fewest
	// (default 2, at least 2: one place in each lane).
	MaxSessions, MinSessions int
	// StartSessions is where each lane's limit starts (default 4).
	StartSessions int
	// SmallBytes: a backup expected to send less is small (default 4 MiB).
	// Small backups and restores have a lane of their own, with its own
	// adaptive limit, so they never wait behind big first backups.
	SmallBytes int64
	// Hold is how long a hello that cannot start at once stays open,
	// waiting for a place (default 30 s); then the laptop is told when to
	// come back. MaxHeld caps the hellos held open at once (default 256):
	// beyond it laptops are told at once.
	Hold    time.Duration
	MaxHeld int
	// MaxComeBack is the furthest ahead a laptop is told to come back
	// (default 2 minutes), however long the queue: an estimate that came
	// out long is corrected on its next visit, and a laptop stays within
	// xo-backup's MaxSlotWait, connected, instead of leaving for a timer.
	MaxComeBack time.Duration
	// Interval is how often the limit and the drain rates are measured
	// (default 1 s); the limit moves at most once every three intervals.
	Interval time.Duration
	// Grace: a laptop told to come back at T that is not back by T+Grace
	// gives its place up (default 2 minutes).
	Grace time.Duration
	// RTTTolerance: round trips this much above their minimum lower the
	// limit (default 100 ms; the pacer keeps queueing delay well below).
	RTTTolerance time.Duration
}

func (c *AdmissionConfig) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxSessions, 64)
	def(&c.MinSessions, 2)
	def(&c.StartSessions, 4)
	def(&c.MaxHeld, 256)
	c.MinSessions = max(c.MinSessions, 2)
	c.MaxSessions = max(c.MaxSessions, c.MinSessions)
	c.StartSessions = min(max(c.StartSessions, c.MinSessions), c.MaxSessions)
	if c.SmallBytes <= 0 {
		c.SmallBytes = 4 << 20
	}
	defd(&c.Hold, 30*time.Second)
	defd(&c.Interval, time.Second)
	defd(&c.Grace, 2*time.Minute)
	defd(&c.MaxComeBack, 2*time.Minute)
	defd(&c.RTTTolerance, 100*time.Millisecond)
}

// sessionCost is the work a session counts for besides its bytes (its
// round trips, its scan of the index, its commit), so that throughput
// measured in work grows with concurrency even when sessions send little.
const sessionCost = 64 << 10

// admitReq is one laptop asking to start.
type admitReq struct {
	user       uint64
	restore    bool
	work       Work
	lastBackup time.Time
	hold       time.Duration // the longest the laptop lets a hello be held (0: Hold)
}

// lane is a class of session with places of its own.
type lane int

const (
	laneSmall lane = iota // small backups and restores
	laneBulk              // backups expected to send SmallBytes or more
	nLanes
)

// entry is a laptop waiting for a place: present (its hello is held open)
// or absent (told to come back at due).
type entry struct {
	admitReq
	lane    lane
	arrived time.Time // first asked: fairness ties and the wait histogram
	present bool
	due     time.Time     // when absent: the time it was told to come back
	ready   chan struct{} // closed when granted
	granted bool
}

// active is one laptop's running session (every connection of the laptop
// shares it: a second connection never takes a second place).
type active struct {
	lane  lane
	work  int64
	refs  int
	start time.Time
}

// admission decides when each laptop's session runs. It is driven by
// measurement, not by constants: the number of sessions at once follows an
// adaptive limit (gradientLimit), places come in two lanes so that small
// backups and restores never wait behind big first backups, waiting
// laptops are ordered by fairness (restores first, then the longest
// without a good backup), and a laptop that cannot start is told when to
// come back from the measured drain rate and its place in the queue. An
// idle server grants at once; nothing is batched.
//
// The core (arrive, leave, release, tick) takes the time as an argument
// and never blocks, so tests drive it with a simulated clock; request wraps
// it for the server, holding a hello open while a place is near.
type admission struct {
	cfg AdmissionConfig

	mu      sync.Mutex // guards everything below
	lim     [nLanes]gradientLimit
	waiting map[uint64]*entry
	running map[uint64]*active
	n       [nLanes]int   // sessions running per lane
	work    [nLanes]int64 // expected work of the running sessions
	held    int
	// Measurement since the last tick.
	doneN  [nLanes]int
	last   time.Time
	demand [nLanes]bool // the lane had sessions or waiters this interval
	// Drain rates (EWMA), sessions per second per lane and bytes per second.
	rate     [nLanes]float64
	byteRate float64
	// Counters for metrics.
	issued  int64
	expired int64
	granted int64
	hist    histogram
}

func newAdmission(cfg AdmissionConfig) *admission {
	cfg.setDefaults()
	a := &admission{cfg: cfg, waiting: map[uint64]*entry{}, running: map[uint64]*active{}, hist: newHistogram(waitBuckets)}
	lo := cfg.MinSessions / 2
	for l := range nLanes {
		a.lim[l] = newGradientLimit(lo, cfg.StartSessions, cfg.MaxSessions, cfg.RTTTolerance)
	}
	return a
}

// limit is how many sessions may run at once now, both lanes together.
func (a *admission) limit() int {
	return min(a.cfg.MaxSessions, a.lim[laneSmall].limit()+a.lim[laneBulk].limit())
}

func (a *admission) laneOf(r admitReq) lane {
	if r.restore || r.work.Bytes < a.cfg.SmallBytes {
		return laneSmall
	}
	return laneBulk
}

// fits says whether one more session of lane l may start now.
func (a *admission) fits(l lane) bool {
	total := a.n[laneSmall] + a.n[laneBulk]
	if l == laneBulk && a.n[laneBulk] >= a.cfg.MaxSessions-a.cfg.MinSessions/2 {
		return false // the places kept for small sessions
	}
	return a.n[l] < a.lim[l].limit() && total < a.cfg.MaxSessions
}

// before orders waiting laptops: restores, then the longest since a good
// backup (never backed up first), then the first to ask.
func before(x, y *entry) bool {
	if x.restore != y.restore {
		return x.restore
	}
	if !x.lastBackup.Equal(y.lastBackup) {
		return x.lastBackup.Before(y.lastBackup)
	}
	if !x.arrived.Equal(y.arrived) {
		return x.arrived.Before(y.arrived)
	}
	return x.user < y.user
}

// arrive is a laptop asking to start at now. If it is granted, e is nil;
// otherwise e is its place in the queue, present, and the caller waits on
// e.ready (or calls leave).
func (a *admission) arrive(now time.Time, r admitReq) (granted bool, e *entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.running[r.user]; s != nil {
		// A second connection of a laptop shares its place; but a small
		// place (a restore, a small backup) does not carry a big backup:
		// the laptop's session moves to the bulk lane if it has room now,
		// else the laptop comes back (e nil).
		if s.lane == laneSmall && a.laneOf(r) == laneBulk {
			a.n[laneSmall]-- // moved, not added
			if !a.fits(laneBulk) {
				a.n[laneSmall]++
				return false, nil
			}
			a.n[laneBulk]++
			s.lane = laneBulk
		}
		s.refs++
		return true, nil
	}
	e = &entry{admitReq: r, lane: a.laneOf(r), arrived: now, present: true, ready: make(chan struct{})}
	if old := a.waiting[r.user]; old != nil {
		// Back (early or on time), or a second hello while one is held:
		// the newest takes over the place, and its time in the queue.
		e.arrived = old.arrived
		if old.present {
			old.present = false
			a.held--
			close(old.ready)
		}
	}
	a.waiting[r.user] = e
	a.held++
	a.dispatch(now)
	if e.granted {
		return true, nil
	}
	return false, e
}

// dispatch grants places to present laptops in fairness order while the
// limit allows.
func (a *admission) dispatch(now time.Time) {
	if len(a.waiting) == 0 {
		return
	}
	var q []*entry
	for _, e := range a.waiting {
		if e.present {
			q = append(q, e)
		}
	}
	sort.Slice(q, func(i, j int) bool { return before(q[i], q[j]) })
	for _, e := range q {
		if !a.fits(e.lane) {
			continue
		}
		a.start(now, e)
	}
}

func (a *admission) start(now time.Time, e *entry) {
	delete(a.waiting, e.user)
	a.held--
	e.present, e.granted = false, true
	close(e.ready)
	a.running[e.user] = &active{lane: e.lane, work: e.work.Bytes, refs: 1, start: now}
	a.n[e.lane]++
	a.work[e.lane] += e.work.Bytes
	a.demand[e.lane] = true
	a.granted++
	a.hist.observe(now.Sub(e.arrived).Seconds())
}

func (e *entry) isGranted(a *admission) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return e.granted || a.waiting[e.user] != e
}

// leave is a present laptop that stops waiting: its hello's hold ran out
// (it keeps its place and is told to come back at the returned time), or
// it hung up (gone: it gives its place up). If it was granted meanwhile,
// ok is true and the caller owns the session.
func (a *admission) leave(now time.Time, e *entry, gone bool) (comeBack time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.granted {
		return time.Time{}, true
	}
	if a.waiting[e.user] != e || !e.present {
		return now, false // replaced by a newer hello of the same laptop
	}
	e.present = false
	a.held--
	if gone {
		delete(a.waiting, e.user)
		return now, false
	}
	e.due = now.Add(a.estimate(now, e))
	a.issued++
	return e.due, false
}

// estimate is how long e should expect to wait, from the measured drain
// rates and the laptops ahead of it in its lane (present or absent). It is
// on the early side: a laptop back a little early is held until its place
// frees.
func (a *admission) estimate(now time.Time, e *entry) time.Duration {
	var ahead []*entry
	for _, o := range a.waiting {
		if o != e && o.lane == e.lane && before(o, e) {
			ahead = append(ahead, o)
		}
	}
	limit := float64(max(a.lim[e.lane].limit(), 1))
	var secs float64
	measured := true
	switch {
	case e.lane == laneBulk && a.byteRate > 0:
		secs = a.bulkWait(now, ahead)
	case a.rate[e.lane] > 0:
		// At the lane's measured session rate, never assuming sessions
		// longer than a minute: early is cheap (a laptop back early is
		// held or told again), late leaves places empty.
		rate := max(a.rate[e.lane], limit/60)
		secs = float64(len(ahead)+1) / rate
	default:
		// No session of the lane has ended since the server started
		// (the first seconds of a morning, or first sessions that last
		// longer than a laptop lets its hello be held), so its drain
		// rate is not measured, and the byte rate does not say how
		// many sessions that is. All that is known is that a session
		// lasts at least as long as the oldest running one has run:
		// assume that long, so the laptop comes back early and is told
		// again from what is measured by then. (Assuming the floor of
		// a minute a session, as the measured rate does, told a class
		// of 30 to come back in 2 minutes while its first 4 sessions
		// needed 5 s, and the server sat idle with everyone away.)
		secs = float64(len(ahead)+1) * a.oldestRun(now, e.lane).Seconds() / limit
		measured = false
	}
	// (Capped before the conversion: a huge or infinite estimate, from
	// work a laptop declared, would overflow into a negative duration.)
	d := time.Duration(min(0.6*secs, a.cfg.MaxComeBack.Seconds()) * float64(time.Second))
	if !measured {
		d = min(d, a.cfg.Hold)
	}
	return min(max(d, time.Second), a.cfg.MaxComeBack)
}

// oldestRun is how long the longest-running session of lane l has run
// (at least Interval).
func (a *admission) oldestRun(now time.Time, l lane) time.Duration {
	d := a.cfg.Interval
	for _, s := range a.running {
		if s.lane == l {
			d = max(d, now.Sub(s.start))
		}
	}
	return d
}

// bulkWait is when a place in the bulk lane frees for the laptop behind
// ahead: the running big backups and those ahead share the measured byte
// rate equally (as flows on one bottleneck do); each place frees when its
// backup's remaining bytes are through, and goes to the next in line.
func (a *admission) bulkWait(now time.Time, ahead []*entry) float64 {
	sort.Slice(ahead, func(i, j int) bool { return before(ahead[i], ahead[j]) })
	var rem []float64
	var n int
	for _, s := range a.running {
		if s.lane == laneBulk {
			n++
		}
	}
	for _, s := range a.running {
		if s.lane == laneBulk {
			done := now.Sub(s.start).Seconds() * a.byteRate / float64(max(n, 1))
			rem = append(rem, max(float64(s.work)-done, 0))
		}
	}
	places := max(a.lim[laneBulk].limit(), 1)
	t := 0.0
	for len(rem) >= places || len(ahead) > 0 {
		if len(rem) < places {
			rem = append(rem, float64(ahead[0].work.Bytes))
			ahead = ahead[1:]
			continue
		}
		// The smallest remaining finishes first.
		k := 0
		for i := range rem {
			if rem[i] < rem[k] {
				k = i
			}
		}
		dt := rem[k] * float64(len(rem)) / a.byteRate
		t += dt
		got := rem[k]
		rem = slices.Delete(rem, k, k+1)
		for i := range rem {
			rem[i] -= got
		}
	}
	return t
}

// release ends one connection's share of a laptop's session.
func (a *admission) release(now time.Time, user uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.running[user]
	if s == nil {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(a.running, user)
	a.n[s.lane]--
	a.work[s.lane] -= s.work
	a.doneN[s.lane]++
	a.dispatch(now)
}

// sample is what the server measured over one interval.
type sample struct {
	bytes  int64         // bytes received from laptops
	qdelay time.Duration // queueing delay on the laptops' paths (0: none measured)
}

// tick measures an interval: drain rates, the adaptive limit, laptops
// that never came back. The server calls it every Interval.
func (a *admission) tick(now time.Time, s sample) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last.IsZero() {
		a.last = now
		return
	}
	dt := now.Sub(a.last).Seconds()
	if dt <= 0 {
		return
	}
	a.last = now
	const alpha = 0.3
	doneSmall := a.doneN[laneSmall]
	// A lane's limit held laptops back if one of them waits, connected,
	// or the lane is full: only then does the lane's drain rate measure
	// what the server can do (an idle lane, or one whose laptops are
	// away until told, measures only how few came).
	var binding [nLanes]bool
	for _, e := range a.waiting {
		if e.present {
			binding[e.lane] = true
		}
	}
	for l := range nLanes {
		binding[l] = binding[l] || a.n[l] >= a.lim[l].limit()
		r := float64(a.doneN[l]) / dt
		switch {
		case a.rate[l] == 0 && a.doneN[l] > 0:
			a.rate[l] = r
		case binding[l] || r > a.rate[l]:
			a.rate[l] += alpha * (r - a.rate[l])
		}
		a.doneN[l], a.demand[l] = 0, a.n[l] > 0
	}
	if a.n[laneSmall]+a.n[laneBulk] > 0 {
		r := float64(s.bytes) / dt
		if a.byteRate == 0 {
			a.byteRate = r
		} else {
			a.byteRate += alpha * (r - a.byteRate)
		}
	}
	// Laptops that were told to come back and did not give their place up.
	for u, e := range a.waiting {
		if !e.present && now.After(e.due.Add(a.cfg.Grace)) {
			delete(a.waiting, u)
			a.expired++
		}
	}
	stalled := s.bytes == 0 && a.n[laneSmall]+a.n[laneBulk] > 0
	a.lim[laneSmall].observe(limitSample{dt: dt, work: float64(doneSmall) * sessionCost, qdelay: s.qdelay, binding: binding[laneSmall], stalled: stalled})
	a.lim[laneBulk].observe(limitSample{dt: dt, work: float64(s.bytes), qdelay: s.qdelay, binding: binding[laneBulk], stalled: stalled})
	a.dispatch(now)
}

// request is admission for the server: grant at once, hold the hello open
// while a place is expected within Hold, or answer with a time to come
// back (a Grant with Slot set). now is the server's clock for the slot.
func (a *admission) request(ctx context.Context, r admitReq, clock func() time.Time) Grant {
	now := time.Now()
	ok, e := a.arrive(now, r)
	if ok {
		return Grant{Granted: true}
	}
	if e == nil {
		// Its running small session cannot take a big backup now.
		return Grant{Slot: clock().Add(min(a.cfg.Hold, a.cfg.MaxComeBack)).UTC()}
	}
	// Hold for Hold, and again while the laptop is next in line (its
	// estimate within Hold), as long as the laptop lets us.
	limit := now.Add(a.cfg.Hold)
	if r.hold > 0 {
		limit = now.Add(r.hold)
	}
	for {
		a.mu.Lock()
		holding := a.held <= a.cfg.MaxHeld && (time.Since(now) < a.cfg.Hold || a.estimate(time.Now(), e) <= a.cfg.Hold)
		a.mu.Unlock()
		left := min(time.Until(limit), a.cfg.Hold)
		if !holding || left <= 0 {
			break
		}
		t := time.NewTimer(left)
		select {
		case <-e.ready:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if _, granted := a.leave(time.Now(), e, true); granted {
				// Its place was given as it hung up: the caller starts
				// the session or gives the place back (a lost grant was
				// a place counted running for ever).
				return Grant{Granted: true}
			}
			return Grant{}
		}
		t.Stop()
		if e.isGranted(a) {
			break
		}
	}
	due, ok := a.leave(time.Now(), e, false)
	if ok {
		return Grant{Granted: true}
	}
	return Grant{Slot: clock().Add(time.Until(due)).UTC()}
}

// AdmissionStatus is what admission looks like now (for metrics and
// xs-admin status).
type AdmissionStatus struct {
	Limit        int     `json:"limit"`
	LimitSmall   int     `json:"limit_small"`
	Running      int     `json:"running"`
	RunningSmall int     `json:"running_small"`
	RunningWork  int64   `json:"running_work_bytes"`
	Waiting      int     `json:"waiting"`
	Held         int     `json:"held"`
	WaitingWork  int64   `json:"waiting_work_bytes"`
	DrainPerSec  float64 `json:"drain_sessions_per_second"`
	DrainBytes   float64 `json:"drain_bytes_per_second"`
	Granted      int64   `json:"granted"`
	Issued       int64   `json:"comeback_times_issued"`
	Expired      int64   `json:"expired"`
	// Queue lists the waiting laptops in the order they will start.
	Queue []QueuedLaptop `json:"queue,omitempty"`
	wait  histogram
}

// QueuedLaptop is one waiting laptop in AdmissionStatus.
type QueuedLaptop struct {
	User    uint64    `json:"user"`
	Restore bool      `json:"restore,omitempty"`
	Bytes   int64     `json:"bytes"`
	Present bool      `json:"present"`
	Due     time.Time `json:"due,omitzero"`
	Since   time.Time `json:"since"`
}

func (a *admission) status(queue bool) AdmissionStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := AdmissionStatus{Limit: a.limit(), LimitSmall: a.lim[laneSmall].limit(), Running: a.n[laneSmall] + a.n[laneBulk], RunningSmall: a.n[laneSmall],
		RunningWork: a.work[laneSmall] + a.work[laneBulk], Waiting: len(a.waiting), Held: a.held,
		DrainPerSec: a.rate[laneSmall] + a.rate[laneBulk], DrainBytes: a.byteRate,
		Granted: a.granted, Issued: a.issued, Expired: a.expired, wait: a.hist.clone()}
	var q []*entry
	for _, e := range a.waiting {
		st.WaitingWork += e.work.Bytes
		q = append(q, e)
	}
	if queue {
		sort.Slice(q, func(i, j int) bool { return before(q[i], q[j]) })
		for _, e := range q {
			st.Queue = append(st.Queue, QueuedLaptop{User: e.user, Restore: e.restore, Bytes: e.work.Bytes, Present: e.present, Due: e.due, Since: e.arrived})
		}
	}
	return st
}

// waitBuckets are the wait-time histogram's upper bounds, in seconds.
var waitBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600}

// histogram is a Prometheus-style cumulative histogram.
type histogram struct {
	bounds []float64
	counts []int64 // per bucket, plus one for +Inf
	sum    float64
	n      int64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

func (h histogram) clone() histogram {
	h.counts = append([]int64(nil), h.counts...)
	return h
}

// admitter is admission as the server uses it: measured (admission) or,
// for comparisons, the old fixed windows (fixedWindow).
type admitter interface {
	request(ctx context.Context, r admitReq, clock func() time.Time) Grant
	release(now time.Time, user uint64)
	tick(now time.Time, s sample)
	status(queue bool) AdmissionStatus
}

var (
	_ admitter = (*admission)(nil)
	_ admitter = (*fixedWindow)(nil)
)
