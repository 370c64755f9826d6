package proto

import (
	"context"
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
