package chunk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/restic/chunker"
)

// resticCuts are the chunk lengths github.com/restic/chunker gives data.
func resticCuts(t testing.TB, data []byte, p Params) []int {
	c := chunker.NewWithBoundaries(bytes.NewReader(data), chunker.Pol(p.Polynomial), uint(p.MinSize), uint(p.MaxSize))
	c.SetAverageBits(int(p.AverageBits))
	buf := make([]byte, p.MaxSize)
	var cuts []int
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return cuts
		}
		if err != nil {
			t.Fatal(err)
		}
		cuts = append(cuts, int(ch.Length))
	}
}

func rabinCuts(t testing.TB, r io.Reader, p Params, want []byte) []int {
	s, err := NewSplitter(r, p)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []int
	var got []byte
	for {
		c, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c...)
		cuts = append(cuts, len(c))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the chunks do not add up to the stream (%d of %d bytes)", len(got), len(want))
	}
	return cuts
}

// TestRabinCutsAsRestic: our chunker cuts every stream exactly where
// restic/chunker does (the cut points are part of every store's format:
// a laptop that cut differently would dedup against nothing), for the
// default parameters and others Validate accepts, random and repetitive
// data, streams shorter than MinSize, and readers that return a byte at a
// time or half of what is asked.
func TestRabinCutsAsRestic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 6<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("the turtle draws a square; the square draws a turtle. "), 60000)
	mixed := append(append(append([]byte(nil), random[:1<<20]...), make([]byte, 1<<20)...), text[:2<<20]...)
	small := DefaultParams()
	small.MinSize, small.AverageBits, small.MaxSize = 512, 10, 4096
	odd := DefaultParams()
	odd.Polynomial = 0x3DA3358B4DC173 // restic's own test polynomial
	odd.MinSize, odd.AverageBits, odd.MaxSize = 3000, 13, 70000
	big := DefaultParams()
	big.MinSize, big.AverageBits, big.MaxSize = 256<<10, 20, 8<<20
	// A match every ~4 KiB: scan's blocks often have their first match in
	// lane 1, 2 or 3, or matches in several lanes at once.
	lanes := DefaultParams()
	lanes.MinSize, lanes.AverageBits, lanes.MaxSize = 1000, 12, 1<<20
	for _, p := range []Params{DefaultParams(), small, odd, big, lanes} {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"random": random, "text": text, "mixed": mixed, "short": random[:int(p.MinSize)/2], "empty": nil} {
			want := resticCuts(t, data, p)
			for rname, r := range map[string]io.Reader{
				"whole": bytes.NewReader(data),
				"half":  iotest.HalfReader(bytes.NewReader(data)),
			} {
				got := rabinCuts(t, r, p, data)
				if !equalInts(got, want) {
					t.Errorf("%+v %s %s: %d chunks, restic %d; first difference at chunk %d", p, name, rname, len(got), len(want), firstDiff(got, want))
				}
			}
		}
	}
	// A byte at a time, on a smaller stream.
	p := small
	data := random[:300<<10]
	if got, want := rabinCuts(t, iotest.OneByteReader(bytes.NewReader(data)), p, data), resticCuts(t, data, p); !equalInts(got, want) {
		t.Errorf("one byte at a time: first difference at chunk %d", firstDiff(got, want))
	}
}

// TestRabinTablesByDefinition: the tables built from their eight one-bit
// entries equal the tables computed byte by byte from their definition,
// for the default polynomial and restic's test polynomial.
func TestRabinTablesByDefinition(t *testing.T) {
	for _, pol := range []chunker.Pol{chunker.Pol(DefaultParams().Polynomial), 0x3DA3358B4DC173} {
		got := tablesFor(pol)
		for b := range 256 {
			h := chunker.Pol(b).Mod(pol)
			for range rabinWindow - 1 {
				h = (h << 8).Mod(pol)
			}
			top := chunker.Pol(b) << polDegree
			if got.out[b] != uint64(h) || got.mod[b] != uint64(top.Mod(pol)|top) {
				t.Fatalf("pol %#x, byte %d: out %#x mod %#x, by definition %#x %#x", pol, b, got.out[b], got.mod[b], h, top.Mod(pol)|top)
			}
		}
	}
}

// TestRabinReaderError: an error from the reader is returned as is.
func TestRabinReaderError(t *testing.T) {
	boom := errors.New("disk says no")
	s, err := NewSplitter(io.MultiReader(bytes.NewReader(make([]byte, 100<<10)), iotest.ErrReader(boom)), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s.Next()
		if errors.Is(err, boom) {
			return
		}
		if err != nil {
			t.Fatalf("got %v, want the reader's error", err)
		}
	}
}

func equalInts(a, b []int) bool { return firstDiff(a, b) < 0 }

func firstDiff(a, b []int) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// FuzzRabinCutsAsRestic: for any stream, our cut points are restic's.
func FuzzRabinCutsAsRestic(f *testing.F) {
	f.Add([]byte("hello"), uint8(10))
	f.Add(bytes.Repeat([]byte{0}, 5000), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, bits uint8) {
		p := DefaultParams()
		p.MinSize, p.AverageBits, p.MaxSize = 512, 10+uint32(bits%4), 16384
		if got, want := rabinCuts(t, bytes.NewReader(data), p, data), resticCuts(t, data, p); !equalInts(got, want) {
			t.Fatalf("first difference at chunk %d", firstDiff(got, want))
		}
	})
}

// TestSplitterAfterResetNil: a Splitter whose reader was dropped says so
// instead of reading from nil.
func TestSplitterAfterResetNil(t *testing.T) {
	s, err := NewSplitter(bytes.NewReader([]byte("abc")), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	s.Reset(nil)
	if _, err := s.Next(); !errors.Is(err, errRabinNoReader) {
		t.Fatalf("Next after Reset(nil): %v", err)
	}
}
