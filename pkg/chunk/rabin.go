package chunk

import (
	"errors"
	"io"
	"sync"

	"github.com/restic/chunker"
)

// rabin cuts a stream exactly where github.com/restic/chunker cuts it (a
// Rabin fingerprint of the last 64 bytes, modulo the store's polynomial,
// is tested against the AverageBits mask once a chunk has MinSize bytes;
// MaxSize forces a cut), so stores written with either cut the same way
// and dedup across them. It is that algorithm specialised for what
// Params.Validate allows: the polynomial's degree is always polDegree, so
// the reduction's shift is a constant, and the mask fits in 32 bits. On a
// 32-bit CPU such as the XO-1's, where a 64-bit shift by a variable amount
// is a dozen instructions and a branch, that is most of the per-byte work
// (see BenchmarkChunkerOnly and TestRabinCutsAsRestic).
type rabin struct {
	t        rabinTables // a copy: &c.t is never nil, so the loop has no nil check
	pol      uint64      // t's polynomial
	rd       io.Reader
	buf      []byte // read buffer
	bpos     int    // next unread byte of buf
	bmax     int    // end of the bytes in buf
	min, max int
	mask     uint32
	closed   bool // the reader is at its end

	// The chunk being cut.
	win    [rabinWindow]byte
	wpos   int
	digest uint64
	count  int // bytes of the chunk so far
	pre    int // bytes still to take before the fingerprint matters
}

const (
	rabinWindow  = 64
	rabinShift   = polDegree - 8 // the top byte of a digest indexes mod
	rabinBufSize = 512 << 10
)

// rabinTables are the two tables of a polynomial: out[b] takes byte b out
// of the window's fingerprint, mod[b] reduces a digest whose top byte is b.
type rabinTables struct {
	out, mod [256]uint64
}

var rabinCache sync.Map // chunker.Pol -> *rabinTables

func tablesFor(pol chunker.Pol) *rabinTables {
	if t, ok := rabinCache.Load(pol); ok {
		return t.(*rabinTables)
	}
	t := new(rabinTables)
	shiftIn := func(h chunker.Pol, b byte) chunker.Pol { return (h<<8 | chunker.Pol(b)).Mod(pol) }
	for b := range 256 {
		// The fingerprint of b followed by a window of zeros: adding it
		// (XOR) to a window's fingerprint cancels b as it slides out.
		h := shiftIn(0, byte(b))
		for range rabinWindow - 1 {
			h = shiftIn(h, 0)
		}
		t.out[b] = uint64(h)
		// b·x^deg mod pol, with b·x^deg itself added so that one XOR both
		// clears the top byte and reduces.
		top := chunker.Pol(b) << polDegree
		t.mod[b] = uint64(top.Mod(pol) | top)
	}
	rabinCache.Store(pol, t)
	return t
}

func newRabin(rd io.Reader, p Params) *rabin {
	c := &rabin{buf: make([]byte, rabinBufSize)}
	c.reset(rd, p)
	return c
}

// reset starts cutting a new stream read from rd.
func (c *rabin) reset(rd io.Reader, p Params) {
	if c.pol != p.Polynomial {
		c.t, c.pol = *tablesFor(chunker.Pol(p.Polynomial)), p.Polynomial
	}
	c.rd, c.bpos, c.bmax, c.closed = rd, 0, 0, false
	c.min, c.max = int(p.MinSize), int(p.MaxSize)
	c.mask = 1<<p.AverageBits - 1
	c.startChunk()
}

// startChunk resets the window: a chunk's fingerprint starts from a
// window of zeros with one byte 1 slid in, as restic/chunker's does, and
// its first MinSize-64 bytes are taken without looking at them.
func (c *rabin) startChunk() {
	c.win = [rabinWindow]byte{}
	c.win[0] = 1
	c.wpos = 1
	c.digest = reduce(c.t.out[0], 1, &c.t)
	c.count = 0
	c.pre = c.min - rabinWindow
}

// reduce shifts b into digest and reduces it modulo the polynomial. The
// top byte is indexed without masking: a digest is below 2^53, and
// masking it made the loop 10% slower on amd64.
func reduce(digest uint64, b byte, t *rabinTables) uint64 {
	return (digest<<8 | uint64(b)) ^ t.mod[digest>>rabinShift]
}

var errRabinNoReader = errors.New("chunk: no reader")

// next appends the next chunk to data[:0] and returns it; io.EOF once the
// stream has ended and its last chunk was returned.
func (c *rabin) next(data []byte) ([]byte, error) {
	data = data[:0]
	if c.rd == nil {
		return nil, errRabinNoReader
	}
	t := &c.t
	for {
		if c.bpos >= c.bmax {
			n, err := io.ReadFull(c.rd, c.buf)
			if err == io.ErrUnexpectedEOF {
				err = nil
			}
			if err == io.EOF && !c.closed {
				c.closed = true
				if c.count > 0 {
					c.count = 0
					return data, nil
				}
			}
			if err != nil {
				return nil, err
			}
			c.bpos, c.bmax = 0, n
		}
		if c.pre > 0 {
			n := min(c.pre, c.bmax-c.bpos)
			data = append(data, c.buf[c.bpos:c.bpos+n]...)
			c.pre -= n
			c.count += n
			c.bpos += n
			continue
		}
		digest, wpos, count := c.digest, c.wpos, c.count
		mask, minSize, maxSize := c.mask, c.min, c.max
		win := c.win // a copy on the stack: the loop's loads and stores stay local
		buf := c.buf[c.bpos:c.bmax]
		for i, b := range buf {
			wpos &= rabinWindow - 1
			digest ^= t.out[win[wpos]]
			win[wpos] = b
			wpos++
			// reduce, written out: as a call, even inlined, the loop ran
			// 4% slower on amd64 and 8% on the 386.
			idx := digest >> rabinShift
			digest = (digest<<8 | uint64(b)) ^ t.mod[idx]
			count++
			if uint32(digest)&mask == 0 || count >= maxSize {
				if count < minSize {
					continue
				}
				data = append(data, buf[:i+1]...)
				c.bpos += i + 1
				c.startChunk()
				return data, nil
			}
		}
		data = append(data, buf...)
		c.win, c.digest, c.wpos, c.count = win, digest, wpos, count
		c.bpos = c.bmax
	}
}
