package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/zeebo/blake3"
)

// golden pins the chunking of a data set with DefaultParams. If this test
// fails, chunk boundaries or IDs changed, which would silently break
// deduplication against every existing store. Do not update the values
// unless the change is deliberate and comes with a new store format.
type golden struct {
	count  int
	digest string // BLAKE3 over (uint32 LE length, ID) of every chunk
	first  []goldenChunk
}

type goldenChunk struct {
	off int64
	len int
	id  string
}

var goldenRandom = golden{
	count:  413,
	digest: "69fda9b2b12a8ecaa55e18e64b71143d62157fa651c7547df86604189074252b",
	first: []goldenChunk{
		{0, 63909, "ee8fd21dd828dbba5c8b5fbc62310d2ab51916ce2d3a8a0d77ae55c55c771b95"},
		{63909, 53382, "9e7cf155b4c7a41b8c5e2f3f2c42bd1d57e5b08a508492b598a900bd597fe4ab"},
		{117291, 74376, "facc051f34876931e348c0437b90bd0cdd20bdb209c6221402fb74fb42e7dc2d"},
		{191667, 165882, "08c7f1d33d43aba14878e8ae98beb0d4fff78591af7e4d5b8643947b6f54bee4"},
		{357549, 23622, "a801b5d6ffe59e69963463b6d80c02e8b1c223c6bdd027f522a4799d83a2c03c"},
		{381171, 321529, "cb64e36a88724ad9e3daa47e87cb33718ad8ce86420f9adf405d9ced0da23604"},
		{702700, 56157, "958a6752d6870f69a9f7b4096e2b0fffe544c5b5eddea0761cc546233e3866a0"},
		{758857, 91506, "ad9c613e16adedf7fcef1eab0ac06b07bb76353a4db519131ba969152bdc14ba"},
		{850363, 46280, "03a48bcdad67b28e0b495a5e21bc88873547d8dd90645a9ac5562149b3f5d4e5"},
		{896643, 110923, "aa38c11c2dbc3553489b13ac8ca5b0af6e9278ce362a3c64a5449ec077edc2bf"},
	},
}

var goldenText = golden{
	count:  113,
	digest: "1221f07b7d1ddc4494db3f53ecfd618b83041567529539f231214669554a2c95",
	first: []goldenChunk{
		{0, 416773, "8bbab4e96bc63d887167051f6be5d8ea57fc7b37e94004bb333117eca559bb0d"},
		{416773, 168251, "739a1f6168af6731f5f11519f8bb7519cfc8d4868969f6512d45f01a6dac1785"},
		{585024, 78634, "b5f9902cda31a436571457c1f5cb1654729afb6114d2b283cdd432b0f4d119e5"},
		{663658, 107715, "9c11da26ce6261ec78a2fc8648779f6793fc0bebf8e73c2b8fdd96bb37a8a0ce"},
		{771373, 425308, "7df6287d3775a182c75aaba343d36894dfdfc83ca683f08bcc10f960df542bf1"},
		{1196681, 84180, "9d98d99c395b33112baeb0014efcec532c98cba2c3aed4844b59ab3bebbae064"},
		{1280861, 60351, "a372be8a519c60d6729cbcc124308753af48818f39ec334d67f030b0732e1ab8"},
		{1341212, 78153, "b291d9aea80efd8aceda3d3cd4508fd95516a2203da705e6aa082215044da46d"},
		{1419365, 40116, "d789fc3a742a0ea13ccb06722f4a5726037c5f48826809a371cdf8aeb2c20703"},
		{1459481, 48574, "d7c24292b3c9bcc6872ff6b0c156bce9562076938cda5566b2c497f73ad4944f"},
	},
}

func digestRecs(recs []chunkRec) string {
	h := blake3.New()
	var b [4]byte
	for _, r := range recs {
		binary.LittleEndian.PutUint32(b[:], uint32(r.Len))
		h.Write(b[:])
		h.Write(r.ID[:])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func formatGolden(recs []chunkRec) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "golden{\n\tcount:  %d,\n\tdigest: %q,\n\tfirst: []goldenChunk{\n", len(recs), digestRecs(recs))
	for _, r := range recs[:min(10, len(recs))] {
		fmt.Fprintf(&sb, "\t\t{%d, %d, %q},\n", r.Off, r.Len, r.ID.String())
	}
	sb.WriteString("\t},\n}")
	return sb.String()
}

func checkGolden(t *testing.T, data []byte, want golden) {
	t.Helper()
	recs, all, err := splitAll(bytes.NewReader(data), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all, data) {
		t.Fatal("chunks do not reassemble to the input")
	}
	ok := len(recs) == want.count && digestRecs(recs) == want.digest && len(want.first) == min(10, len(recs))
	for i := 0; ok && i < len(want.first); i++ {
		g, r := want.first[i], recs[i]
		ok = g.off == r.Off && g.len == r.Len && g.id == r.ID.String()
	}
	if !ok {
		t.Errorf("chunking with DefaultParams changed (boundaries or IDs); this breaks dedup against existing stores.\ngot:\n%s", formatGolden(recs))
	}
}

func TestGoldenRandom(t *testing.T) {
	checkGolden(t, randomData(1, 32<<20), goldenRandom)
}

func TestGoldenText(t *testing.T) {
	checkGolden(t, textData(2, 8<<20), goldenText)
}

func TestDefaultParamsFixed(t *testing.T) {
	want := Params{Polynomial: 0x3DA3358B4DC173, MinSize: 16384, AverageBits: 16, MaxSize: 524288}
	if got := DefaultParams(); got != want {
		t.Fatalf("DefaultParams() = %+v, want %+v", got, want)
	}
	if err := want.Validate(); err != nil {
		t.Fatalf("Validate(DefaultParams()) = %v", err)
	}
}

func sameRecs(t *testing.T, name string, got, want []chunkRec) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d chunks, want %d", name, len(got), len(want))
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: chunk %d = %+v, want %+v", name, i, got[i], want[i])
			return
		}
	}
}

func TestStability(t *testing.T) {
	samples := map[string][]byte{
		"random": randomData(3, 2<<20),
		"text":   textData(4, 2<<20),
	}
	for name, data := range samples {
		t.Run(name, func(t *testing.T) {
			p := DefaultParams()
			want, all, err := splitAll(bytes.NewReader(data), p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(all, data) {
				t.Fatal("chunks do not reassemble")
			}
			if len(want) < 10 {
				t.Fatalf("only %d chunks; sample too small to be meaningful", len(want))
			}
			for i, r := range want {
				if r.Len > int(p.MaxSize) || (i < len(want)-1 && r.Len < int(p.MinSize)) {
					t.Errorf("chunk %d has length %d outside [%d, %d]", i, r.Len, p.MinSize, p.MaxSize)
				}
			}
			readers := map[string]io.Reader{
				"onebyte":    iotest.OneByteReader(bytes.NewReader(data)),
				"half":       iotest.HalfReader(bytes.NewReader(data)),
				"dataerr":    iotest.DataErrReader(bytes.NewReader(data)),
				"rand-small": newRandReader(data, 5, 100),
				"rand-large": newRandReader(data, 6, 200000),
				"multi":      io.MultiReader(bytes.NewReader(data[:12345]), bytes.NewReader(data[12345:1<<20]), bytes.NewReader(data[1<<20:])),
			}
			for rname, r := range readers {
				got, all, err := splitAll(r, p)
				if err != nil {
					t.Fatalf("%s: %v", rname, err)
				}
				if !bytes.Equal(all, data) {
					t.Fatalf("%s: chunks do not reassemble", rname)
				}
				sameRecs(t, rname, got, want)
			}
		})
	}
}

func TestSplitterReset(t *testing.T) {
	p := DefaultParams()
	a, b := randomData(7, 1<<20), textData(8, 1<<20)
	wantA, _, _ := splitAll(bytes.NewReader(a), p)
	wantB, _, _ := splitAll(bytes.NewReader(b), p)

	s, err := NewSplitter(bytes.NewReader(a), p)
	if err != nil {
		t.Fatal(err)
	}
	collect := func() []chunkRec {
		var recs []chunkRec
		var off int64
		for {
			d, err := s.Next()
			if err == io.EOF {
				return recs
			}
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, chunkRec{off, len(d), Sum(d)})
			off += int64(len(d))
		}
	}
	// Stop half way through a, then reuse for b and a again: Reset must
	// restore the average size (the chunker's own Reset does not).
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	s.Reset(bytes.NewReader(b))
	sameRecs(t, "reset b", collect(), wantB)
	s.Reset(bytes.NewReader(a))
	sameRecs(t, "reset a", collect(), wantA)
}

func TestSplitterEdges(t *testing.T) {
	p := DefaultParams()

	s, err := NewSplitter(bytes.NewReader(nil), p)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Next(); err != io.EOF {
		t.Fatalf("empty stream: Next() = %d bytes, %v; want io.EOF", len(d), err)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("empty stream, second Next: %v; want io.EOF", err)
	}

	// Below MinSize: exactly one chunk.
	small := randomData(9, int(p.MinSize)-1)
	recs, _, err := splitAll(bytes.NewReader(small), p)
	if err != nil || len(recs) != 1 || recs[0].Len != len(small) || recs[0].ID != Sum(small) {
		t.Fatalf("small file: %+v, %v; want one chunk of %d bytes", recs, err, len(small))
	}

	// A run of zeros has a zero fingerprint: it is cut at every MinSize, so
	// all its chunks share one ID.
	zeros := make([]byte, 3*int(p.MaxSize)+100)
	recs, _, err = splitAll(bytes.NewReader(zeros), p)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(zeros) / int(p.MinSize); len(recs) != n+1 || recs[0].Len != int(p.MinSize) || recs[n-1].ID != recs[0].ID {
		t.Fatalf("zeros: got %d chunks, want %d of %d bytes", len(recs), n+1, p.MinSize)
	}

	// A constant non-zero byte never matches the boundary mask: the cut is
	// forced at MaxSize.
	ones := bytes.Repeat([]byte{0xAA}, 3*int(p.MaxSize)+100)
	recs, _, err = splitAll(bytes.NewReader(ones), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[0].Len != int(p.MaxSize) || recs[2].Len != int(p.MaxSize) || recs[3].Len != 100 {
		t.Fatalf("0xAA run: got %+v", recs)
	}

	if _, err := NewSplitter(bytes.NewReader(nil), Params{}); err == nil {
		t.Fatal("NewSplitter accepted zero Params")
	}
}

func TestSplitterReadError(t *testing.T) {
	boom := errors.New("boom")
	data := randomData(10, 1<<20)
	r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	_, _, err := splitAll(r, DefaultParams())
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}
