package chunk

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// minCompressLen is the size below which Compress does not try: the frame
// overhead eats any gain.
const minCompressLen = 64

// The entropy probe: a chunk of at least probeMin bytes is compressed only
// if the order-0 entropy of a sample (probeSpans spans of probeSpan bytes
// spread over it) is below probeBits bits per byte. Already compressed data
// (JPEG, PNG, MP3, Ogg, zip and so activity bundles and EPUBs, gzip) samples
// at 7.93 to 7.96 bits per byte and never gains the 1/16 Compress asks for;
// text samples at 4.5 to 5.5. Measured on 4 KiB samples of files on a
// Debian system: every file above 7.9 compressed by less than 3% (zlib -1),
// so skipping them costs nothing and saves zstd's pass over the chunk,
// which has no assembly on an XO-1.
const (
	probeMin   = 16 << 10
	probeSpan  = 1 << 10
	probeSpans = 4
	probeBits  = 7.9
)

// nlognBits caches n*log2(n) for the probe's entropy sum (the float64's
// bits; 0 until computed, and n*log2(n) is 0 only for n < 2). Entries are
// computed when a probe first needs them, at most 256 a probe: a table of
// all 4097 computed when the package was loaded cost every start of the
// XO-1's softfloat build 6-9 ms (half of a run that ends at once), and
// most runs probe nothing.
var nlognBits [probeSpan*probeSpans + 1]atomic.Uint64

// nlogn returns n*log2(n).
func nlogn(n uint16) float64 {
	if b := nlognBits[n].Load(); b != 0 || n < 2 {
		return math.Float64frombits(b)
	}
	v := float64(n) * math.Log2(float64(n))
	nlognBits[n].Store(math.Float64bits(v))
	return v
}

// incompressible reports whether src looks like already compressed data:
// the entropy of a 4 KiB sample, which costs about 1% of compressing it.
func incompressible(src []byte) bool {
	if len(src) < probeMin {
		return false
	}
	var count [256]uint16
	step := (len(src) - probeSpan) / (probeSpans - 1)
	for i := range probeSpans {
		for _, b := range src[i*step : i*step+probeSpan] {
			count[b]++
		}
	}
	const n = probeSpan * probeSpans
	// H = log2(n) - (1/n) * sum(c*log2(c))
	sum := 0.0
	for _, c := range count {
		sum += nlogn(c)
	}
	return math.Log2(n)-sum/n >= probeBits
}

// encoderWindow is the zstd window: the longest back-reference distance.
const encoderWindow = 1 << 20

// Codec compresses and decompresses chunks with zstd at its fastest level.
// It is safe for concurrent use; the encoder and decoder are created once and
// shared. The zero Codec is not usable; call [NewCodec].
type Codec struct {
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	close sync.Once
}

// NewCodec returns a Codec. Call Close when done with it.
func NewCodec() (*Codec, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(0), // GOMAXPROCS parallel EncodeAll calls
		// Default chunks are at most 512 KiB, so a larger window gains
		// nothing but costs 8 MiB of history per encoder.
		zstd.WithWindowSize(encoderWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("chunk: zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0), // GOMAXPROCS parallel DecodeAll calls
		zstd.WithDecoderMaxMemory(MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("chunk: zstd decoder: %w", err)
	}
	return &Codec{enc: enc, dec: dec}, nil
}

// Compress appends the stored form of src to dst and reports whether it is
// compressed. If src is shorter than 64 bytes, longer than MaxChunkSize
// (a large directory's tree: Decompress reads at most MaxChunkSize), looks
// already compressed (a cheap entropy probe of a sample), or the zstd frame
// would not be at least 1/16 smaller than src, src is appended unchanged
// and compressed is false. dst and src must not overlap.
func (c *Codec) Compress(dst, src []byte) (out []byte, compressed bool) {
	if out, ok := c.compress(dst, src); ok {
		return out, true
	}
	return append(dst, src...), false
}

// compress appends src's zstd frame to dst if compressing pays (see
// Compress); otherwise it returns dst unchanged and false, without copying
// src: Split hands the raw bytes on as they are.
func (c *Codec) compress(dst, src []byte) (out []byte, compressed bool) {
	if len(src) < minCompressLen || len(src) > MaxChunkSize || incompressible(src) {
		return dst, false
	}
	n := len(dst)
	out = c.enc.EncodeAll(src, dst)
	if len(out)-n > len(src)-len(src)/16 {
		return out[:n], false
	}
	return out, true
}

// Decompress appends the decompressed contents of the zstd frame src to dst.
// rawLen is the expected uncompressed length; it is an error if it exceeds
// MaxChunkSize or if src does not decompress to exactly rawLen bytes.
//
// Memory is bounded by rawLen, not by what src claims: a frame header that
// declares another size is rejected before anything is allocated, output
// space for exactly rawLen bytes is reserved, and decoding stops with an error
// as soon as the output would outgrow it. A hostile frame can at worst make
// the decoder grow that space once, so a call never allocates more than about
// 2.5*rawLen bytes, and so never more than about 20 MiB.
//
// On error dst is returned unchanged (its spare capacity may have been
// written).
func (c *Codec) Decompress(dst, src []byte, rawLen int) ([]byte, error) {
	if rawLen < 0 || rawLen > MaxChunkSize {
		return dst, fmt.Errorf("chunk: decompress: raw length %d out of range [0, %d]", rawLen, MaxChunkSize)
	}
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return dst, fmt.Errorf("chunk: decompress: bad zstd frame: %w", err)
	}
	if h.HasFCS && h.FrameContentSize != uint64(rawLen) {
		return dst, fmt.Errorf("chunk: decompress: frame holds %d bytes, want %d", h.FrameContentSize, rawLen)
	}
	n := len(dst)
	buf := dst
	if cap(buf)-n < rawLen {
		buf = make([]byte, n, n+rawLen)
		copy(buf, dst)
	}
	// The three-index slice makes the decoder's cap limit exactly rawLen.
	out, err := c.dec.DecodeAll(src, buf[:n:n+rawLen])
	if err != nil {
		return dst, fmt.Errorf("chunk: decompress: %w", err)
	}
	if len(out) != n+rawLen {
		return dst, fmt.Errorf("chunk: decompress: got %d bytes, want %d", len(out)-n, rawLen)
	}
	res := buf[:n+rawLen]
	if rawLen > 0 && &out[n] != &res[n] {
		copy(res[n:], out[n:])
	}
	return res, nil
}

// Close releases the encoder and decoder. The Codec must not be used after
// Close. Calling Close more than once is harmless.
func (c *Codec) Close() {
	c.close.Do(func() {
		_ = c.enc.Close()
		c.dec.Close()
	})
}
