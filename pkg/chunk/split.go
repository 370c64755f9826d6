package chunk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
)

// Block is one chunk as it comes out of [Split].
type Block struct {
	// ID is the hash of the uncompressed chunk.
	ID ID
	// Offset is the position of the chunk in the stream.
	Offset int64
	// Length is the uncompressed length of the chunk.
	Length int
	// Data is the stored form of the chunk: a zstd frame if Compressed,
	// else the raw bytes. It is valid only during the callback; copy it to
	// keep it.
	Data []byte
	// Compressed reports whether Data is zstd compressed.
	Compressed bool
}

// SplitOptions tune [Split]. The zero value is fine.
type SplitOptions struct {
	// Workers is the number of goroutines that hash and compress chunks;
	// 0 (or less) means runtime.GOMAXPROCS(0).
	Workers int
	// NoCompress skips compression: every Block has the raw bytes in Data.
	// Use it when only the IDs are needed. The Codec may then be nil.
	NoCompress bool
}

// job carries one chunk through the pipeline. Ownership passes by channel:
// cutter -> worker (work) -> consumer (done) -> cutter (free).
type job struct {
	buf        []byte // pooled, cap >= MaxSize; data aliases it
	data       []byte
	off        int64
	id         ID
	out        []byte // pooled compression output
	compressed bool
	done       chan struct{} // cap 1; signalled by the worker
}

var (
	jobPool      sync.Pool // *job
	splitterPool sync.Pool // *Splitter
)

func getJob(maxSize uint32) *job {
	j, _ := jobPool.Get().(*job)
	if j == nil {
		j = &job{done: make(chan struct{}, 1)}
	}
	if cap(j.buf) < int(maxSize) {
		j.buf = make([]byte, 0, maxSize)
	}
	return j
}

func putJob(j *job) {
	j.data = nil
	jobPool.Put(j)
}

func getSplitter(r io.Reader, p Params) *Splitter {
	if s, _ := splitterPool.Get().(*Splitter); s != nil {
		s.p = p
		s.Reset(r)
		return s
	}
	return newSplitter(r, p)
}

func putSplitter(s *Splitter) {
	s.Reset(nil) // drop the reference to the caller's reader
	splitterPool.Put(s)
}

// Split cuts r into chunks with p and calls fn with each chunk as a [Block],
// in stream order, on the goroutine that called Split.
//
// One goroutine reads and cuts; opts.Workers goroutines hash and (unless
// opts.NoCompress) compress with c. At most 2*Workers+2 chunks are in flight,
// each in a buffer of p.MaxSize bytes (plus its compressed form) taken from a
// pool and reused, so memory stays bounded whatever the stream length.
//
// Split returns nil when r is exhausted, the error of fn if fn fails, the
// error of r if reading fails, or ctx.Err() if ctx is done; in the last three
// cases fn is not called again. When Split returns (or fn panics through
// it), every goroutine it started has stopped. A Read that blocks delays
// that return: Split cannot interrupt it.
func Split(ctx context.Context, r io.Reader, p Params, c *Codec, opts SplitOptions, fn func(Block) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if c == nil && !opts.NoCompress {
		return errors.New("chunk: Split needs a Codec unless NoCompress is set")
	}
	if fn == nil {
		return errors.New("chunk: Split needs a callback")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A stream shorter than MinSize is one chunk (no cut comes before
	// MinSize): a Journal's metadata files, most of its files, are a few
	// bytes each. Such a chunk is hashed and compressed here, without the
	// pipeline's goroutines and their hand-offs.
	j := getJob(p.MaxSize)
	n, rerr := io.ReadFull(r, j.buf[:p.MinSize])
	switch {
	case rerr == io.EOF:
		putJob(j)
		return nil
	case rerr == io.ErrUnexpectedEOF:
		defer putJob(j)
		b := Block{ID: Sum(j.buf[:n]), Length: n, Data: j.buf[:n]}
		if !opts.NoCompress {
			if out, ok := c.compress(j.out[:0], b.Data); ok {
				j.out, b.Data, b.Compressed = out, out, true
			}
		}
		return fn(b)
	case rerr != nil:
		putJob(j)
		return rerr
	}
	// Longer: the pipeline cuts it, from the bytes already read on (in
	// j, kept until Split returns: a copy would be fresh memory per file).
	defer putJob(j)
	r = io.MultiReader(bytes.NewReader(j.buf[:n]), r)

	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	inflight := 2*workers + 2
	compress := !opts.NoCompress

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Every channel can hold all jobs that exist, so sends never block.
	work := make(chan *job, inflight)
	order := make(chan *job, inflight)
	free := make(chan *job, inflight)

	var wg sync.WaitGroup
	var cutErr error // set by the cutter before it closes order

	wg.Add(1)
	go func() {
		defer wg.Done()
		s := getSplitter(r, p)
		defer putSplitter(s)
		defer close(order)
		defer close(work)
		allocated := 0
		var off int64
		for {
			var j *job
			select {
			case j = <-free:
			default:
				if allocated < inflight {
					j = getJob(p.MaxSize)
					allocated++
				} else {
					select {
					case j = <-free:
					case <-ctx.Done():
						cutErr = ctx.Err()
						return
					}
				}
			}
			if err := ctx.Err(); err != nil {
				cutErr = err
				free <- j
				return
			}
			data, err := s.next(j.buf[:0])
			if err != nil {
				free <- j
				if err != io.EOF {
					cutErr = err
				}
				return
			}
			j.data = data
			j.off = off
			off += int64(len(data))
			work <- j
			order <- j
		}
	}()

	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if ctx.Err() == nil { // after cancellation just pass jobs through
					j.id = Sum(j.data)
					j.compressed = false
					if compress {
						j.out, j.compressed = c.compress(j.out[:0], j.data)
					}
				}
				j.done <- struct{}{}
			}
		}()
	}

	// Cleanup also runs if fn panics, so that no goroutine outlives Split
	// and no buffer still in use by a worker goes back to the pool.
	defer func() {
		cancel()
		for j := range order {
			<-j.done
			free <- j
		}
		wg.Wait()
		for len(free) > 0 {
			putJob(<-free)
		}
	}()

	var err error
	for j := range order {
		if err == nil {
			select {
			case <-j.done:
				if err = ctx.Err(); err == nil {
					b := Block{ID: j.id, Offset: j.off, Length: len(j.data), Data: j.data}
					if j.compressed {
						b.Data, b.Compressed = j.out, true
					}
					err = fn(b)
				}
			case <-ctx.Done():
				err = ctx.Err()
				<-j.done
			}
			if err != nil {
				cancel() // stop the cutter; workers skip the remaining jobs
			}
		} else {
			<-j.done
		}
		free <- j
	}
	// order is closed: the cutter has stopped and set cutErr.
	if err == nil {
		err = cutErr
	}
	return err
}
