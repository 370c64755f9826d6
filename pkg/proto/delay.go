package proto

import (
	"slices"
	"time"
)

// delayMeter turns the round trips QUIC measures on each connection into
// the school's queueing delay and base round trip, for the pacer.
//
// Every connection's fresh round-trip samples (a new LatestRTT; the
// server measures a round trip whenever a laptop acknowledges one of its
// packets: flow-control credit, answers, keep-alives) are taken minus the
// connection's path base, and the school's delay is the lower quartile of
// the samples of the last freshAge over all connections: one late
// acknowledgement or one connection that is busy is not a queue, but a
// queue on the shared link delays every sample. Samples are pooled over
// connections, not filtered per connection: when the pace is low, a
// connection that gets back its flow-control credit in small steps gives
// a sample only every few seconds, and the school's samples together
// still say, within a second, whether there is a queue.
//
// The base is what LEDBAT means by it: the least round trip seen on the
// path over the last baseHistory, across connections — a laptop that
// connects while the queue is full must not take the queue for its base.
// A path is told by its round trip, not by its address: a base under a
// quarter of the connection's own minimum is another path's (loopback: the
// server's own tools, a benchmark's preparation, whose round trips on a
// busy machine reach a millisecond or two), never this one's. A quarter
// still finds the base for a laptop that joins into a queue of three times
// the base round trip, six times the pacer's target (half the base). So a
// connection's base lies between its own minimum (what its own samples
// allow) and a quarter of it.
//
// A busy server (or machine) delays its own handling of acknowledgements:
// round trips grow with no queue on the network. That local delay is
// measured as how late the server's measuring goroutine wakes up after its
// timer fired (the median of the last 8), and taken off every sample, so
// that a server short of CPU does not slow the laptops down as if the
// school's network were full.
type delayMeter struct {
	lates [8]time.Duration
	nlate int
	conns map[any]*connDelay
	// fresh are the samples of the last freshAge, oldest first.
	fresh []delaySample
	// past holds the minimum round trips of connections that ended
	// within baseHistory, oldest first.
	past []pastBase
	// Scratch, reused.
	cands, qs []time.Duration
}

const (
	freshAge    = time.Second
	baseHistory = 10 * time.Minute
	maxPast     = 4096
	maxFresh    = 4096
	// pathRatio: a base under the connection's own minimum divided by
	// pathRatio is another path's.
	pathRatio = 4
)

type pastBase struct {
	at  time.Time
	min time.Duration
}

type delaySample struct {
	at       time.Time
	rtt, min time.Duration // the sample and its connection's own minimum
}

type connDelay struct {
	last time.Duration
	min  time.Duration
}

// connObs is one connection's statistics at one measurement.
type connObs struct {
	key    any
	latest time.Duration
	min    time.Duration
}

func newDelayMeter() *delayMeter { return &delayMeter{conns: map[any]*connDelay{}} }

// late records how late the server's own timer-driven goroutine ran.
func (m *delayMeter) late(d time.Duration) {
	m.lates[m.nlate%len(m.lates)] = max(d, 0)
	m.nlate++
}

// local is the server's own delay now (the median lateness).
func (m *delayMeter) local() time.Duration {
	k := min(m.nlate, len(m.lates))
	if k == 0 {
		return 0
	}
	s := slices.Clone(m.lates[:k])
	slices.Sort(s)
	return s[k/2]
}

// observe takes every open connection's statistics at now and returns the
// queueing delay (negative: no fresh sample) and the base round trip
// (median over the fresh samples' paths; 0: none).
func (m *delayMeter) observe(now time.Time, obs []connObs) (qdelay, base time.Duration) {
	seen := make(map[any]bool, len(obs))
	m.cands = m.cands[:0]
	for _, o := range obs {
		seen[o.key] = true
		c := m.conns[o.key]
		if c == nil {
			c = &connDelay{}
			m.conns[o.key] = c
		}
		if o.min > 0 {
			c.min = o.min
			m.cands = append(m.cands, o.min)
		}
		if o.latest > 0 && o.latest != c.last && c.min > 0 {
			m.fresh = append(m.fresh, delaySample{now, o.latest, c.min})
		}
		c.last = o.latest
	}
	for k, c := range m.conns {
		if !seen[k] {
			if c.min > 0 {
				m.past = append(m.past, pastBase{now, c.min})
			}
			delete(m.conns, k)
		}
	}
	i := 0
	for i < len(m.past) && (now.Sub(m.past[i].at) > baseHistory || len(m.past)-i > maxPast) {
		i++
	}
	m.past = m.past[i:]
	i = 0
	for i < len(m.fresh) && (now.Sub(m.fresh[i].at) >= freshAge || len(m.fresh)-i > maxFresh) {
		i++
	}
	m.fresh = m.fresh[i:]
	if len(m.fresh) == 0 {
		return -1, 0
	}
	for _, p := range m.past {
		m.cands = append(m.cands, p.min)
	}
	slices.Sort(m.cands)
	local := m.local()
	m.qs = m.qs[:0]
	bases := make([]time.Duration, 0, len(m.fresh))
	for _, s := range m.fresh {
		// The least candidate that can be this path's.
		b := s.min
		if j, _ := slices.BinarySearch(m.cands, s.min/pathRatio); j < len(m.cands) {
			b = min(b, m.cands[j])
		}
		m.qs = append(m.qs, max(s.rtt-b-local, 0))
		bases = append(bases, b)
	}
	slices.Sort(m.qs)
	slices.Sort(bases)
	return m.qs[len(m.qs)/4], bases[len(bases)/2]
}
