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
	// Both tables are linear in b over GF(2) (shifting in and reducing mod
	// pol are), so the entry of b is the XOR of the entries of its set
	// bits: eight of each are computed, not 256 (on a 32-bit CPU the 64-bit
	// polynomial arithmetic made the tables a millisecond of every run that
	// cuts a file).
	var outBit, modBit [8]uint64
	for i := range 8 {
		// The fingerprint of the byte followed by a window of zeros: adding
		// it (XOR) to a window's fingerprint cancels the byte as it slides
		// out.
		h := shiftIn(0, byte(1)<<i)
		for range rabinWindow - 1 {
			h = shiftIn(h, 0)
		}
		outBit[i] = uint64(h)
		// The byte·x^deg mod pol.
		modBit[i] = uint64((chunker.Pol(1) << (polDegree + i)).Mod(pol))
	}
	for b := range 256 {
		var out, mod uint64
		for i := range 8 {
			if b&(1<<i) != 0 {
				out ^= outBit[i]
				mod ^= modBit[i]
			}
		}
		// b·x^deg itself is added so that one XOR both clears the top
		// byte and reduces.
		t.out[b], t.mod[b] = out, mod|uint64(b)<<polDegree
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
		if i, ok := c.scan(c.buf[c.bpos:c.bmax]); ok {
			data = append(data, c.buf[c.bpos:c.bpos+i]...)
			c.bpos += i
			c.startChunk()
			return data, nil
		}
		data = append(data, c.buf[c.bpos:c.bmax]...)
		c.bpos = c.bmax
	}
}

// laneBlock is how many positions each of the four lanes of scan takes
// from a block.
const laneBlock = 1 << 10

// scan slides buf's bytes into the fingerprint of the chunk being cut. It
// returns the length of buf's part of the chunk and true at a cut;
// otherwise the chunk takes all of buf and goes on.
//
// The fingerprint is a chain: each byte's reduction needs the previous
// byte's result, a shift, a table load and two XORs (~8 cycles a byte on
// amd64, and on the XO-1's 386 more), while the CPU could run several such
// chains at once. Once a chunk is 64 bytes into its hashed part, the
// fingerprint at a position is that of the 64 bytes ending there, whatever
// came before (a byte leaves the window's fingerprint 64 bytes after it
// entered). So past MinSize scan takes blocks of 4*laneBlock positions in
// four lanes, each a quarter of the block, each lane's fingerprint started
// from the 64 bytes before its quarter, the four chains interleaved. The
// first position that matches, in stream order, is the cut: the same cut
// the one-chain loop finds (TestRabinCutsAsRestic, FuzzRabinCutsAsRestic).
func (c *rabin) scan(buf []byte) (int, bool) {
	t := &c.t
	digest, count, mask := c.digest, c.count, c.mask
	n := min(len(buf), c.max-count)
	// ok reports a cut after byte i: the fingerprint matches and the
	// chunk has MinSize bytes (only its first 63 hashed bytes have not).
	ok := func(i int) bool { return count+i+1 >= c.min }
	wpos := c.wpos
	head := min(n, rabinWindow)
	for i, b := range buf[:head] {
		digest ^= t.out[c.win[(wpos+i)&(rabinWindow-1)]]
		digest = (digest<<8 | uint64(b)) ^ t.mod[digest>>rabinShift]
		if uint32(digest)&mask == 0 && ok(i) {
			return i + 1, true
		}
	}
	i := head // digest is the fingerprint through buf[i-1]
	for i+4*laneBlock <= n && ok(i) {
		// blk[0:64] are the 64 bytes before the block; lane k's positions
		// are blk[64+k*laneBlock:][:laneBlock], the byte leaving the
		// window at its j-th position blk[k*laneBlock+j].
		blk := (*[rabinWindow + 4*laneBlock]byte)(buf[i-rabinWindow : i+4*laneBlock])
		d0 := digest
		var d1, d2, d3 uint64
		for j := range rabinWindow {
			d1 = (d1<<8 | uint64(blk[laneBlock+j])) ^ t.mod[d1>>rabinShift]
			d2 = (d2<<8 | uint64(blk[2*laneBlock+j])) ^ t.mod[d2>>rabinShift]
			d3 = (d3<<8 | uint64(blk[3*laneBlock+j])) ^ t.mod[d3>>rabinShift]
		}
		h1, h2, h3 := -1, -1, -1
		for j := range laneBlock {
			d0 ^= t.out[blk[j]]
			d0 = (d0<<8 | uint64(blk[rabinWindow+j])) ^ t.mod[d0>>rabinShift]
			d1 ^= t.out[blk[laneBlock+j]]
			d1 = (d1<<8 | uint64(blk[rabinWindow+laneBlock+j])) ^ t.mod[d1>>rabinShift]
			d2 ^= t.out[blk[2*laneBlock+j]]
			d2 = (d2<<8 | uint64(blk[rabinWindow+2*laneBlock+j])) ^ t.mod[d2>>rabinShift]
			d3 ^= t.out[blk[3*laneBlock+j]]
			d3 = (d3<<8 | uint64(blk[rabinWindow+3*laneBlock+j])) ^ t.mod[d3>>rabinShift]
			if uint32(d0)&mask == 0 {
				return i + j + 1, true // the earliest lane: nothing comes before
			}
			if uint32(d1)&mask == 0 && h1 < 0 {
				h1 = j
			}
			if uint32(d2)&mask == 0 && h2 < 0 {
				h2 = j
			}
			if uint32(d3)&mask == 0 && h3 < 0 {
				h3 = j
			}
		}
		switch {
		case h1 >= 0:
			return i + laneBlock + h1 + 1, true
		case h2 >= 0:
			return i + 2*laneBlock + h2 + 1, true
		case h3 >= 0:
			return i + 3*laneBlock + h3 + 1, true
		}
		digest = d3 // lane 3 ends where the block ends
		i += 4 * laneBlock
	}
	if i < n {
		in := buf[i:n]
		out := buf[i-rabinWindow : n-rabinWindow]
		out = out[:len(in)]
		for j, b := range in {
			digest ^= t.out[out[j]]
			digest = (digest<<8 | uint64(b)) ^ t.mod[digest>>rabinShift]
			if uint32(digest)&mask == 0 && ok(i+j) {
				return i + j + 1, true
			}
		}
	}
	if count+n >= c.max {
		return n, true
	}
	// No cut: buf is all in the chunk (n == len(buf)). Keep the window's
	// last 64 bytes, oldest at wpos.
	if n >= rabinWindow {
		copy(c.win[:], buf[n-rabinWindow:n])
		c.wpos = 0
	} else {
		for i, b := range buf[:n] {
			c.win[(wpos+i)&(rabinWindow-1)] = b
		}
		c.wpos = (wpos + n) & (rabinWindow - 1)
	}
	c.digest, c.count = digest, count+n
	return n, false
}
