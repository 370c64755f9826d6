package chunk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/restic/chunker"
)

var benchSets = []struct {
	name string
	data func() []byte
}{
	{"random", func() []byte { r, _ := benchData(); return r }},
	{"text", func() []byte { _, t := benchData(); return t }},
}

// BenchmarkChunkerOnly is the bare chunker with DefaultParams and a reused
// buffer: the upper bound for the cutting goroutine of Split. "restic" is
// github.com/restic/chunker, which cuts at the same places (the reference
// TestRabinCutsAsRestic checks against).
func BenchmarkChunkerOnly(b *testing.B) {
	p := DefaultParams()
	for _, set := range benchSets {
		b.Run(set.name, func(b *testing.B) {
			data := set.data()
			s := newSplitter(nil, p)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				s.Reset(bytes.NewReader(data))
				for {
					_, err := s.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(set.name+"/restic", func(b *testing.B) {
			data := set.data()
			c := chunker.NewWithBoundaries(nil, chunker.Pol(p.Polynomial), uint(p.MinSize), uint(p.MaxSize))
			buf := make([]byte, 0, p.MaxSize)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				c.ResetWithBoundaries(bytes.NewReader(data), chunker.Pol(p.Polynomial), uint(p.MinSize), uint(p.MaxSize))
				c.SetAverageBits(int(p.AverageBits))
				for {
					ch, err := c.Next(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					buf = ch.Data[:0]
				}
			}
		})
	}
}

// BenchmarkBLAKE3 hashes 64 KiB blocks, the average chunk size.
func BenchmarkBLAKE3(b *testing.B) {
	for _, set := range benchSets {
		b.Run(set.name, func(b *testing.B) {
			data := set.data()
			b.SetBytes(int64(len(data)))
			var sink ID
			for b.Loop() {
				for i := 0; i < len(data); i += 64 << 10 {
					sink = Sum(data[i:min(i+64<<10, len(data))])
				}
			}
			_ = sink
		})
	}
}

// BenchmarkZstd compresses 64 KiB blocks with Codec.Compress, reusing the
// output buffer.
func BenchmarkZstd(b *testing.B) {
	c := newTestCodec(b)
	for _, set := range benchSets {
		b.Run(set.name, func(b *testing.B) {
			data := set.data()
			out, _ := c.Compress(nil, data[:1<<20]) // warm the encoders
			b.SetBytes(int64(len(data)))
			var in, stored int
			for b.Loop() {
				in, stored = 0, 0
				for i := 0; i < len(data); i += 64 << 10 {
					block := data[i:min(i+64<<10, len(data))]
					out, _ = c.Compress(out[:0], block)
					in += len(block)
					stored += len(out)
				}
			}
			b.ReportMetric(float64(in)/float64(stored), "ratio")
		})
	}
}

// BenchmarkSplitPipeline runs Split with compression, as a backup does.
func BenchmarkSplitPipeline(b *testing.B) {
	c := newTestCodec(b)
	p := DefaultParams()
	for _, set := range benchSets {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", set.name, workers), func(b *testing.B) {
				data := set.data()
				split := func(d []byte, fn func(Block) error) {
					if err := Split(context.Background(), bytes.NewReader(d), p, c, SplitOptions{Workers: workers}, fn); err != nil {
						b.Fatal(err)
					}
				}
				// Warm the buffer pools and the encoders, so that a short
				// -benchtime measures the steady state.
				split(data[:8<<20], func(Block) error { return nil })
				b.SetBytes(int64(len(data)))
				var blocks int
				for b.Loop() {
					blocks = 0
					split(data, func(Block) error {
						blocks++
						return nil
					})
				}
				b.ReportMetric(float64(blocks), "chunks")
			})
		}
	}
}

// BenchmarkSplitSmallFile is Split on a Journal's typical metadata file (a
// few dozen bytes): what a file costs beyond its bytes.
func BenchmarkSplitSmallFile(b *testing.B) {
	c, err := NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	data := []byte("2026-12-06T18:36:15.123456 a child's drawing of a cat")
	p := DefaultParams()
	ctx := context.Background()
	r := bytes.NewReader(data)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(data)
		if err := Split(ctx, r, p, c, SplitOptions{}, func(Block) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
