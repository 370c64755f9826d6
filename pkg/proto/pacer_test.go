package proto

import (
	"context"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

// TestPacerFollowsDelay: below the target delay a used rate grows, above
// it the rate falls, an unused rate does not grow, and the hard cap holds
// whatever the delay says.
func TestPacerFollowsDelay(t *testing.T) {
	p := newPacer(PacingConfig{})
	now := t0
	step := func(q time.Duration, used bool) float64 {
		if used {
			p.used = int64(p.rate * paceEvery.Seconds())
		}
		now = now.Add(paceEvery)
		p.update(now, paceEvery, q, 0)
		r, _ := p.status()
		return r
	}
	r0, _ := p.status()
	r1 := step(0, true)
	if r1 <= r0 {
		t.Fatalf("no queue, rate used: %v -> %v", r0, r1)
	}
	r2 := step(0, false)
	if r2 != r1 {
		t.Fatalf("rate unused grew: %v -> %v", r1, r2)
	}
	r3 := step(100*time.Millisecond, false)
	if r3 >= r2 {
		t.Fatalf("queue of 100 ms, target 25: %v -> %v", r2, r3)
	}
	r4 := step(25*time.Millisecond, true)
	if r4 != r3 {
		t.Fatalf("at the target the rate moved: %v -> %v", r3, r4)
	}
	for range 200 {
		step(time.Second, true)
	}
	if r, _ := p.status(); r != p.cfg.MinRate {
		t.Fatalf("a long queue drove the rate to %v, floor %v", r, p.cfg.MinRate)
	}
	capped := newPacer(PacingConfig{TargetDelay: -1, Cap: func(time.Time) int64 { return 1 << 20 }})
	for range 50 {
		capped.used = 1 << 30
		capped.update(now, paceEvery, 0, 0)
	}
	if r, _ := capped.status(); r != 1<<20 {
		t.Fatalf("capped at 1 MiB/s, paced %v", r)
	}
	// Reads at the cap: 512 KiB takes about half a second after the burst.
	start := time.Now()
	for range 8 {
		capped.wait(context.Background(), 64<<10, false)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("512 KiB at 1 MiB/s took %v", d)
	}
}

// TestPacerTargetFromBase: the target is half the base round trip, between
// MinTargetDelay (15 ms) and the configured most; with a 10 ms LAN a queue
// of 17 ms is over the target (15 ms) and the rate falls, where 25 ms
// would let it grow.
func TestPacerTargetFromBase(t *testing.T) {
	p := newPacer(PacingConfig{})
	for _, c := range []struct{ base, want time.Duration }{
		{100 * time.Microsecond, 15 * time.Millisecond}, // loopback: the floor
		{10 * time.Millisecond, 15 * time.Millisecond},
		{40 * time.Millisecond, 20 * time.Millisecond},
		{200 * time.Millisecond, 25 * time.Millisecond}, // the configured most
	} {
		if got := p.targetFor(c.base); got != c.want {
			t.Errorf("base %v: target %v, want %v", c.base, got, c.want)
		}
	}
	if got := newPacer(PacingConfig{TargetDelay: 2 * time.Millisecond}).targetFor(time.Second); got != MinTargetDelay {
		t.Errorf("a configured most under the floor: target %v", got)
	}
	now := t0
	r0, _ := p.status()
	p.used = int64(p.rate * paceEvery.Seconds())
	p.update(now.Add(paceEvery), paceEvery, 17*time.Millisecond, 10*time.Millisecond)
	if r, _ := p.status(); r >= r0 {
		t.Fatalf("17 ms of queue on a 10 ms path: %v -> %v", r0, r)
	}
	// Without a base measured, the target stays where it was.
	p.update(now.Add(2*paceEvery), paceEvery, -1, 0)
	if p.target != 15*time.Millisecond {
		t.Fatalf("target %v after an interval without samples", p.target)
	}
}

// TestPacerFloorAndCeiling: the rate never falls under MinRate however long
// the queue, and never grows past twice what the laptops use.
func TestPacerFloorAndCeiling(t *testing.T) {
	p := newPacer(PacingConfig{MinRate: 100e3})
	now := t0
	for range 600 {
		now = now.Add(paceEvery)
		p.used = int64(p.rate * paceEvery.Seconds())
		p.update(now, paceEvery, 50*time.Millisecond, 10*time.Millisecond)
	}
	if r, _ := p.status(); r != 100e3 {
		t.Fatalf("floor: %v", r)
	}
	// Laptops that send 1 MB/s whatever the pace (their own limit).
	for range 600 {
		now = now.Add(paceEvery)
		p.used = int64(min(p.rate, 1e6) * paceEvery.Seconds())
		p.update(now, paceEvery, 0, 10*time.Millisecond)
	}
	if r, _ := p.status(); r < 1e6 || r > 2.1e6 {
		t.Fatalf("ceiling: laptops use 1 MB/s, paced %v", r)
	}
}

// TestPacerSmallLine: on a simulated clock, a small session's reads go
// at once even while a big backup has booked seconds ahead, the big
// backup's line moves back by the small reads' share, and both lines
// together keep the rate.
func TestPacerSmallLine(t *testing.T) {
	p := newPacer(PacingConfig{Cap: func(time.Time) int64 { return 1 << 20 }, TargetDelay: -1})
	now := t0
	var bulkAt time.Time
	for range 32 { // 2 MiB booked: two seconds at 1 MiB/s
		bulkAt = p.reserve(now, 64<<10, false)
	}
	if d := bulkAt.Sub(now); d < 1900*time.Millisecond {
		t.Fatalf("the 32nd 64 KiB read at 1 MiB/s is due after %v", d)
	}
	var smallAt time.Time
	for i := range 16 { // 256 KiB of a small session
		smallAt = p.reserve(now, 16<<10, true)
		if i == 0 && smallAt.After(now) {
			t.Fatalf("the first small read waits %v behind the big one", smallAt.Sub(now))
		}
	}
	if d := smallAt.Sub(now); d > 250*time.Millisecond {
		t.Fatalf("256 KiB of small reads done after %v", d)
	}
	next := p.reserve(now, 64<<10, false)
	// 2 MiB + 256 KiB already booked at 1 MiB/s.
	if d := next.Sub(now); d < 2150*time.Millisecond || d > 2300*time.Millisecond {
		t.Fatalf("the big line's next read is due after %v, want ~2.25 s", d)
	}
	// Unpaced: nothing waits.
	u := newPacer(PacingConfig{TargetDelay: -1})
	for range 100 {
		if at := u.reserve(now, 64<<10, false); at.After(now) {
			t.Fatal("an unpaced read waited")
		}
	}
}

// TestDelayMeterLowerQuartile: the school's delay is the lower quartile of
// the last second's fresh samples, so one late acknowledgement is not a
// queue; a queue that lasts is; with no fresh sample nothing is measured.
func TestDelayMeterLowerQuartile(t *testing.T) {
	m := newDelayMeter()
	now := t0
	ms := time.Millisecond
	feed := func(rtt time.Duration) (time.Duration, time.Duration) {
		now = now.Add(paceEvery)
		return m.observe(now, []connObs{{key: 1, latest: rtt, min: 10 * ms}})
	}
	for i, r := range []time.Duration{10, 11, 10, 40, 10, 12, 10, 11, 10, 11} {
		q, base := feed(r*ms + time.Duration(i))
		if q > 2*ms || base != 10*ms {
			t.Fatalf("after a %v sample: delay %v, base %v", r*ms, q, base)
		}
	}
	var q time.Duration
	for i := range 10 { // fresh samples (the same value again is not one)
		q, _ = feed(30*ms + time.Duration(i))
	}
	if q < 20*ms || q > 20*ms+10 {
		t.Fatalf("a queue of 20 ms measured as %v", q)
	}
	// The same sample again is not a fresh one: after a second, nothing.
	last := 30*ms + 9
	for range 10 {
		q, _ = feed(last)
	}
	if q >= 0 {
		t.Fatalf("no fresh sample for a second, measured %v", q)
	}
}

// TestDelayMeterSparse: at a low pace each connection gives a round trip
// only now and then (its flow-control credit comes back in steps); the
// samples of all connections together still measure the queue every tick.
func TestDelayMeterSparse(t *testing.T) {
	m := newDelayMeter()
	now := t0
	ms := time.Millisecond
	obs := make([]connObs, 32)
	for i := range obs {
		obs[i] = connObs{key: i, latest: 10 * ms, min: 10 * ms}
	}
	for tick := range 100 {
		now = now.Add(paceEvery)
		// One connection in 16 gets a new sample each tick: 20 a second in all.
		for i := range obs {
			if (i+tick)%16 == 0 {
				obs[i].latest = 10*ms + time.Duration(tick)
				if tick >= 50 {
					obs[i].latest += 12 * ms // a queue from the 50th tick on
				}
			}
		}
		q, _ := m.observe(now, obs)
		switch {
		case tick > 0 && tick < 50 && (q < 0 || q > ms):
			t.Fatalf("tick %d, no queue: delay %v", tick, q)
		case tick >= 60 && (q < 12*ms || q > 13*ms):
			t.Fatalf("tick %d, a queue of 12 ms: delay %v", tick, q)
		}
	}
}

// TestDelayMeterBase: a laptop that connects into a full queue measures it
// against the path's base (another connection's, open or ended within ten
// minutes), not against its own minimum; a loopback connection (the
// server's tools, a benchmark's preparation) is another path and never
// the base of a laptop's.
func TestDelayMeterBase(t *testing.T) {
	m := newDelayMeter()
	now := t0
	ms := time.Millisecond
	step := func(obs ...connObs) (time.Duration, time.Duration) {
		now = now.Add(paceEvery)
		return m.observe(now, obs)
	}
	// Loopback connections come and go (the preparation).
	for i := range 4 {
		step(connObs{key: "lo", latest: 2200*time.Microsecond + time.Duration(i), min: 2 * time.Millisecond}) // loopback on a busy machine
	}
	for range 12 {
		step()
	}
	// A laptop on a 10 ms path, then one that joins into a 30 ms queue.
	var q, base time.Duration
	for i := range 12 {
		q, base = step(connObs{key: "a", latest: 12*ms + time.Duration(i), min: 10 * ms})
	}
	if q < 2*ms || q > 2*ms+12 || base != 10*ms {
		t.Fatalf("a 10 ms path after loopback connections: delay %v base %v", q, base)
	}
	step() // a ends
	for i := range 12 {
		q, base = step(connObs{key: "b", latest: 40*ms + time.Duration(i), min: 40 * ms})
	}
	if q < 30*ms || q > 30*ms+12 || base != 10*ms {
		t.Fatalf("joined into a 30 ms queue: delay %v base %v", q, base)
	}
	// Ten minutes later the ended connection's base is forgotten.
	now = now.Add(baseHistory)
	for i := range 12 {
		q, base = step(connObs{key: "c", latest: 45*ms + time.Duration(i), min: 40 * ms})
	}
	if q < 5*ms || q > 5*ms+12 || base != 40*ms {
		t.Fatalf("after ten minutes: delay %v base %v", q, base)
	}
}

// TestDelayMeterLocalDelay: round trips that grow because the server itself
// runs late (its CPU is busy) are not a queue on the network.
func TestDelayMeterLocalDelay(t *testing.T) {
	m := newDelayMeter()
	now := t0
	ms := time.Millisecond
	var q time.Duration
	for i := range 10 {
		now = now.Add(paceEvery)
		m.late(6 * ms)
		q, _ = m.observe(now, []connObs{{key: 1, latest: 17*ms + time.Duration(i), min: 10 * ms}})
	}
	if q < ms || q > ms+10 {
		t.Fatalf("17 ms round trips on a 10 ms path with the server 6 ms late: delay %v, want 1 ms", q)
	}
	for i := range 10 {
		now = now.Add(paceEvery)
		m.late(0)
		q, _ = m.observe(now, []connObs{{key: 1, latest: 17*ms + time.Duration(i+10), min: 10 * ms}})
	}
	if q < 7*ms || q > 7*ms+20 {
		t.Fatalf("the same round trips with the server on time: delay %v, want 7 ms", q)
	}
}

// TestPacerSlowStart: a new server finds a fast path in about a second
// (not the nine the proportional rule needs from 1 MiB/s), and the first
// queue ends the slow start and takes its last step back; from then on the
// rate moves by the proportional rule only.
func TestPacerSlowStart(t *testing.T) {
	p := newPacer(PacingConfig{})
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	step := func(q time.Duration, used bool) float64 {
		if used {
			p.used = int64(p.rate * paceEvery.Seconds())
		}
		now = now.Add(paceEvery)
		p.update(now, paceEvery, q, 0)
		r, _ := p.status()
		return r
	}
	var r float64
	for range 12 { // 1.2 s, no queue, every byte of the rate used
		r = step(time.Millisecond, true)
	}
	if r < 100e6 {
		t.Fatalf("after 1.2 s of an empty path the pace is %.1f MB/s", r/1e6)
	}
	if step(time.Millisecond, false) != r {
		t.Fatal("an unused rate grew in slow start")
	}
	q := step(40*time.Millisecond, true) // the first queue
	if q >= r/slowStartStep {
		t.Fatalf("the first queue left the rate at %.1f MB/s (from %.1f)", q/1e6, r/1e6)
	}
	after := step(time.Millisecond, true)
	if after > q*math.Exp(0.5*paceEvery.Seconds())*1.0001 {
		t.Fatalf("after slow start the rate grew %.3fx in one update", after/q)
	}
	// A queue at once (a busy link when the server starts): no growth.
	busy := newPacer(PacingConfig{})
	r0, _ := busy.status()
	busy.used = int64(busy.rate)
	busy.update(t0.Add(paceEvery), paceEvery, 50*time.Millisecond, 0)
	if r1, _ := busy.status(); r1 >= r0 {
		t.Fatalf("a queue from the start: %.2f -> %.2f MB/s", r0/1e6, r1/1e6)
	}
	// The first queue is judged against the target of the measured path
	// (half its base round trip, at least MinTargetDelay), not against
	// TargetDelay: 20 ms on a 20 ms path (target 15 ms) ends the slow start.
	lan := newPacer(PacingConfig{})
	lan.used = int64(lan.rate * paceEvery.Seconds())
	lan.update(t0.Add(paceEvery), paceEvery, 20*time.Millisecond, 20*time.Millisecond)
	if r1, _ := lan.status(); !lan.probed || r1 >= r0 {
		t.Fatalf("20 ms of queue on a 20 ms path: slow start over %v, %.2f -> %.2f MB/s", lan.probed, r0/1e6, r1/1e6)
	}
}
