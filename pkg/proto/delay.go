package proto

import (
	"slices"
	"time"
)

// delayMeter turns the round trips QUIC measures on each connection into
// the school's queueing delay and base round trip, for the pacer.
//
// A connection's current delay is the lower quartile of its last
// delaySamples fresh round-trip samples (not the latest: an acknowledgement
// the laptop delayed, or a busy CPU, inflates single samples), minus its
// path's base. The base is what LEDBAT means by it: the least round trip
// seen on the path over the last baseHistory, across connections — a laptop
// that connects while the queue is full must not take the queue for its
// base. A path is told by its round trip, not by its address: a base under
// a sixteenth of the connection's own minimum is another path's (loopback:
// the server's own tools, a benchmark's preparation), never this one's. So a
// connection's base lies between its own minimum (what its own samples
// allow) and a sixteenth of it.
//
// A busy server (or machine) delays its own handling of acknowledgements:
// round trips grow with no queue on the network. That local delay is
// measured as how late the server's measuring goroutine wakes up after its
// timer fired (the median of the last delaySamples), and taken off every
// connection's delay, so that a server short of CPU does not slow the
// laptops down as if the school's network were full.
//
// The school's figures are the medians over the connections that sent
// something in the last interval.
type delayMeter struct {
	lates [delaySamples]time.Duration
	nlate int
	conns map[any]*connDelay
	// past holds the minimum round trips of connections that ended
	// within baseHistory, oldest first.
	past []pastBase
	// Scratch, reused.
	cands, qs, bases []time.Duration
}

const (
	delaySamples = 8
	baseHistory  = 10 * time.Minute
	maxPast      = 4096
	// pathRatio: a base under the connection's own minimum divided by
	// pathRatio is another path's.
	pathRatio = 16
)

type pastBase struct {
	at  time.Time
	min time.Duration
}

type connDelay struct {
	bytes uint64
	rtts  [delaySamples]time.Duration
	n     int
	last  time.Duration
	min   time.Duration
}

// connObs is one connection's statistics at one measurement.
type connObs struct {
	key    any
	bytes  uint64 // received so far
	latest time.Duration
	min    time.Duration
}

func newDelayMeter() *delayMeter { return &delayMeter{conns: map[any]*connDelay{}} }

// late records how late the server's own timer-driven goroutine ran.
func (m *delayMeter) late(d time.Duration) {
	m.lates[m.nlate%delaySamples] = max(d, 0)
	m.nlate++
}

// local is the server's own delay now (the median lateness).
func (m *delayMeter) local() time.Duration {
	k := min(m.nlate, delaySamples)
	if k == 0 {
		return 0
	}
	s := slices.Clone(m.lates[:k])
	slices.Sort(s)
	return s[k/2]
}

// observe takes every open connection's statistics at now and returns the
// queueing delay (negative: none measured) and the base round trip of the
// connections that sent something since the last call (0: none).
func (m *delayMeter) observe(now time.Time, obs []connObs) (qdelay, base time.Duration) {
	seen := make(map[any]bool, len(obs))
	type sending struct {
		c  *connDelay
		lq time.Duration
	}
	var send []sending
	m.cands = m.cands[:0]
	for _, o := range obs {
		seen[o.key] = true
		c := m.conns[o.key]
		if c == nil {
			c = &connDelay{bytes: o.bytes}
			m.conns[o.key] = c
		}
		if o.min > 0 {
			c.min = o.min
			m.cands = append(m.cands, o.min)
		}
		if o.latest > 0 && o.latest != c.last {
			c.rtts[c.n%delaySamples] = o.latest
			c.n++
			c.last = o.latest
		}
		if o.bytes > c.bytes+1500 && c.n > 0 && c.min > 0 {
			k := min(c.n, delaySamples)
			s := slices.Clone(c.rtts[:k])
			slices.Sort(s)
			send = append(send, sending{c, s[k/4]})
		}
		c.bytes = o.bytes
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
	if len(send) == 0 {
		return -1, 0
	}
	for _, p := range m.past {
		m.cands = append(m.cands, p.min)
	}
	slices.Sort(m.cands)
	m.qs, m.bases = m.qs[:0], m.bases[:0]
	local := m.local()
	for _, s := range send {
		// The least candidate that can be this path's.
		j, _ := slices.BinarySearch(m.cands, s.c.min/pathRatio)
		b := s.c.min
		if j < len(m.cands) {
			b = min(b, m.cands[j])
		}
		m.qs = append(m.qs, max(s.lq-b-local, 0))
		m.bases = append(m.bases, b)
	}
	slices.Sort(m.qs)
	slices.Sort(m.bases)
	return m.qs[len(m.qs)/2], m.bases[len(m.bases)/2]
}
