package proto

import (
	"context"
	"math"
	"sync"
	"time"
)

// PacingConfig paces what all laptops upload together, through how fast the
// server reads their streams: QUIC's flow-control credit follows the reads,
// so a paced server slows the laptops' senders down without a single lost
// packet. Zero values take the defaults shown.
type PacingConfig struct {
	// TargetDelay is the most queueing delay backups may add on the
	// laptops' paths (default 25 ms; RFC 6817 allows up to 100, far too
	// much for a class's interactive traffic on a LAN). The target the
	// controller keeps is half the measured base round trip, between
	// MinTargetDelay and TargetDelay: the rate grows while the measured
	// delay is below it and shrinks when above. Negative turns
	// delay-based pacing off.
	TargetDelay time.Duration
	// Cap, if set, is a hard cap in bytes per second at a time (0: none),
	// e.g. 5 Mbit/s during school hours.
	Cap func(time.Time) int64
	// Gain is how fast the rate moves: at the largest measured offset
	// from the target it changes by this fraction per second (default 0.5).
	Gain float64
	// MinRate is the least the delay controller paces to (default 64 KiB/s).
	MinRate float64
}

// MinTargetDelay is the least target the pacer keeps, however short the
// base round trip: below it, timer and scheduling noise is taken for a
// queue. (5 ms was tried first: on the link emulator, under the laptops'
// CPU load, an empty 10 ms link measured 7-8 ms over its base, and the
// pace stayed at its floor. 10 ms left 2-3 ms above that noise: after a
// class's download the pace took a minute or two to climb back while
// laptops waited, and a morning with a download took 7 minutes for 2.7 at
// 15 ms; 12 ms behaved like 10. bench/README.md, "The school morning".)
const MinTargetDelay = 15 * time.Millisecond

// maxPace is "unpaced": far above what a school server receives.
const maxPace = 4 << 30

// pacer is a LEDBAT-style (RFC 6817) rate controller: the queueing delay on
// the laptops' paths (measured by Server.measure) is kept near a target
// (half the base round trip, clamped) by moving the rate at which the
// server reads upload bytes. Under the target the rate grows
// (multiplicatively, so a fast link is found in seconds); over it the rate
// falls in proportion to the excess, so backups yield to a class that fills
// the link. The rate never grows while the laptops do not use half of it
// (its ceiling is twice what is used).
//
// Reads queue in two lines that share the one rate: small sessions' reads
// (and restores') go first, each taking its time slot from the big
// backups' line too, so that a small delta never waits behind a first
// backup's megabytes and the total stays at the rate.
type pacer struct {
	cfg PacingConfig

	mu     sync.Mutex // guards the fields below
	rate   float64    // bytes per second (the delay controller's)
	next   [2]time.Time
	used   int64 // bytes read since the last update
	qdelay time.Duration
	target time.Duration
	paced  float64 // the last effective rate (after the cap)
	probed bool    // a queue was seen: slow start is over
}

// slowStartStep is how much a used rate grows per update before the first
// queue is seen.
const slowStartStep = 1.5

// The pacer's two lines.
const (
	lineSmall = 0
	lineBulk  = 1
)

func newPacer(cfg PacingConfig) *pacer {
	if cfg.TargetDelay == 0 {
		cfg.TargetDelay = 25 * time.Millisecond
	}
	if cfg.Gain <= 0 {
		cfg.Gain = 0.5
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = 64 << 10
	}
	return &pacer{cfg: cfg, rate: 1 << 20, target: cfg.TargetDelay}
}

// effective is the rate reads go at now.
func (p *pacer) effective(now time.Time) float64 {
	r := float64(maxPace)
	if p.cfg.TargetDelay > 0 {
		r = p.rate
	}
	if p.cfg.Cap != nil {
		if c := p.cfg.Cap(now); c > 0 {
			r = min(r, float64(c))
		}
	}
	return r
}

// burst is how far reads may run ahead of the rate after a pause.
const burst = 20 * time.Millisecond

// reserve books n bytes at now and returns when they may be read. A small
// read (small reports the small sessions' line) waits only behind other
// small reads, and pushes the big line back by its share.
func (p *pacer) reserve(now time.Time, n int, small bool) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used += int64(n)
	r := p.effective(now)
	if r >= maxPace {
		return now
	}
	d := time.Duration(float64(n) / r * float64(time.Second))
	from := now.Add(-burst)
	for i := range p.next {
		if p.next[i].Before(from) {
			p.next[i] = from
		}
	}
	line := lineBulk
	if small {
		line = lineSmall
		p.next[lineBulk] = p.next[lineBulk].Add(d)
	}
	at := p.next[line]
	p.next[line] = at.Add(d)
	return at
}

// wait waits until n more bytes may be read (see reserve).
func (p *pacer) wait(ctx context.Context, n int, small bool) error {
	d := time.Until(p.reserve(time.Now(), n, small))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// targetFor is the queueing delay the controller keeps on a path whose
// base round trip is base: half of it, between MinTargetDelay and
// TargetDelay.
func (p *pacer) targetFor(base time.Duration) time.Duration {
	return min(max(base/2, MinTargetDelay), max(p.cfg.TargetDelay, MinTargetDelay))
}

// update moves the rate after dt of measurement with queueing delay qdelay
// (negative: nothing measured, as when no laptop is sending) on paths whose
// base round trip is base (0: not measured; the target stays).
func (p *pacer) update(now time.Time, dt time.Duration, qdelay, base time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := float64(p.used) / dt.Seconds()
	p.used = 0
	p.qdelay = max(qdelay, 0)
	if base > 0 {
		p.target = p.targetFor(base)
	}
	if p.cfg.TargetDelay > 0 && qdelay >= 0 {
		if !p.probed {
			// Slow start: until the first queue, a rate the laptops use
			// grows by half every update (1 MiB/s to 100 MB/s in about a
			// second, where the proportional rule below takes nine), so a
			// server that has just started does not hold its first
			// backups at a fraction of what its network carries. The first
			// queue ends it and takes back the last step.
			if qdelay < p.target {
				if used >= 0.5*p.rate {
					p.rate = min(p.rate*slowStartStep, maxPace)
				}
				p.paced = p.effective(now)
				return
			}
			p.probed = true
			p.rate = max(p.cfg.MinRate, p.rate/slowStartStep)
		}
		off := float64(p.target-qdelay) / float64(p.target)
		off = max(-1, min(1, off))
		if off < 0 || used >= 0.5*p.rate {
			// Grow only a rate the laptops use; shrink at any time.
			p.rate *= math.Exp(p.cfg.Gain * off * dt.Seconds())
		}
		p.rate = max(p.cfg.MinRate, min(p.rate, maxPace))
	}
	p.paced = p.effective(now)
}

// status returns the paced rate (bytes per second; maxPace: unpaced) and
// the queueing delay last measured.
func (p *pacer) status() (rate float64, qdelay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paced == 0 {
		p.paced = p.effective(time.Now())
	}
	return p.paced, p.qdelay
}
