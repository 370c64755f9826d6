package proto

import "time"

// gradientLimit adapts how many sessions of one lane run at once, the way
// TCP Vegas and Netflix's gradient limiter adapt a window: it measures the
// lane's work done per second (bytes received for big backups, sessions
// finished for small ones) over an epoch of three intervals and compares
// it with the epoch before.
//
//   - A step up that raised throughput by 5% or more is followed by another:
//     doubling the limit at first (as TCP's slow start does, so that a crowd
//     at 8:00 finds the school's capacity in seconds), by a quarter once a
//     step has failed.
//   - A step up that did not is taken back, and the limit holds for two
//     epochs before it probes again: more sessions would only queue.
//   - Throughput that falls by half at an unchanged limit (a link that got
//     slower, a disk that stalls) lowers the limit by a quarter, and so do
//     round trips that inflate beyond RTTTolerance above their minimum.
//   - While nobody waits the limit is not what holds the school back, so
//     it stays where it is (an idle night teaches nothing).
type gradientLimit struct {
	min, max  float64
	tolerance time.Duration

	cur float64
	// The epoch being measured.
	work, secs float64
	binding    int
	stalled    int
	intervals  int
	qdelay     time.Duration
	// The previous epoch and the last step.
	prevLimit, prevTput float64
	step                int // stepNone, stepUp, stepHold
	holdLeft            int
	steady              bool // a step has failed: grow by a quarter, not double
	raises, lowers      int64
}

const (
	stepNone = iota
	stepUp
	stepHold
	limitEpoch = 3 // intervals per epoch
)

func newGradientLimit(lo, start, hi int, tolerance time.Duration) gradientLimit {
	return gradientLimit{min: float64(lo), max: float64(hi), tolerance: tolerance, cur: float64(start)}
}

func (g *gradientLimit) limit() int { return int(g.cur) }

// gain is the throughput a step up must bring to count as paying: 15%
// after doubling, 5% after a quarter more.
func (g *gradientLimit) gain() float64 {
	if g.steady {
		return 1.05
	}
	return 1.15
}

// limitSample is one interval's measurement.
type limitSample struct {
	dt      float64       // seconds
	work    float64       // bytes-equivalent done
	qdelay  time.Duration // queueing delay on the laptops' paths
	binding bool          // laptops waited for a place
	stalled bool          // sessions ran and the server received nothing
}

func (g *gradientLimit) observe(s limitSample) {
	g.work += s.work
	g.secs += s.dt
	g.intervals++
	if s.binding {
		g.binding++
	}
	g.qdelay = max(g.qdelay, s.qdelay)
	if s.stalled {
		g.stalled++
	}
	if g.intervals < limitEpoch {
		return
	}
	tput := g.work / g.secs
	binding := g.binding*2 >= g.intervals
	stalled := g.stalled == g.intervals
	qdelay := g.qdelay
	g.work, g.secs, g.binding, g.stalled, g.intervals, g.qdelay = 0, 0, 0, 0, 0, 0
	up := func() {
		g.prevLimit, g.prevTput = g.cur, tput
		if g.steady {
			g.cur = min(g.max, g.cur+max(1, g.cur/4))
		} else {
			g.cur = min(g.max, g.cur*2)
		}
		g.step = stepUp
		g.raises++
	}
	down := func() {
		g.cur = max(g.min, g.cur*0.75)
		g.prevLimit, g.prevTput = g.cur, tput
		g.step, g.steady = stepNone, true
		g.lowers++
	}
	switch {
	case qdelay > g.tolerance:
		down()
	case stalled:
		// Sessions run and not a byte arrives: a stalled server (a
		// disk that hangs); let nobody else in meanwhile.
		down()
	case !binding:
		// Nobody waited: the limit held nobody back; remember the level.
		g.prevLimit, g.prevTput, g.step = g.cur, tput, stepNone
	case g.step == stepUp && tput >= g.prevTput*g.gain():
		up()
	case g.step == stepUp:
		// The step did not pay: take it back and hold.
		g.cur = g.prevLimit
		g.step, g.holdLeft, g.steady = stepHold, 2, true
	case g.prevTput > 0 && tput < g.prevTput*0.5:
		down()
	case g.holdLeft > 0:
		g.holdLeft--
		g.prevTput = tput
	default:
		up()
	}
}
