package proto

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestPacerFollowsDelay: below the target delay a used rate grows, above
// it the rate falls, an unused rate does not grow, and the hard cap holds
// whatever the delay says.
func TestPacerFollowsDelay(t *testing.T) {
	p := newPacer(PacingConfig{})
	now := time.Now()
	step := func(q time.Duration, used bool) float64 {
		if used {
			p.used = int64(p.rate * paceEvery.Seconds())
		}
		p.update(now, paceEvery, q)
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
		capped.update(now, paceEvery, 0)
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
	// A priority read never waits.
	start = time.Now()
	for range 8 {
		capped.wait(context.Background(), 64<<10, true)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("priority reads waited %v", d)
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
		p.update(now, paceEvery, q)
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
	busy.update(t0.Add(paceEvery), paceEvery, 50*time.Millisecond)
	if r1, _ := busy.status(); r1 >= r0 {
		t.Fatalf("a queue from the start: %.2f -> %.2f MB/s", r0/1e6, r1/1e6)
	}
}
