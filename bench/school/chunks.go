package school

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// ChunkRow is one average chunk size of the chunk-size study: every file of
// every laptop's snapshot of every night cut with these parameters.
type ChunkRow struct {
	// AverageKiB is 1<<AverageBits in KiB.
	AverageKiB int          `json:"average_kib"`
	Params     chunk.Params `json:"params"`
	// Logical is the bytes of every snapshot of every laptop (what a
	// system with no deduplication would hold).
	Logical int64 `json:"logical"`
	// Unique is the bytes of the distinct chunks.
	Unique int64 `json:"unique"`
	// Stored is the distinct chunks after pkg/chunk's zstd (Codec.Compress,
	// which keeps a chunk raw when zstd does not pay).
	Stored int64 `json:"stored"`
	// Chunks is the number of distinct chunks.
	Chunks int64 `json:"chunks"`
	// IndexBytes estimates the server's index for these chunks: Chunks
	// times the per-blob index cost measured on the benchmark's store.
	IndexBytes int64 `json:"index_bytes"`
}

// Dedup is the deduplication ratio: logical bytes over unique bytes.
func (c ChunkRow) Dedup() float64 { return ratio(c.Logical, c.Unique) }

// ChunksPerGiB is distinct chunks per GiB of unique data.
func (c ChunkRow) ChunksPerGiB() float64 {
	if c.Unique == 0 {
		return 0
	}
	return float64(c.Chunks) / (float64(c.Unique) / (1 << 30))
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// studyParams returns the parameters of the study: averages 16 KiB to
// 1 MiB, MinSize avg/4 and MaxSize avg*8 capped at chunk.MaxChunkSize (so
// 64 KiB gives exactly chunk.DefaultParams).
func studyParams() ([]chunk.Params, error) {
	var ps []chunk.Params
	for bits := uint32(14); bits <= 20; bits++ {
		avg := uint32(1) << bits
		p := chunk.DefaultParams()
		p.AverageBits, p.MinSize, p.MaxSize = bits, avg/4, min(avg*8, chunk.MaxChunkSize)
		if err := p.Validate(); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// chunkStudy counts distinct chunks for several parameter sets as the
// school's files change night after night.
type chunkStudy struct {
	params  []chunk.Params
	codec   *chunk.Codec
	mu      []sync.Mutex
	seen    []map[chunk.ID]struct{}
	unique  []atomic.Int64
	stored  []atomic.Int64
	logical int64
}

func newChunkStudy() (*chunkStudy, error) {
	ps, err := studyParams()
	if err != nil {
		return nil, err
	}
	codec, err := chunk.NewCodec()
	if err != nil {
		return nil, err
	}
	cs := &chunkStudy{params: ps, codec: codec, mu: make([]sync.Mutex, len(ps)), seen: make([]map[chunk.ID]struct{}, len(ps)),
		unique: make([]atomic.Int64, len(ps)), stored: make([]atomic.Int64, len(ps))}
	for i := range cs.seen {
		cs.seen[i] = map[chunk.ID]struct{}{}
	}
	return cs, nil
}

// addNight records one night: logical is the bytes of all that night's
// snapshots, files the paths of the files that are new or changed since
// the night before (the others' chunks are already counted).
func (cs *chunkStudy) addNight(ctx context.Context, logical int64, files []string) error {
	cs.logical += logical
	workers := runtime.GOMAXPROCS(0)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan string)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sp []*chunk.Splitter
			for _, p := range cs.params {
				s, err := chunk.NewSplitter(bytes.NewReader(nil), p)
				if err != nil {
					panic(err) // validated in studyParams
				}
				sp = append(sp, s)
			}
			var zbuf []byte
			for path := range next {
				if err := cs.file(path, sp, &zbuf); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		next <- f
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func (cs *chunkStudy) file(path string, sp []*chunk.Splitter, zbuf *[]byte) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i, s := range sp {
		s.Reset(bytes.NewReader(data))
		for {
			c, err := s.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			id := chunk.Sum(c)
			cs.mu[i].Lock()
			_, dup := cs.seen[i][id]
			if !dup {
				cs.seen[i][id] = struct{}{}
			}
			cs.mu[i].Unlock()
			if dup {
				continue
			}
			var out []byte
			out, _ = cs.codec.Compress((*zbuf)[:0], c)
			*zbuf = out
			cs.unique[i].Add(int64(len(c)))
			cs.stored[i].Add(int64(len(out)))
		}
	}
	return nil
}

// rows returns the study's results; perBlob is the index cost per blob.
func (cs *chunkStudy) rows(perBlob float64) []ChunkRow {
	var out []ChunkRow
	for i, p := range cs.params {
		n := int64(len(cs.seen[i]))
		out = append(out, ChunkRow{AverageKiB: 1 << p.AverageBits >> 10, Params: p, Logical: cs.logical,
			Unique: cs.unique[i].Load(), Stored: cs.stored[i].Load(), Chunks: n, IndexBytes: int64(float64(n) * perBlob)})
	}
	return out
}

func (cs *chunkStudy) close() { cs.codec.Close() }
