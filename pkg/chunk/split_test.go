package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"testing/iotest"
	"time"
)

func newTestCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// mixedData has random and text-like stretches, so a split holds both raw and
// compressed blocks.
func mixedData() []byte {
	var b []byte
	b = append(b, textData(20, 1<<20)...)
	b = append(b, randomData(21, 1<<20)...)
	b = append(b, textData(22, 700<<10)...)
	b = append(b, make([]byte, 200<<10)...)
	b = append(b, randomData(23, 300<<10+17)...)
	return b
}

// checkGoroutines fails if the goroutine count does not settle back to n.
func checkGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d goroutines, want <= %d\n%s", runtime.NumGoroutine(), n, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSplitMatchesSplitter(t *testing.T) {
	c := newTestCodec(t)
	p := DefaultParams()
	data := mixedData()
	want, _, err := splitAll(bytes.NewReader(data), p)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for _, workers := range []int{0, 1, 2, 4} {
		for _, noCompress := range []bool{false, true} {
			t.Run(fmt.Sprintf("workers=%d/nocompress=%v", workers, noCompress), func(t *testing.T) {
				var got []chunkRec
				var all []byte
				var ncomp, nraw int
				err := Split(context.Background(), iotest.HalfReader(bytes.NewReader(data)), p, c,
					SplitOptions{Workers: workers, NoCompress: noCompress}, func(b Block) error {
						raw := b.Data
						if b.Compressed {
							ncomp++
							if noCompress {
								t.Fatal("compressed block with NoCompress")
							}
							var err error
							raw, err = c.Decompress(nil, b.Data, b.Length)
							if err != nil {
								t.Fatalf("block at %d: %v", b.Offset, err)
							}
							if len(b.Data) >= b.Length {
								t.Errorf("compressed block at %d is not smaller: %d >= %d", b.Offset, len(b.Data), b.Length)
							}
						} else {
							nraw++
						}
						if len(raw) != b.Length {
							t.Fatalf("block at %d: %d bytes, Length %d", b.Offset, len(raw), b.Length)
						}
						if Sum(raw) != b.ID {
							t.Fatalf("block at %d: ID does not match data", b.Offset)
						}
						got = append(got, chunkRec{b.Offset, b.Length, b.ID})
						all = append(all, raw...)
						return nil
					})
				if err != nil {
					t.Fatal(err)
				}
				sameRecs(t, "split", got, want)
				if !bytes.Equal(all, data) {
					t.Fatal("blocks do not reassemble to the input")
				}
				if !noCompress && (ncomp == 0 || nraw == 0) {
					t.Errorf("want both compressed and raw blocks, got %d and %d", ncomp, nraw)
				}
			})
		}
	}
	checkGoroutines(t, before)
}

func TestSplitEmptyAndSmall(t *testing.T) {
	c := newTestCodec(t)
	calls := 0
	err := Split(context.Background(), bytes.NewReader(nil), DefaultParams(), c, SplitOptions{}, func(Block) error {
		calls++
		return nil
	})
	if err != nil || calls != 0 {
		t.Fatalf("empty stream: err %v, %d calls; want nil, 0", err, calls)
	}

	small := []byte("a small Journal metadata entry")
	var got []Block
	err = Split(context.Background(), bytes.NewReader(small), DefaultParams(), c, SplitOptions{}, func(b Block) error {
		b.Data = bytes.Clone(b.Data)
		got = append(got, b)
		return nil
	})
	if err != nil || len(got) != 1 {
		t.Fatalf("small: err %v, %d blocks", err, len(got))
	}
	if b := got[0]; b.ID != Sum(small) || b.Offset != 0 || b.Length != len(small) || b.Compressed || !bytes.Equal(b.Data, small) {
		t.Fatalf("small: got %+v", b)
	}
}

func TestSplitArgs(t *testing.T) {
	nop := func(Block) error { return nil }
	ctx := context.Background()
	if err := Split(ctx, bytes.NewReader(nil), Params{}, nil, SplitOptions{NoCompress: true}, nop); err == nil {
		t.Error("Split accepted invalid params")
	}
	if err := Split(ctx, bytes.NewReader(nil), DefaultParams(), nil, SplitOptions{}, nop); err == nil {
		t.Error("Split accepted a nil Codec without NoCompress")
	}
	if err := Split(ctx, bytes.NewReader([]byte("x")), DefaultParams(), nil, SplitOptions{NoCompress: true}, nop); err != nil {
		t.Errorf("nil Codec with NoCompress: %v", err)
	}
	if err := Split(ctx, bytes.NewReader(nil), DefaultParams(), nil, SplitOptions{NoCompress: true}, nil); err == nil {
		t.Error("Split accepted a nil callback")
	}
}

// endless is an infinite pseudo-random stream.
type endless struct{ state uint64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		e.state = e.state*6364136223846793005 + 1442695040888963407
		p[i] = byte(e.state >> 56)
	}
	return len(p), nil
}

func TestSplitCallbackError(t *testing.T) {
	c := newTestCodec(t)
	before := runtime.NumGoroutine()
	stop := errors.New("stop")
	for _, workers := range []int{1, 2, 4} {
		for _, r := range []io.Reader{bytes.NewReader(mixedData()), &endless{1}} {
			calls := 0
			err := Split(context.Background(), r, DefaultParams(), c, SplitOptions{Workers: workers}, func(b Block) error {
				calls++
				if calls == 3 {
					return stop
				}
				if calls > 3 {
					t.Errorf("callback called after it failed")
				}
				return nil
			})
			if err != stop {
				t.Fatalf("workers=%d: err = %v, want %v", workers, err, stop)
			}
			if calls != 3 {
				t.Fatalf("workers=%d: %d calls, want 3", workers, calls)
			}
		}
	}
	checkGoroutines(t, before)
}

func TestSplitCancel(t *testing.T) {
	c := newTestCodec(t)
	before := runtime.NumGoroutine()
	for _, workers := range []int{1, 2, 4} {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := Split(ctx, &endless{2}, DefaultParams(), c, SplitOptions{Workers: workers}, func(b Block) error {
			calls++
			if calls == 5 {
				cancel()
			}
			if calls > 5 {
				t.Errorf("callback called after cancel")
			}
			return nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("workers=%d: err = %v, want context.Canceled", workers, err)
		}
	}

	// Cancelled from another goroutine while the callback is slow.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	err := Split(ctx, &endless{3}, DefaultParams(), c, SplitOptions{Workers: 2}, func(Block) error {
		time.Sleep(time.Millisecond)
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("async cancel: err = %v, want context.Canceled", err)
	}

	// Deadline, endless input, fast callback.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = Split(ctx, &endless{4}, DefaultParams(), c, SplitOptions{Workers: 2, NoCompress: true}, func(Block) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: err = %v, want context.DeadlineExceeded", err)
	}

	// Already cancelled: no callback at all.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	err = Split(ctx, bytes.NewReader(mixedData()), DefaultParams(), c, SplitOptions{}, func(Block) error {
		t.Error("callback called with a cancelled context")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("pre-cancelled: err = %v", err)
	}
	checkGoroutines(t, before)
}

func TestSplitReadError(t *testing.T) {
	c := newTestCodec(t)
	boom := errors.New("boom")
	data := randomData(30, 2<<20)
	want, _, _ := splitAll(bytes.NewReader(data), DefaultParams())
	var got []chunkRec
	r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	err := Split(context.Background(), r, DefaultParams(), c, SplitOptions{Workers: 2}, func(b Block) error {
		got = append(got, chunkRec{b.Offset, b.Length, b.ID})
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	// All complete chunks before the error were delivered, in order; the
	// partial last one was not.
	if len(got) != len(want)-1 {
		t.Fatalf("got %d blocks, want %d", len(got), len(want)-1)
	}
	sameRecs(t, "before error", got, want[:len(got)])
}

// TestSplitBoundedMemory checks that a long split reuses its buffers instead
// of allocating per chunk.
func TestSplitBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	if raceEnabled {
		t.Skip("the race detector drops pooled buffers at random; make unit runs this test again without -race")
	}
	c := newTestCodec(t)
	p := DefaultParams()
	run := func(n int64) uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		start := ms.TotalAlloc
		err := Split(context.Background(), io.LimitReader(&endless{5}, n), p, c, SplitOptions{Workers: 2}, func(Block) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		return ms.TotalAlloc - start
	}
	run(8 << 20) // warm pools and codec
	small := run(8 << 20)
	large := run(64 << 20)
	t.Logf("allocated: 8 MiB split %d bytes, 64 MiB split %d bytes", small, large)
	// 56 MiB more input is ~700 more chunks; allow a few KiB per chunk for
	// channel and zstd bookkeeping, far below one chunk buffer each.
	if large > small+8<<20 {
		t.Fatalf("split of 64 MiB allocated %d bytes, 8 MiB allocated %d: memory grows with input", large, small)
	}
}

func TestSplitCallbackPanic(t *testing.T) {
	c := newTestCodec(t)
	before := runtime.NumGoroutine()
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		calls := 0
		Split(context.Background(), &endless{7}, DefaultParams(), c, SplitOptions{Workers: 2}, func(Block) error {
			calls++
			if calls == 3 {
				panic("boom")
			}
			return nil
		})
	}()
	checkGoroutines(t, before)
	// The pools are still consistent: a normal split works.
	data := randomData(31, 1<<20)
	want, _, _ := splitAll(bytes.NewReader(data), DefaultParams())
	var got []chunkRec
	err := Split(context.Background(), bytes.NewReader(data), DefaultParams(), c, SplitOptions{Workers: 2}, func(b Block) error {
		got = append(got, chunkRec{b.Offset, b.Length, b.ID})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sameRecs(t, "after panic", got, want)
}

// Streams shorter than MinSize take Split's short path (no pipeline);
// around that length Split must cut exactly as the Splitter does, compress
// what compresses, and a read error within the first MinSize bytes must end
// Split with that error and no block.
func TestSplitAroundMinSize(t *testing.T) {
	c := newTestCodec(t)
	p := DefaultParams()
	m := int(p.MinSize)
	text := bytes.Repeat([]byte("the same line of a child's story. "), 3*m/34+1)
	noise := randomData(31, 3*m)
	for _, src := range [][]byte{text, noise} {
		for _, n := range []int{1, 63, 64, m - 1, m, m + 1, 2*m + 7} {
			data := src[:n]
			want, _, err := splitAll(bytes.NewReader(data), p)
			if err != nil {
				t.Fatal(err)
			}
			var got []chunkRec
			var all []byte
			compressed := false
			err = Split(context.Background(), iotest.OneByteReader(bytes.NewReader(data)), p, c, SplitOptions{}, func(b Block) error {
				got = append(got, chunkRec{b.Offset, b.Length, b.ID})
				raw := b.Data
				if b.Compressed {
					compressed = true
					var err error
					if raw, err = c.Decompress(nil, b.Data, b.Length); err != nil {
						return err
					}
				}
				all = append(all, raw...)
				return nil
			})
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			sameRecs(t, fmt.Sprintf("%d bytes", n), got, want)
			if !bytes.Equal(all, data) {
				t.Fatalf("%d bytes: blocks do not reassemble to the input", n)
			}
			if &src[0] == &text[0] && n >= 1024 && !compressed {
				t.Fatalf("%d bytes of text: nothing compressed", n)
			}
		}
	}
	boom := errors.New("boom")
	calls := 0
	err := Split(context.Background(), io.MultiReader(bytes.NewReader(text[:100]), iotest.ErrReader(boom)), p, c, SplitOptions{}, func(Block) error {
		calls++
		return nil
	})
	if !errors.Is(err, boom) || calls != 0 {
		t.Fatalf("a read error in the first bytes: err %v after %d blocks; want boom and none", err, calls)
	}
}

// A file longer than MinSize (a photo, a document) goes through the
// pipeline from the bytes Split read first. Those stay in the job that
// read them: a copy was 16 KiB of fresh memory per file, which a laptop's
// run, collecting no garbage, takes from the kernel page by page.
func TestSplitBoundedMemoryLongFile(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers; make unit runs this without it")
	}
	c := newTestCodec(t)
	p := DefaultParams()
	data := randomData(5, int(p.MinSize)*3)
	split := func() {
		if err := Split(context.Background(), bytes.NewReader(data), p, c, SplitOptions{Workers: 1}, func(Block) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// As in xo-backup, no collection empties the pools meanwhile.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	split() // the pools fill
	// The least of five rounds: TotalAlloc counts every goroutine's
	// allocations, the test binary's own too.
	per := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 20
		for range n {
			split()
		}
		runtime.ReadMemStats(&after)
		per = min(per, (after.TotalAlloc-before.TotalAlloc)/n)
	}
	if per >= uint64(p.MinSize) {
		t.Errorf("Split of a %d-byte stream allocates %d bytes a call with warm pools, want less than MinSize (%d)", len(data), per, p.MinSize)
	}
}
