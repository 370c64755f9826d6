package chunk

import (
	"encoding/json"
	"testing"

	"github.com/restic/chunker"
)

// reducible53 is a reducible polynomial of degree 53 with constant term 1:
// a degree-51 polynomial times x^2+x+1.
var reducible53 = uint64(chunker.Pol(0x3DA3358B4DC173>>2 | 1).Mul(0x7))

func TestParamsValidate(t *testing.T) {
	d := DefaultParams()
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultParams: %v", err)
	}
	small := Params{Polynomial: d.Polynomial, MinSize: 512, AverageBits: 10, MaxSize: 4096}
	if err := small.Validate(); err != nil {
		t.Fatalf("small params: %v", err)
	}
	limit := Params{Polynomial: d.Polynomial, MinSize: 1 << 20, AverageBits: 22, MaxSize: MaxChunkSize}
	if err := limit.Validate(); err != nil {
		t.Fatalf("largest params: %v", err)
	}
	// A random polynomial from the chunker package is valid.
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		t.Fatal(err)
	}
	rnd := d
	rnd.Polynomial = uint64(pol)
	if err := rnd.Validate(); err != nil {
		t.Fatalf("random polynomial %v: %v", pol, err)
	}

	with := func(f func(*Params)) Params {
		p := d
		f(&p)
		return p
	}
	for name, p := range map[string]Params{
		"zero":                  {},
		"poly zero":             with(func(p *Params) { p.Polynomial = 0 }),
		"poly reducible":        with(func(p *Params) { p.Polynomial = 0x3DA3358B4DC173 ^ 1 }), // divisible by x
		"poly reducible odd":    with(func(p *Params) { p.Polynomial = reducible53 }),
		"poly x^53":             with(func(p *Params) { p.Polynomial = 1 << 53 }),
		"poly degree 52":        with(func(p *Params) { p.Polynomial = 0x3DA3358B4DC173 >> 1 }),
		"poly degree 54":        with(func(p *Params) { p.Polynomial = 0x3DA3358B4DC173 << 1 }),
		"poly degree 63":        with(func(p *Params) { p.Polynomial = 1 << 63 }),
		"min below 512":         with(func(p *Params) { p.MinSize = 511 }),
		"min zero":              with(func(p *Params) { p.MinSize = 0 }),
		"min equals average":    with(func(p *Params) { p.MinSize = 1 << 16 }),
		"max equals average":    with(func(p *Params) { p.MaxSize = 1 << 16 }),
		"max below min":         with(func(p *Params) { p.MaxSize = 1000 }),
		"max above limit":       with(func(p *Params) { p.MaxSize = MaxChunkSize + 1 }),
		"average bits 8":        {Polynomial: d.Polynomial, MinSize: 100, AverageBits: 8, MaxSize: 4096},
		"average bits 25":       with(func(p *Params) { p.AverageBits = 25; p.MaxSize = MaxChunkSize }),
		"average bits 24 limit": with(func(p *Params) { p.AverageBits = 24; p.MaxSize = MaxChunkSize }),
		"average bits huge":     with(func(p *Params) { p.AverageBits = 64 }),
	} {
		err := p.Validate()
		if err == nil {
			t.Errorf("%s: Validate(%+v) accepted", name, p)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestIrreducibleCheck makes sure the cache in Validate does not let a
// reducible polynomial through after valid ones were seen.
func TestIrreducibleCheck(t *testing.T) {
	if d := chunker.Pol(reducible53).Deg(); d != 53 {
		t.Fatalf("test polynomial has degree %d", d)
	}
	for range 3 {
		if err := checkPolynomial(0x3DA3358B4DC173); err != nil {
			t.Fatal(err)
		}
		if err := checkPolynomial(reducible53); err == nil {
			t.Fatal("reducible polynomial accepted")
		}
	}
}

func TestParamsJSON(t *testing.T) {
	b, err := json.Marshal(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"polynomial":17349423945073011,"min_size":16384,"average_bits":16,"max_size":524288}`
	if string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	var p Params
	if err := json.Unmarshal(b, &p); err != nil || p != DefaultParams() {
		t.Fatalf("round trip: %+v, %v", p, err)
	}
}

// TestDefaultPolynomialIsIrreducible: Validate takes the default polynomial
// as irreducible without the test (a laptop checks it on every run).
func TestDefaultPolynomialIsIrreducible(t *testing.T) {
	if !chunker.Pol(defaultPolynomial).Irreducible() {
		t.Fatalf("the default polynomial %#x is not irreducible", uint64(defaultPolynomial))
	}
}
