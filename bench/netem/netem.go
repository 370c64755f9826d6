// Package netem emulates a school's network for the benchmark suite: one
// shared bottleneck (the school's Wi-Fi, or its uplink) with a rate, a
// one-way delay with jitter, random loss and a finite drop-tail buffer,
// so that QUIC's congestion control meets a realistic queue.
//
// A Link is the bottleneck: every packet through it, in either direction
// and from any Relay sharing it, waits in one FIFO queue and is sent at
// the link's rate (a shared half-duplex medium, as Wi-Fi is). A Relay is a
// UDP relay between clients and one upstream server, through a Link; the
// server sees each client as a separate address. Probe measures the delay
// a small datagram sees through the same queue, as a video call or a web
// page would.
package netem

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// LinkConfig describes the bottleneck. Zero values take the defaults shown.
type LinkConfig struct {
	// Rate is the link's rate in bits per second (0: unlimited).
	Rate float64
	// Delay is the one-way propagation delay; each packet gets up to
	// Jitter more, at random (packets are never reordered).
	Delay, Jitter time.Duration
	// Loss is the probability that a packet is lost, at random.
	Loss float64
	// Buffer is the drop-tail queue in bytes (default: 100 ms at Rate, at
	// least 64 KiB): a packet that finds it full is dropped.
	Buffer int
	// Bucket is the width of the delivered-bytes series (default 100 ms).
	Bucket time.Duration
	// Seed makes loss and jitter reproducible (default 1).
	Seed uint64
}

// Link is one shared bottleneck. Its methods are safe for concurrent use.
type Link struct {
	cfg   LinkConfig
	start time.Time
	wake  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup

	mu         sync.Mutex // guards the fields below
	rng        *rand.Rand
	free       time.Time // when the sender is free (the last departure)
	lastArrive time.Time
	queue      []departure // packets not yet departed, in order
	queued     int         // their bytes
	pending    pktHeap     // departed or queued packets, by arrival time
	stats      Stats
	series     []int64 // bytes delivered per bucket since start
	closed     bool
}

type departure struct {
	at   time.Time
	size int
}

// Stats count what the link did.
type Stats struct {
	Packets, Bytes int64 // delivered
	Dropped        int64 // by the full buffer
	Lost           int64 // at random
	MaxQueue       int   // the most bytes queued at once
}

// NewLink starts a link; Close stops it.
func NewLink(cfg LinkConfig) *Link {
	if cfg.Buffer <= 0 {
		cfg.Buffer = max(64<<10, int(cfg.Rate/8*0.1))
	}
	if cfg.Bucket <= 0 {
		cfg.Bucket = 100 * time.Millisecond
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	l := &Link{cfg: cfg, start: time.Now(), wake: make(chan struct{}, 1), done: make(chan struct{}), rng: rand.New(rand.NewPCG(cfg.Seed, 7))}
	l.wg.Add(1)
	go l.run()
	return l
}

// Config returns the link's configuration, defaults filled in.
func (l *Link) Config() LinkConfig { return l.cfg }

// Start is when the link started (the series' origin).
func (l *Link) Start() time.Time { return l.start }

// Close stops the link; packets still in it are dropped.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
}

// Stats returns the counters so far.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Series returns the bytes delivered in each Bucket since Start.
func (l *Link) Series() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.series...)
}

// Queued returns the bytes waiting in the buffer now.
func (l *Link) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain(time.Now())
	return l.queued
}

func (l *Link) drain(now time.Time) {
	i := 0
	for i < len(l.queue) && !l.queue[i].at.After(now) {
		l.queued -= l.queue[i].size
		i++
	}
	l.queue = l.queue[i:]
}

// Send passes a packet of size bytes into the link; deliver is called (on
// the link's goroutine, so it must not block) when it comes out. It
// reports whether the packet was accepted (not lost or dropped).
func (l *Link) Send(size int, deliver func()) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.cfg.Loss > 0 && l.rng.Float64() < l.cfg.Loss {
		l.stats.Lost++
		return false
	}
	l.drain(now)
	if l.queued+size > l.cfg.Buffer {
		l.stats.Dropped++
		return false
	}
	depart := now
	if l.cfg.Rate > 0 {
		depart = maxTime(now, l.free).Add(time.Duration(float64(size*8) / l.cfg.Rate * float64(time.Second)))
		l.free = depart
		l.queue = append(l.queue, departure{depart, size})
		l.queued += size
		l.stats.MaxQueue = max(l.stats.MaxQueue, l.queued)
	}
	arrive := depart.Add(l.cfg.Delay)
	if l.cfg.Jitter > 0 {
		arrive = arrive.Add(time.Duration(l.rng.Int64N(int64(l.cfg.Jitter) + 1)))
	}
	arrive = maxTime(arrive, l.lastArrive) // no reordering
	l.lastArrive = arrive
	heap.Push(&l.pending, &pkt{at: arrive, size: size, deliver: deliver})
	if l.pending[0].at.Equal(arrive) {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return true
}

func (l *Link) run() {
	defer l.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.mu.Lock()
		now := time.Now()
		var due []*pkt
		for len(l.pending) > 0 && !l.pending[0].at.After(now.Add(timerSlack)) {
			p := heap.Pop(&l.pending).(*pkt)
			due = append(due, p)
			l.stats.Packets++
			l.stats.Bytes += int64(p.size)
			b := int(now.Sub(l.start) / l.cfg.Bucket)
			for len(l.series) <= b {
				l.series = append(l.series, 0)
			}
			l.series[b] += int64(p.size)
		}
		wait := time.Hour
		if len(l.pending) > 0 {
			wait = l.pending[0].at.Sub(now) - timerSlack
		}
		l.mu.Unlock()
		for _, p := range due {
			p.deliver()
		}
		if len(due) > 0 {
			continue
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-l.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-l.done:
			return
		}
	}
}

// timerSlack: Go's timers wake up to a millisecond late on a busy machine,
// so the link delivers a packet when it is due within timerSlack: packets
// come out within about ±timerSlack of their time instead of always late.
// The rate is unaffected (departures are computed, not slept).
const timerSlack = time.Millisecond

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

type pkt struct {
	at      time.Time
	size    int
	deliver func()
}

type pktHeap []*pkt

func (h pktHeap) Len() int           { return len(h) }
func (h pktHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h pktHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)        { *h = append(*h, x.(*pkt)) }
func (h *pktHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// ipUDPOverhead is what IPv4 and UDP headers add to each datagram on the wire.
const ipUDPOverhead = 28

// Relay forwards UDP between clients and one upstream address through a
// Link, both ways. Each client gets its own upstream socket, so the server
// sees one address per client, as it would on a school network.
type Relay struct {
	link     *Link
	pc       *net.UDPConn
	upstream *net.UDPAddr

	mu       sync.Mutex // guards sessions and closed
	sessions map[string]*net.UDPConn
	closed   bool
	wg       sync.WaitGroup
}

// NewRelay listens on a free loopback port and relays to upstream.
func NewRelay(link *Link, upstream string) (*Relay, error) {
	up, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	pc.SetReadBuffer(4 << 20)
	pc.SetWriteBuffer(4 << 20)
	r := &Relay{link: link, pc: pc, upstream: up, sessions: map[string]*net.UDPConn{}}
	r.wg.Add(1)
	go r.fromClients()
	return r, nil
}

// Addr is the address clients send to.
func (r *Relay) Addr() string { return r.pc.LocalAddr().String() }

// Close stops relaying.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for _, c := range r.sessions {
		c.Close()
	}
	r.mu.Unlock()
	err := r.pc.Close()
	r.wg.Wait()
	return err
}

func (r *Relay) fromClients() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		up, err := r.session(from)
		if err != nil {
			continue
		}
		p := append([]byte(nil), buf[:n]...)
		r.link.Send(n+ipUDPOverhead, func() { up.Write(p) })
	}
}

// session returns the upstream socket of client from, starting it if new.
func (r *Relay) session(from *net.UDPAddr) (*net.UDPConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, net.ErrClosed
	}
	if c := r.sessions[from.String()]; c != nil {
		return c, nil
	}
	c, err := net.DialUDP("udp", nil, r.upstream)
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(1 << 20)
	r.sessions[from.String()] = c
	client := *from
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			p := append([]byte(nil), buf[:n]...)
			r.link.Send(n+ipUDPOverhead, func() { r.pc.WriteToUDP(p, &client) })
		}
	}()
	return c, nil
}

// Probe sends a small datagram (size bytes) through the link every
// interval until stop is called, and returns the delay each one saw
// (lost or dropped ones are counted apart).
type Probe struct {
	mu      sync.Mutex
	delays  []time.Duration
	missing int
	stop    chan struct{}
	wg      sync.WaitGroup
}

// StartProbe starts probing.
func (l *Link) StartProbe(size int, interval time.Duration) *Probe {
	p := &Probe{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			sent := time.Now()
			ok := l.Send(size+ipUDPOverhead, func() {
				d := time.Since(sent)
				p.mu.Lock()
				p.delays = append(p.delays, d)
				p.mu.Unlock()
			})
			if !ok {
				p.mu.Lock()
				p.missing++
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// Stop ends probing and returns the delays seen and the probes lost.
func (p *Probe) Stop() (delays []time.Duration, missing int) {
	close(p.stop)
	p.wg.Wait()
	time.Sleep(200 * time.Millisecond) // the last probes in flight
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.delays...), p.missing
}

// Delays returns the delays so far (probing goes on).
func (p *Probe) Delays() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.delays...)
}
