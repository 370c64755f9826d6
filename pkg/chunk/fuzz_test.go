package chunk

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

var (
	fuzzCodecOnce sync.Once
	fuzzCodec     *Codec
)

// sharedCodec is one Codec for all fuzz iterations; creating one per input
// would dominate the run time.
func sharedCodec(t *testing.T) *Codec {
	fuzzCodecOnce.Do(func() {
		c, err := NewCodec()
		if err != nil {
			t.Fatal(err)
		}
		fuzzCodec = c
	})
	return fuzzCodec
}

// FuzzDecompress feeds arbitrary frames and lengths to Decompress: it must
// never panic, never accept a wrong length and never return more capacity
// than rawLen. The fuzz engine minimizes every new input for up to a minute
// by default, and minimizing frames is slow; run it with e.g.
// -fuzzminimizetime 5s.
func FuzzDecompress(f *testing.F) {
	c, err := NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	text := textData(60, 5000)
	frame, _ := c.Compress(nil, text)
	small, _ := c.Compress(nil, bytes.Repeat([]byte("ab"), 50))
	c.Close()
	f.Add(frame, len(text))
	f.Add(frame, len(text)-1)
	f.Add(frame, MaxChunkSize+1)
	f.Add(small, 100)
	f.Add(append(bytes.Clone(frame), frame...), 2*len(text))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, 0)
	f.Add([]byte("not zstd at all"), 15)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, src []byte, rawLen int) {
		c := sharedCodec(t)
		out, err := c.Decompress(nil, src, rawLen)
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with non-nil output", err)
			}
			return
		}
		if rawLen < 0 || rawLen > MaxChunkSize {
			t.Fatalf("accepted rawLen %d", rawLen)
		}
		if len(out) != rawLen {
			t.Fatalf("got %d bytes, want %d", len(out), rawLen)
		}
		if cap(out) != rawLen {
			t.Fatalf("output capacity %d for rawLen %d: decoder allocated beyond the limit", cap(out), rawLen)
		}
		// Whatever decoded must re-encode and decode to the same bytes.
		if len(out) > 64<<10 {
			return // keep executions cheap
		}
		re, compressed := c.Compress(nil, out)
		if compressed {
			back, err := c.Decompress(nil, re, len(out))
			if err != nil || !bytes.Equal(back, out) {
				t.Fatalf("re-encoded data does not round trip: %v", err)
			}
		}
	})
}

// FuzzParseID checks that ParseID never panics and accepts exactly the hex
// forms that round-trip.
func FuzzParseID(f *testing.F) {
	f.Add(strings.Repeat("0", 64))
	f.Add(Sum([]byte("x")).String())
	f.Add(strings.ToUpper(Sum([]byte("y")).String()))
	f.Add(strings.Repeat("g", 64))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !id.IsZero() {
				t.Fatal("non-zero ID with error")
			}
			return
		}
		if got := id.String(); got != strings.ToLower(s) {
			t.Fatalf("ParseID(%q).String() = %q", s, got)
		}
		var id2 ID
		if err := id2.UnmarshalText([]byte(s)); err != nil || id2 != id {
			t.Fatalf("UnmarshalText(%q) = %v, %v", s, id2, err)
		}
	})
}

// fuzzParams are small so that fuzz inputs of a few KiB hold many chunks.
var fuzzParams = Params{Polynomial: 0x3DA3358B4DC173, MinSize: 512, AverageBits: 10, MaxSize: 4096}

// FuzzSplitStability checks that boundaries do not depend on how the reader
// returns data, that chunks reassemble to the input and respect the size
// limits, and that Split agrees with Splitter.
func FuzzSplitStability(f *testing.F) {
	f.Add([]byte{}, uint64(1))
	f.Add([]byte("hello"), uint64(2))
	f.Add(randomData(61, 20000), uint64(3))
	f.Add(textData(62, 20000), uint64(4))
	f.Add(make([]byte, 9000), uint64(5))
	f.Add(bytes.Repeat([]byte{0xAA}, 9000), uint64(6))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		p := fuzzParams
		want, all, err := splitAll(bytes.NewReader(data), p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(all, data) {
			t.Fatal("chunks do not reassemble to the input")
		}
		var off int64
		for i, r := range want {
			if r.Off != off || r.Len == 0 || r.Len > int(p.MaxSize) || (i < len(want)-1 && r.Len < int(p.MinSize)) {
				t.Fatalf("chunk %d: %+v (offset should be %d)", i, r, off)
			}
			off += int64(r.Len)
		}
		for name, r := range map[string]io.Reader{
			"onebyte": iotest.OneByteReader(bytes.NewReader(data)),
			"random":  newRandReader(data, seed, 1+int(seed%5000)),
		} {
			got, _, err := splitAll(r, p)
			if err != nil {
				t.Fatal(err)
			}
			sameRecs(t, name, got, want)
		}
		// The pipeline must agree with the Splitter.
		var got []chunkRec
		err = Split(context.Background(), bytes.NewReader(data), p, nil, SplitOptions{Workers: 2, NoCompress: true}, func(b Block) error {
			got = append(got, chunkRec{b.Offset, b.Length, b.ID})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sameRecs(t, "Split", got, want)
	})
}
