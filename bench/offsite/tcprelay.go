package offsite

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/bench/netem"
)

// tcpRelay carries a TCP connection (the rsync baseline's) through the
// same emulated link as xs-backup's QUIC: the byte stream is cut into
// segments of at most mss bytes, each crossing the link with 40 bytes of
// TCP/IP headers, and every second segment is acknowledged by a 40-byte
// packet the other way, as a TCP receiver does. A connection starts with a
// SYN and a SYN-ACK through the link (one round trip).
//
// It is an ideal TCP: the relay waits for room in the link's buffer instead
// of overflowing it, so nothing is lost or sent twice, and it uses the whole
// rate from the first byte (no slow start). Every time the rsync baseline
// shows is therefore a lower bound of what a real TCP would take, and its
// wire bytes carry no retransmissions.
type tcpRelay struct {
	link     *netem.Link
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
}

const (
	mss         = 1448 // a TCP segment's payload on a 1500-byte Ethernet MTU with timestamps
	tcpOverhead = 40   // IPv4 + TCP headers
)

func newTCPRelay(link *netem.Link, upstream string) (*tcpRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &tcpRelay{link: link, ln: ln, upstream: upstream}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the address clients connect to.
func (r *tcpRelay) Addr() string { return r.ln.Addr().String() }

// Close stops accepting; connections in progress end with their peers.
func (r *tcpRelay) Close() error {
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func (r *tcpRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(c.(*net.TCPConn))
		}()
	}
}

func (r *tcpRelay) serve(c *net.TCPConn) {
	defer c.Close()
	// The handshake: SYN there, SYN-ACK back.
	r.through(60)
	r.through(60)
	u, err := net.Dial("tcp", r.upstream)
	if err != nil {
		return
	}
	up := u.(*net.TCPConn)
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.pipe(c, up) }()
	go func() { defer wg.Done(); r.pipe(up, c) }()
	wg.Wait()
}

// through sends one packet of size bytes through the link and waits until
// it came out.
func (r *tcpRelay) through(size int) {
	done := make(chan struct{})
	for !r.link.Send(size, func() { close(done) }) {
		time.Sleep(time.Millisecond) // the buffer is full: wait for room
	}
	<-done
}

// pipe relays src to dst through the link, segment by segment, in order.
func (r *tcpRelay) pipe(src, dst *net.TCPConn) {
	q := &segQueue{segs: map[uint64][]byte{}, next: 1}
	q.cond = sync.NewCond(&q.mu)
	var seq uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer: segments in the order the link delivers them
		defer wg.Done()
		acked := 0
		for {
			p, eof := q.pop()
			if eof {
				dst.CloseWrite()
				return
			}
			if _, err := dst.Write(p); err != nil {
				src.Close() // the other end is gone: stop reading
				for {       // drain what is still coming so that pipe returns
					if _, eof := q.pop(); eof {
						return
					}
				}
			}
			if acked++; acked%2 == 0 {
				r.send(tcpOverhead, func() {})
			}
		}
	}()
	buf := make([]byte, mss)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p := append([]byte(nil), buf[:n]...)
			seq++
			at := seq
			r.send(n+tcpOverhead, func() { q.push(at, p, false) })
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			// The FIN travels as a packet of its own.
			seq++
			at := seq
			r.send(tcpOverhead, func() { q.push(at, nil, true) })
			break
		}
	}
	wg.Wait()
}

// send passes a packet into the link, waiting while its buffer has no room
// for it (a sender that never overflows the queue). A packet the link
// loses at random is sent again at once (a retransmission without the
// timeout a real TCP would wait).
func (r *tcpRelay) send(size int, deliver func()) {
	limit := r.link.Config().Buffer
	for r.link.Queued()+size > limit {
		time.Sleep(500 * time.Microsecond)
	}
	for !r.link.Send(size, deliver) {
		time.Sleep(500 * time.Microsecond)
	}
}

// segQueue is an unbounded queue the link's goroutine pushes into without
// blocking. Segments are numbered when sent and popped in that order: the
// link never reorders packets, but two that arrive at the same instant may
// come out of its heap either way round.
type segQueue struct {
	mu   sync.Mutex
	cond *sync.Cond
	segs map[uint64][]byte
	next uint64
	eof  uint64 // the FIN's number, once it arrived; 0: not yet
}

func (q *segQueue) push(seq uint64, p []byte, fin bool) {
	q.mu.Lock()
	if fin {
		q.eof = seq
	} else {
		q.segs[seq] = p
	}
	q.mu.Unlock()
	q.cond.Signal()
}

// pop returns the next segment, or eof once every segment before the FIN
// was popped.
func (q *segQueue) pop() (p []byte, eof bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if p, ok := q.segs[q.next]; ok {
			delete(q.segs, q.next)
			q.next++
			return p, false
		}
		if q.eof != 0 && q.next == q.eof {
			return nil, true
		}
		q.cond.Wait()
	}
}
