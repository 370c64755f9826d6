package chunk

import (
	"fmt"
	"sync"

	"github.com/restic/chunker"
)

// MaxChunkSize is the largest chunk any valid [Params] can produce. Decoders
// may rely on it to bound memory; [Codec.Decompress] refuses larger chunks.
const MaxChunkSize = 8 << 20

const (
	minMinSize     = 512
	minAverageBits = 9
	maxAverageBits = 24
	polDegree      = 53
)

// Params are the content-defined chunking parameters. All clients that should
// deduplicate against each other must use identical Params; a store records
// the Params it was created with and never changes them.
type Params struct {
	// Polynomial is an irreducible polynomial of degree 53 over GF(2) for
	// the Rabin fingerprint, in the bit representation of
	// github.com/restic/chunker.
	Polynomial uint64 `json:"polynomial"`
	// MinSize is the smallest chunk; only the last chunk of a stream may be
	// shorter.
	MinSize uint32 `json:"min_size"`
	// AverageBits sets the boundary probability: a cut happens where the low
	// AverageBits bits of the fingerprint are zero, so about one in
	// 1<<AverageBits positions past MinSize is a boundary.
	AverageBits uint32 `json:"average_bits"`
	// MaxSize is the largest chunk; a cut is forced at this length.
	MaxSize uint32 `json:"max_size"`
}

// defaultPolynomial is the polynomial of DefaultParams, known irreducible.
const defaultPolynomial = 0x3DA3358B4DC173

// DefaultParams returns the parameters for new stores: a fixed polynomial,
// MinSize 16 KiB, an average of 64 KiB past MinSize and MaxSize 512 KiB. See
// the package documentation for the reasoning.
func DefaultParams() Params {
	return Params{
		Polynomial:  defaultPolynomial,
		MinSize:     16 << 10,
		AverageBits: 16,
		MaxSize:     512 << 10,
	}
}

// Validate checks that p can be used for chunking: the polynomial must be
// irreducible with degree 53, AverageBits must be in [9, 24], and
// 512 <= MinSize < 1<<AverageBits < MaxSize <= MaxChunkSize.
func (p Params) Validate() error {
	if p.AverageBits < minAverageBits || p.AverageBits > maxAverageBits {
		return fmt.Errorf("chunk: invalid params: average_bits %d not in [%d, %d]", p.AverageBits, minAverageBits, maxAverageBits)
	}
	avg := uint64(1) << p.AverageBits
	if p.MinSize < minMinSize {
		return fmt.Errorf("chunk: invalid params: min_size %d below %d", p.MinSize, minMinSize)
	}
	if uint64(p.MinSize) >= avg {
		return fmt.Errorf("chunk: invalid params: min_size %d not below average size %d (1<<%d)", p.MinSize, avg, p.AverageBits)
	}
	if uint64(p.MaxSize) <= avg {
		return fmt.Errorf("chunk: invalid params: max_size %d not above average size %d (1<<%d)", p.MaxSize, avg, p.AverageBits)
	}
	if p.MaxSize > MaxChunkSize {
		return fmt.Errorf("chunk: invalid params: max_size %d above limit %d", p.MaxSize, MaxChunkSize)
	}
	return checkPolynomial(p.Polynomial)
}

// irreducible remembers polynomials already proven irreducible: the test
// takes most of a millisecond and Validate runs for every Split. The set is
// bounded; real deployments use one or two polynomials.
var irreducible struct {
	sync.Mutex
	known map[uint64]struct{}
}

const maxKnownPolynomials = 64

func checkPolynomial(v uint64) error {
	pol := chunker.Pol(v)
	if d := pol.Deg(); d != polDegree {
		return fmt.Errorf("chunk: invalid params: polynomial %#x has degree %d, want %d", v, d, polDegree)
	}
	if v == defaultPolynomial {
		return nil // irreducible (TestDefaultPolynomialIsIrreducible): every run of a laptop checks it
	}
	irreducible.Lock()
	_, ok := irreducible.known[v]
	irreducible.Unlock()
	if ok {
		return nil
	}
	if !pol.Irreducible() {
		return fmt.Errorf("chunk: invalid params: polynomial %#x is not irreducible", v)
	}
	irreducible.Lock()
	if irreducible.known == nil {
		irreducible.known = make(map[uint64]struct{})
	}
	if len(irreducible.known) < maxKnownPolynomials {
		irreducible.known[v] = struct{}{}
	}
	irreducible.Unlock()
	return nil
}
