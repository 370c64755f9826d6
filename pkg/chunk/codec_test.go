package chunk

import (
	"bytes"
	"io"
	"math"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestCodecRoundTrip(t *testing.T) {
	c := newTestCodec(t)
	for _, tc := range []struct {
		name     string
		data     []byte
		compress bool
	}{
		{"empty", nil, false},
		{"tiny", []byte("hello hello hello hello"), false},
		{"63 zeros", make([]byte, 63), false},
		{"64 zeros", make([]byte, 64), true},
		{"random", randomData(40, 100<<10), false},
		{"text", textData(41, 100<<10), true},
		{"text 512KiB", textData(42, 512<<10), true},
		{"text 3MiB", textData(43, 3<<20), true},
		{"zeros max", make([]byte, MaxChunkSize), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			out, compressed := c.Compress(bytes.Clone(prefix), tc.data)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatal("Compress did not append to dst")
			}
			stored := out[len(prefix):]
			if compressed != tc.compress {
				t.Fatalf("compressed = %v, want %v (%d -> %d bytes)", compressed, tc.compress, len(tc.data), len(stored))
			}
			if !compressed {
				if !bytes.Equal(stored, tc.data) {
					t.Fatal("raw output differs from input")
				}
				return
			}
			if len(stored) > len(tc.data)-len(tc.data)/16 {
				t.Fatalf("compressed %d -> %d bytes: not 1/16 smaller", len(tc.data), len(stored))
			}
			got, err := c.Decompress([]byte("pre"), stored, len(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append([]byte("pre"), tc.data...)) {
				t.Fatal("round trip differs")
			}
			// Decompressing into a buffer with room must not allocate a new one.
			buf := make([]byte, 0, len(tc.data)+10)
			got, err = c.Decompress(buf, stored, len(tc.data))
			if err != nil || &got[0] != &buf[:1][0] {
				t.Fatalf("Decompress into roomy buffer: err %v, reused %v", err, err == nil && &got[0] == &buf[:1][0])
			}
		})
	}
}

func TestCodecTextRatio(t *testing.T) {
	c := newTestCodec(t)
	data := textData(44, 64<<10)
	out, ok := c.Compress(nil, data)
	if !ok || 2*len(out) > len(data) {
		t.Fatalf("text compressed to %d of %d bytes (compressed=%v); want at least 2:1", len(out), len(data), ok)
	}
}

func TestDecompressRejects(t *testing.T) {
	c := newTestCodec(t)
	data := textData(45, 64<<10)
	frame, ok := c.Compress(nil, data)
	if !ok {
		t.Fatal("text did not compress")
	}
	dst := []byte("keep")
	check := func(name string, src []byte, rawLen int) {
		t.Helper()
		out, err := c.Decompress(dst, src, rawLen)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst changed to %d bytes", name, len(out))
		}
	}
	check("rawLen too small", frame, len(data)-1)
	check("rawLen too large", frame, len(data)+1)
	check("rawLen zero", frame, 0)
	check("rawLen negative", frame, -1)
	check("rawLen above MaxChunkSize", frame, MaxChunkSize+1)
	check("garbage", randomData(46, 1000), 1000)
	check("empty", nil, 10)
	check("truncated", frame[:len(frame)/2], len(data))
	bad := bytes.Clone(frame)
	bad[len(bad)/2] ^= 0xff
	check("corrupt", bad, len(data))
	check("two frames", append(bytes.Clone(frame), frame...), len(data))

	// A frame without a declared content size, made by the streaming
	// encoder, still has to match rawLen exactly.
	data = textData(47, 1<<20)
	var sb bytes.Buffer
	w, _ := zstd.NewWriter(&sb, zstd.WithEncoderConcurrency(1))
	for i := 0; i < len(data); i += 1000 {
		w.Write(data[i:min(i+1000, len(data))])
	}
	w.Close()
	var h zstd.Header
	if err := h.Decode(sb.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streaming frame header: %+v, %v; want no content size", h, err)
	}
	if got, err := c.Decompress(nil, sb.Bytes(), len(data)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("streaming frame: %v", err)
	}
	check("streaming frame, rawLen too small", sb.Bytes(), len(data)-1)
	check("streaming frame, rawLen too large", sb.Bytes(), len(data)+1)
}

// TestDecompressBomb checks that frames expanding to far more than rawLen
// fail without allocating their full size: the bound is rawLen plus one
// growth of the output buffer by the decoder.
func TestDecompressBomb(t *testing.T) {
	c := newTestCodec(t)

	// Streaming frame of 256 MiB of zeros: no content size in the header.
	var sb bytes.Buffer
	w, _ := zstd.NewWriter(&sb, zstd.WithEncoderConcurrency(1))
	if _, err := io.Copy(w, io.LimitReader(zeroReader{}, 256<<20)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	streaming := sb.Bytes()

	// Single frame declaring 9 MiB (> MaxChunkSize) of content.
	declared := zstd.EncodeTo(nil, make([]byte, 9<<20))

	for _, tc := range []struct {
		name   string
		frame  []byte
		rawLen int
	}{
		{"streaming 1MiB", streaming, 1 << 20},
		{"streaming max", streaming, MaxChunkSize},
		{"declared 9MiB", declared, MaxChunkSize},
		{"declared 9MiB small", declared, 1000},
	} {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		_, err := c.Decompress(nil, tc.frame, tc.rawLen)
		runtime.ReadMemStats(&ms)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if alloc := ms.TotalAlloc - before; alloc > uint64(tc.rawLen)*5/2+1<<20 {
			t.Errorf("%s: allocated %d bytes for rawLen %d", tc.name, alloc, tc.rawLen)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestCodecConcurrent(t *testing.T) {
	c := newTestCodec(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf, out []byte
			for i := range 20 {
				data := textData(uint64(100*g+i), 20<<10+i*1000)
				var compressed bool
				buf, compressed = c.Compress(buf[:0], data)
				out = append(out[:0], buf...)
				var err error
				if compressed {
					out, err = c.Decompress(out[:0], buf, len(data))
				}
				if err != nil || !bytes.Equal(out, data) {
					t.Errorf("goroutine %d, round %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCodecCloseTwice(t *testing.T) {
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
}

// The entropy probe skips what zstd cannot shrink and nothing it can:
// random bytes (compressed media) are stored raw without a zstd pass, text
// and a chunk that is random only in places are still compressed.
func TestProbeSkipsOnlyIncompressible(t *testing.T) {
	c := newTestCodec(t)
	rnd := randomData(7, 256<<10)
	txt := textData(8, 256<<10)
	if !incompressible(rnd) {
		t.Error("random bytes were not recognised as incompressible")
	}
	if out, ok := c.Compress(nil, rnd); ok || !bytes.Equal(out, rnd) {
		t.Errorf("random: compressed=%v, stored %d bytes of %d", ok, len(out), len(rnd))
	}
	if incompressible(txt) {
		t.Error("text was taken for incompressible")
	}
	if out, ok := c.Compress(nil, txt); !ok || len(out) > len(txt)/2 {
		t.Errorf("text: compressed=%v, %d bytes of %d", ok, len(out), len(txt))
	}
	// Zeros everywhere but where the sample looks: the probe may be fooled
	// into storing it raw, which costs space, never correctness.
	mixed := append(append([]byte(nil), rnd[:64<<10]...), make([]byte, 192<<10)...)
	if incompressible(mixed) {
		t.Error("a chunk that is three quarters zeros was taken for incompressible")
	}
	if _, ok := c.Compress(nil, mixed); !ok {
		t.Error("a chunk that is three quarters zeros was not compressed")
	}
	// Below probeMin the probe does not run.
	if incompressible(rnd[:probeMin-1]) {
		t.Error("the probe ran on a chunk shorter than probeMin")
	}
}

// TestNlognByDefinition: the probe's n*log2(n), computed on first use by
// several probes at once, is the value the definition gives, for every
// count a probe can see.
func TestNlognByDefinition(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range len(nlognBits) {
				n := (i + g*1000) % len(nlognBits)
				want := 0.0
				if n >= 2 {
					want = float64(n) * math.Log2(float64(n))
				}
				if got := nlogn(uint16(n)); got != want {
					t.Errorf("nlogn(%d) = %v, want %v", n, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// compress, which Split uses, leaves dst as it was when compressing does
// not pay (Split then hands on the raw bytes it already has) and otherwise
// appends what Compress appends.
func TestCompressLeavesDstWhenItDoesNotPay(t *testing.T) {
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	noise := make([]byte, 64<<10)
	for i := range noise {
		noise[i] = byte(i*7919 + i>>3*31 + i>>11)
	}
	text := bytes.Repeat([]byte("a child's story, written twice. "), 2000)
	for _, src := range [][]byte{noise, text, []byte("short")} {
		dst := []byte("prefix")
		out, ok := c.compress(dst, src)
		want, wantOK := c.Compress([]byte("prefix"), src)
		if ok != wantOK {
			t.Fatalf("%d bytes: compress says %v, Compress %v", len(src), ok, wantOK)
		}
		if ok && !bytes.Equal(out, want) {
			t.Fatalf("%d bytes: compress and Compress differ", len(src))
		}
		if !ok && string(out) != "prefix" {
			t.Fatalf("%d bytes: not compressed, yet dst became %d bytes", len(src), len(out))
		}
	}
}
