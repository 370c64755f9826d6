package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// testKey returns a deterministic key for seed.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// makeBlob returns the stored form of raw, as pkg/chunk makes it.
func makeBlob(t testing.TB, c *chunk.Codec, typ blob.Type, raw []byte) blob.Blob {
	t.Helper()
	data, compressed := c.Compress(nil, raw)
	return blob.Blob{Ref: blob.Ref{Type: typ, ID: chunk.Sum(raw)}, Data: data, Compressed: compressed, RawLen: len(raw)}
}

// testBlobs returns compressed and uncompressed chunks and a tree.
func testBlobs(t testing.TB, seed uint64) []blob.Blob {
	t.Helper()
	c, err := chunk.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := []byte(strings.Repeat(fmt.Sprintf("the quick brown fox %d jumps over the lazy dog\n", seed), 800))
	blobs := []blob.Blob{
		makeBlob(t, c, blob.Chunk, text),
		makeBlob(t, c, blob.Chunk, random(20000)),
		makeBlob(t, c, blob.Chunk, nil),
		makeBlob(t, c, blob.Tree, []byte("XST1 pretend tree "+strings.Repeat("x", 300))),
		makeBlob(t, c, blob.Chunk, random(3000)),
		makeBlob(t, c, blob.Chunk, append(text[:5000:5000], random(100)...)),
	}
	if !blobs[0].Compressed || blobs[1].Compressed {
		t.Fatalf("test blobs: want the first compressed and the second not")
	}
	return blobs
}

type testMeta struct {
	name string
	data []byte
}

var testMetas = []testMeta{
	{"registry.json", []byte(`{"users":["ana","ben"]}`)},
	{"key.sealed", bytes.Repeat([]byte{7}, 100)},
	{"empty", nil},
}

var testCreated = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// writeBundle writes blobs and metas (interleaved) and returns the stream
// and the offset where each record (and finally the trailer) starts.
func writeBundle(t testing.TB, key ed25519.PrivateKey, blobs []blob.Blob, metas []testMeta) ([]byte, []int64) {
	t.Helper()
	var buf bytes.Buffer
	// A fixed ID keeps the stream the same in every process (the fuzz
	// workers rebuild the seeds).
	id := [16]byte{0: 0xb1, 15: byte(len(blobs))}
	w, err := NewWriter(&buf, Header{Kind: KindSchool, For: "Escuela 12", Base: "r-41", Created: testCreated, ID: id}, key)
	if err != nil {
		t.Fatal(err)
	}
	offs := []int64{w.Written()}
	for i := 0; i < max(len(blobs), len(metas)); i++ {
		if i < len(blobs) {
			if err := w.Blob(blobs[i]); err != nil {
				t.Fatal(err)
			}
			offs = append(offs, w.Written())
		}
		if i < len(metas) {
			if err := w.Meta(metas[i].name, metas[i].data); err != nil {
				t.Fatal(err)
			}
			offs = append(offs, w.Written())
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != w.Written() {
		t.Fatalf("Written = %d, wrote %d", w.Written(), buf.Len())
	}
	return buf.Bytes(), offs
}

func trustAll(*Header) error { return nil }

func TestRoundTrip(t *testing.T) {
	key := testKey(1)
	blobs := testBlobs(t, 1)
	data, _ := writeBundle(t, key, blobs, testMetas)

	h, sum, err := Verify(bytes.NewReader(data), Trust(KindSchool, key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != KindSchool || h.For != "Escuela 12" || h.Base != "r-41" || !h.Created.Equal(testCreated) || !h.Signer.Equal(key.Public()) || h.ID == [16]byte{} {
		t.Errorf("header = %+v", h)
	}
	if sum.Blobs != len(blobs) || sum.Meta != len(testMetas) || sum.Size != int64(len(data)) {
		t.Errorf("summary = %+v", sum)
	}

	var gotBlobs []blob.Blob
	var gotMetas []testMeta
	h2, err := Read(bytes.NewReader(data), trustAll,
		func(b blob.Blob) error { gotBlobs = append(gotBlobs, b); return nil },
		func(name string, data []byte) error { gotMetas = append(gotMetas, testMeta{name, data}); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if h2.ID != h.ID {
		t.Errorf("Read header ID %x, Verify %x", h2.ID, h.ID)
	}
	if len(gotBlobs) != len(blobs) {
		t.Fatalf("read %d blobs, want %d", len(gotBlobs), len(blobs))
	}
	for i, b := range blobs {
		g := gotBlobs[i]
		if g.Ref != b.Ref || g.Compressed != b.Compressed || g.RawLen != b.RawLen || !bytes.Equal(g.Data, b.Data) {
			t.Errorf("blob %d: got %v compressed=%v raw=%d, want %v compressed=%v raw=%d", i, g.Ref, g.Compressed, g.RawLen, b.Ref, b.Compressed, b.RawLen)
		}
	}
	// Blobs handed to onBlob are kept: none may share memory with a later one.
	if &gotBlobs[0].Data[0] == &gotBlobs[1].Data[0] {
		t.Error("blob data reused between records")
	}
	if len(gotMetas) != len(testMetas) {
		t.Fatalf("read %d metas, want %d", len(gotMetas), len(testMetas))
	}
	for i, m := range testMetas {
		if gotMetas[i].name != m.name || !bytes.Equal(gotMetas[i].data, m.data) {
			t.Errorf("meta %d: got %q %q", i, gotMetas[i].name, gotMetas[i].data)
		}
	}
}

func TestEmptyBundle(t *testing.T) {
	data, _ := writeBundle(t, testKey(1), nil, nil)
	_, sum, err := Verify(bytes.NewReader(data), trustAll)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Blobs != 0 || sum.Meta != 0 {
		t.Errorf("summary = %+v", sum)
	}
}

// TestFlipRefused flips one bit at a time at seeded positions (all of the
// header and trailer, every record's first bytes, random data bytes) and
// expects Verify to refuse each.
func TestFlipRefused(t *testing.T) {
	key := testKey(1)
	data, offs := writeBundle(t, key, testBlobs(t, 2), testMetas)
	trust := Trust(KindSchool, key.Public().(ed25519.PublicKey))
	positions := map[int]bool{}
	for i := int64(0); i < offs[0]; i++ {
		positions[int(i)] = true
	}
	for _, o := range offs {
		for i := o; i < o+50 && i < int64(len(data)); i++ {
			positions[int(i)] = true
		}
	}
	for i := offs[len(offs)-1]; i < int64(len(data)); i++ {
		positions[int(i)] = true
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		positions[rng.IntN(len(data))] = true
	}
	bad := make([]byte, len(data))
	for pos := range positions {
		for _, bit := range []byte{0x01, 0x80} {
			copy(bad, data)
			bad[pos] ^= bit
			_, _, err := Verify(bytes.NewReader(bad), trust)
			if err == nil {
				t.Fatalf("flip of bit %#x at byte %d of %d accepted", bit, pos, len(data))
			}
			k := errkind.Of(err)
			if k != errkind.Damaged && k != errkind.BadRequest && k != errkind.Permission {
				t.Fatalf("flip at %d: error of kind %v: %v", pos, k, err)
			}
		}
	}
	t.Logf("%d positions flipped", len(positions))
}

func TestTruncationRefused(t *testing.T) {
	data, offs := writeBundle(t, testKey(1), testBlobs(t, 3), testMetas)
	cuts := []int64{0, 1, 7, 8, 13, 14}
	for _, o := range offs {
		cuts = append(cuts, o, o+1, o-1)
	}
	cuts = append(cuts, int64(len(data)-1))
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		cuts = append(cuts, rng.Int64N(int64(len(data))))
	}
	for _, c := range cuts {
		_, _, err := Verify(bytes.NewReader(data[:c]), trustAll)
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, errkind.ErrDamaged) {
			t.Fatalf("cut at %d of %d: got %v, want a truncation error", c, len(data), err)
		}
	}
	_, _, err := Verify(bytes.NewReader(data[:offs[3]]), trustAll)
	t.Logf("example: %v", err)
	if !strings.Contains(err.Error(), "or its end marker should start") {
		t.Errorf("cut at a record boundary: %v", err)
	}
}

func TestReorderedRefused(t *testing.T) {
	data, offs := writeBundle(t, testKey(1), testBlobs(t, 4), testMetas)
	rec := func(i int) []byte { return data[offs[i]:offs[i+1]] }
	last := len(offs) - 1
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := map[string][]byte{
		"swapped":    join(data[:offs[0]], rec(1), rec(0), data[offs[2]:]),
		"dropped":    join(data[:offs[1]], data[offs[2]:]),
		"duplicated": join(data[:offs[2]], rec(1), data[offs[2]:]),
		"last moved": join(data[:offs[0]], rec(last-1), data[offs[0]:offs[last-1]], data[offs[last]:]),
		"appended":   join(data, rec(0)),
	}
	for name, bad := range cases {
		_, _, err := Verify(bytes.NewReader(bad), trustAll)
		if !errors.Is(err, errkind.ErrDamaged) {
			t.Errorf("%s: got %v, want damage", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestForeignSignerRefused(t *testing.T) {
	ours, theirs := testKey(1), testKey(2)
	data, _ := writeBundle(t, theirs, testBlobs(t, 5), nil)
	trust := Trust(KindSchool, ours.Public().(ed25519.PublicKey))
	_, _, err := Verify(bytes.NewReader(data), trust)
	if !errors.Is(err, errkind.ErrPermission) || !strings.Contains(err.Error(), Fingerprint(theirs.Public().(ed25519.PublicKey))) {
		t.Fatalf("got %v, want a permission error naming the fingerprint", err)
	}
	t.Logf("foreign: %v", err)
	called := false
	_, err = Read(bytes.NewReader(data), trust, func(blob.Blob) error { called = true; return nil }, nil)
	if !errors.Is(err, errkind.ErrPermission) || called {
		t.Fatalf("Read: %v, callback called: %v", err, called)
	}

	// The wrong kind.
	_, _, err = Verify(bytes.NewReader(data), Trust(KindRecovery, theirs.Public().(ed25519.PublicKey)))
	if !errors.Is(err, errkind.ErrBadRequest) {
		t.Fatalf("wrong kind: %v", err)
	}

	// A forgery: the header names our key, the content is re-hashed, but the
	// signature is theirs.
	forged := bytes.Clone(data)
	i := bytes.Index(forged, theirs.Public().(ed25519.PublicKey))
	copy(forged[i:], ours.Public().(ed25519.PublicKey))
	tr := len(forged) - trailerLen
	copy(forged[tr+16:tr+48], blake3Sum(forged[:tr-1]))
	_, _, err = Verify(bytes.NewReader(forged), trust)
	if !errors.Is(err, errkind.ErrDamaged) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged: %v", err)
	}
	t.Logf("forged: %v", err)
}

func TestBlobHashMismatchRefused(t *testing.T) {
	blobs := testBlobs(t, 6)
	blobs[2].ID[0] ^= 1 // the writer does not hash: the reader must
	data, _ := writeBundle(t, testKey(1), blobs, nil)
	_, _, err := Verify(bytes.NewReader(data), trustAll)
	if !errors.Is(err, errkind.ErrDamaged) || !strings.Contains(err.Error(), "record 3") || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func TestNotABundle(t *testing.T) {
	for _, in := range []string{"hello world, this is not it", "XSBUNDLE\x02\x00\x00\x00\x00\x00"} {
		_, _, err := Verify(strings.NewReader(in), trustAll)
		if !errors.Is(err, errkind.ErrBadRequest) {
			t.Errorf("%q: %v", in, err)
		}
	}
	_, _, err := Verify(strings.NewReader(""), trustAll)
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("empty: %v", err)
	}
}

func TestCallbackErrorStops(t *testing.T) {
	data, _ := writeBundle(t, testKey(1), testBlobs(t, 7), testMetas)
	stop := errors.New("stop")
	n := 0
	_, err := Read(bytes.NewReader(data), trustAll, func(blob.Blob) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	}, nil)
	if err != stop || n != 2 {
		t.Fatalf("got %v after %d blobs", err, n)
	}
}

func TestWriterRefusesInvalid(t *testing.T) {
	key := testKey(1)
	if _, err := NewWriter(io.Discard, Header{Kind: ""}, key); !errors.Is(err, errkind.ErrBadRequest) {
		t.Errorf("empty kind: %v", err)
	}
	if _, err := NewWriter(io.Discard, Header{Kind: KindSchool, For: strings.Repeat("x", MaxFor+1)}, key); err == nil {
		t.Error("long label accepted")
	}
	if _, err := NewWriter(io.Discard, Header{Kind: KindSchool}, key[:10]); err == nil {
		t.Error("short key accepted")
	}
	w, err := NewWriter(io.Discard, Header{Kind: KindSchool}, key)
	if err != nil {
		t.Fatal(err)
	}
	bad := []blob.Blob{
		{Ref: blob.Ref{Type: 9}},
		{Ref: blob.Ref{Type: blob.Chunk}, Data: make([]byte, 10), RawLen: 11},
		{Ref: blob.Ref{Type: blob.Chunk}, Data: make([]byte, MaxStored+1), RawLen: MaxStored + 1, Compressed: true},
		{Ref: blob.Ref{Type: blob.Chunk}, Data: make([]byte, 10), RawLen: chunk.MaxChunkSize + 1, Compressed: true},
	}
	for i, b := range bad {
		if err := w.Blob(b); !errors.Is(err, errkind.ErrBadRequest) {
			t.Errorf("bad blob %d: %v", i, err)
		}
	}
	if err := w.Meta("", nil); err == nil {
		t.Error("empty name accepted")
	}
	if err := w.Meta(strings.Repeat("n", MaxMetaName+1), nil); err == nil {
		t.Error("long name accepted")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Meta("late", nil); !errors.Is(err, errkind.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestHostileLengths(t *testing.T) {
	data, offs := writeBundle(t, testKey(1), testBlobs(t, 8), testMetas)
	// Claim a meta of MaxMetaData+1 bytes, then a huge stored size.
	bad := bytes.Clone(data)
	o := offs[1] // record 2 is a meta
	if bad[o] != tagMeta {
		t.Fatalf("record 2 is %q", bad[o])
	}
	bad[o+3], bad[o+4], bad[o+5], bad[o+6] = 0xff, 0xff, 0xff, 0x7f
	if _, _, err := Verify(bytes.NewReader(bad), trustAll); !errors.Is(err, errkind.ErrDamaged) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("huge meta: %v", err)
	}
	// A stored size just under the cap but a short stream: truncated, and
	// not allocated in full.
	bad = bytes.Clone(data[:offs[0]+40])
	bad[offs[0]+2] = 0 // uncompressed
	for i := range 4 {
		bad[offs[0]+3+int64(i)] = byte(uint32(chunk.MaxChunkSize) >> (8 * i))
		bad[offs[0]+7+int64(i)] = byte(uint32(chunk.MaxChunkSize) >> (8 * i))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, _, err := Verify(bytes.NewReader(bad), trustAll); !errors.Is(err, ErrTruncated) {
		t.Errorf("short claim: %v", err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 3<<20 {
		t.Errorf("a 40-byte record claiming %d bytes cost %d bytes of allocation", chunk.MaxChunkSize, n)
	}
}

func ExampleNewWriter() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // the school server's key
	codec, err := chunk.NewCodec()
	if err != nil {
		panic(err)
	}
	defer codec.Close()
	raw := []byte("a chunk of a child's story")
	stored, compressed := codec.Compress(nil, raw)
	b := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(raw)}, Data: stored, Compressed: compressed, RawLen: len(raw)}

	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Kind: KindSchool, For: "Escuela 12", Created: time.Now()}, key)
	if err != nil {
		panic(err)
	}
	if err := w.Blob(b); err != nil {
		panic(err)
	}
	if err := w.Meta("registry.json", []byte(`{}`)); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}

	// On the mothership: verify, then read.
	trust := Trust(KindSchool, key.Public().(ed25519.PublicKey))
	h, sum, err := Verify(bytes.NewReader(buf.Bytes()), trust)
	if err != nil {
		panic(err)
	}
	fmt.Println(h.Kind, h.For, sum.Blobs, sum.Meta)
	_, err = Read(bytes.NewReader(buf.Bytes()), trust,
		func(b blob.Blob) error { fmt.Println("blob", b.Type, b.RawLen); return nil },
		func(name string, data []byte) error { fmt.Println("meta", name, string(data)); return nil })
	fmt.Println(err)
	// Output:
	// school Escuela 12 1 1
	// blob chunk 26
	// meta registry.json {}
	// <nil>
}
