package server_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// paZeros is a zstd frame of n zero bytes written as a stream: its header
// says nothing of the size it holds.
func paZeros(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		w.Write(zero[:k])
		n -= k
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestProtoAttackZstdBomb: a laptop uploads, on sixteen streams at once,
// chunks whose compressed form is a few KB that decompresses to 256 MiB of
// zeros, each claiming to be 64 KiB (or the largest chunk, 8 MiB) of zeros
// under the right ID. Each is refused as a bad request, nothing is stored
// or charged, the server's heap does not follow the bombs, and a chunk
// whose few hundred compressed bytes really are 8 MiB of zeros is taken.
func TestProtoAttackZstdBomb(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTZ", 91)
	evil := newLaptop(t, d, "PAEVILZ", 92)
	c := dialLaptop(t, d, evil)
	bomb := paZeros(t, 256<<20)
	t.Logf("bomb: %d bytes that decompress to 256 MiB", len(bomb))
	before := paHeap()
	var wg sync.WaitGroup
	replies := make([]paReply, 16)
	for i := range replies {
		raw := 64 << 10
		if i%2 == 1 {
			raw = chunk.MaxChunkSize
		}
		id := chunk.Sum(make([]byte, raw))
		req := append(frame(paPut, nil), append(paBlobFrame(blob.Chunk, true, uint32(raw), id, bomb), frame(paEnd, nil)...)...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = paRaw(t, c, req)
		}()
	}
	wg.Wait()
	grew := int64(paHeap()) - int64(before)
	for i, r := range replies {
		if r.typ != paError || r.kind != proto.KindBadRequest {
			t.Errorf("bomb %d answered frame %d %v %q, want a bad request", i, r.typ, r.kind, r.msg)
		}
	}
	if u := paUsage(t, d, "PAEVILZ"); u.Bytes != 0 || u.Blobs != 0 {
		t.Errorf("refused bombs charged %+v", u)
	}
	t.Logf("heap after 16 bombs: %+d MiB", grew>>20)
	if grew > 64<<20 {
		t.Errorf("16 zstd bombs left the server's heap %d MiB bigger", grew>>20)
	}
	// The honest counterpart: 8 MiB of zeros, compressed, is a chunk.
	real := paZeros(t, chunk.MaxChunkSize)
	zc := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(make([]byte, chunk.MaxChunkSize))}, Data: real, Compressed: true, RawLen: chunk.MaxChunkSize}
	if err := c.Put(context.Background(), []blob.Blob{zc}); err != nil {
		t.Errorf("8 MiB of zeros in %d compressed bytes: %v", len(real), err)
	}
	paHonest(t, honest, 30*time.Second)
	paCheckClean(t, d)
}

// TestProtoAttackChunkAtSizeCap: a chunk of exactly the largest size a
// chunk may have (8 MiB) is stored, committed and comes back byte for
// byte; one byte more is refused as too large from the blob's header,
// whether it claims to be compressed or not.
func TestProtoAttackChunkAtSizeCap(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "PACAPC", 93)
	ctx := context.Background()
	c := dialLaptop(t, d, l)
	big := journalgen.Random(randFor(94), chunk.MaxChunkSize)
	tree := paFileTree(t, "film.ogv", big)
	if err := c.Put(ctx, []blob.Blob{rawChunk(big), tree}); err != nil {
		t.Fatalf("a chunk of exactly %d bytes: %v", len(big), err)
	}
	if _, err := c.Commit(ctx, tree.ID); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := c.Fetch(ctx, []blob.Ref{rawChunk(big).Ref}, func(b blob.Blob) error { got = append([]byte(nil), b.Data...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("the 8 MiB chunk came back as %d other bytes", len(got))
	}
	over := append(big, 0)
	for _, compressed := range []bool{false, true} {
		data := over
		if compressed {
			data = paZeros(t, len(over))
		}
		r := paRaw(t, c, append(frame(paPut, nil), append(paBlobFrame(blob.Chunk, compressed, uint32(len(over)), chunk.Sum(over), data), frame(paEnd, nil)...)...))
		if r.typ != paError || r.kind != proto.KindTooLarge {
			t.Errorf("a chunk one byte over the cap (compressed %v) answered frame %d %v %q, want too large", compressed, r.typ, r.kind, r.msg)
		}
	}
	paCheckClean(t, d)
}

// TestProtoAttackCompressedTreeOverChunkCap: trees may be up to
// manifest.MaxTreeSize (16 MiB), and the laptop's backup compresses every
// tree that shrinks. A directory whose tree is 10 MiB (50 000 documents
// with long names), uploaded compressed as the client sends it, must be
// stored, committed and fetched back. (Decompression reads at most the
// 8 MiB of a chunk, so the codec leaves a larger tree as it is: the
// laptop sends it uncompressed.)
func TestProtoAttackCompressedTreeOverChunkCap(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "PACAPT", 95)
	ctx := context.Background()
	c := dialLaptop(t, d, l)
	tr := &manifest.Tree{}
	pad := strings.Repeat("a", 190)
	for i := 0; i < 50000; i++ {
		tr.Entries = append(tr.Entries, manifest.Entry{Name: fmt.Sprintf("%06d-%s", i, pad), Type: manifest.File, Mode: 0o644, MTime: int64(i) * 1e9})
	}
	enc, err := manifest.Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) <= chunk.MaxChunkSize || len(enc) > manifest.MaxTreeSize {
		t.Fatalf("tree of %d bytes is not between the chunk cap and the tree cap", len(enc))
	}
	codec, err := chunk.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	z, ok := codec.Compress(nil, enc)
	id := chunk.Sum(enc)
	t.Logf("tree of %d bytes, %d stored (compressed: %v)", len(enc), len(z), ok)
	if err := c.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: id}, Data: z, Compressed: ok, RawLen: len(enc)}}); err != nil {
		t.Fatalf("a valid %d MiB tree, compressed as the laptop sends it: %v", len(enc)>>20, err)
	}
	if _, err := c.Commit(ctx, id); err != nil {
		t.Fatal(err)
	}
	err = c.Fetch(ctx, []blob.Ref{{Type: blob.Tree, ID: id}}, func(b blob.Blob) error {
		raw := b.Data
		if b.Compressed {
			var err error
			if raw, err = codec.Decompress(nil, b.Data, b.RawLen); err != nil {
				return err
			}
		}
		if !bytes.Equal(raw, enc) {
			return fmt.Errorf("the tree came back as %d other bytes", len(raw))
		}
		return nil
	})
	if err != nil {
		t.Errorf("fetch of the tree: %v", err)
	}
	paCheckClean(t, d)
}

// TestProtoAttackPutLengthLies: uploads whose lengths lie (a blob's
// declared length above or below its bytes, a "compressed" blob that is
// not zstd or holds another length, a blob header cut short, a frame that
// ends before its declared length, 1025 blobs in one upload) are each
// refused, nothing is stored or charged, and the store checks clean.
func TestProtoAttackPutLengthLies(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTL", 96)
	evil := newLaptop(t, d, "PAEVILL", 97)
	c := dialLaptop(t, d, evil)
	data := []byte("twenty-seven honest bytes..")
	id := chunk.Sum(data)
	put := func(frames ...[]byte) []byte {
		b := frame(paPut, nil)
		for _, f := range frames {
			b = append(b, f...)
		}
		return b
	}
	z := paZeros(t, 4096)
	cut := paBlobFrame(blob.Chunk, false, uint32(len(data)), id, data)
	cut[3] += 100 // the frame says 100 bytes more than come
	var many [][]byte
	for i := 0; i <= proto.MaxPutBlobs; i++ {
		b := fmt.Appendf(nil, "blob %d", i)
		many = append(many, paBlobFrame(blob.Chunk, false, uint32(len(b)), chunk.Sum(b), b))
	}
	many = append(many, frame(paEnd, nil))
	packs := paPacks(d)
	for _, tc := range []struct {
		name  string
		req   []byte
		kinds []proto.Kind
	}{
		{"declared length one more", put(paBlobFrame(blob.Chunk, false, uint32(len(data)+1), id, data), frame(paEnd, nil)), []proto.Kind{proto.KindBadRequest}},
		{"declared length one less", put(paBlobFrame(blob.Chunk, false, uint32(len(data)-1), id, data), frame(paEnd, nil)), []proto.Kind{proto.KindBadRequest}},
		{"compressed but not zstd", put(paBlobFrame(blob.Chunk, true, uint32(len(data)), id, data), frame(paEnd, nil)), []proto.Kind{proto.KindBadRequest}},
		{"zstd of another length", put(paBlobFrame(blob.Chunk, true, 4095, chunk.Sum(make([]byte, 4095)), z), frame(paEnd, nil)), []proto.Kind{proto.KindBadRequest}},
		{"blob header cut short", put(frame(paBlob, []byte{1, 0, 0, 0}), frame(paEnd, nil)), []proto.Kind{proto.KindBadRequest}},
		{"unknown blob type", put(paBlobFrame(blob.Type(3), false, uint32(len(data)), id, data), frame(paEnd, nil)), []proto.Kind{proto.KindBadRequest}},
		{"frame shorter than it says", put(cut), []proto.Kind{proto.KindBadRequest, proto.KindTimeout}},
		{"1025 blobs in one upload", put(many...), []proto.Kind{proto.KindTooLarge}},
	} {
		r := paRaw(t, c, tc.req)
		ok := r.typ == paError
		if ok {
			ok = false
			for _, k := range tc.kinds {
				ok = ok || r.kind == k
			}
		}
		if !ok {
			t.Errorf("%s: answered frame %d %v %q, want %v", tc.name, r.typ, r.kind, r.msg, tc.kinds)
		}
	}
	if u := paUsage(t, d, "PAEVILL"); u.Bytes != 0 || u.Blobs != 0 {
		t.Errorf("refused uploads charged %+v", u)
	}
	if grown := paPacks(d) - packs; grown > 0 {
		t.Errorf("refused uploads grew the packs by %d bytes", grown)
	}
	if v := d.Metrics.Values(); v.Errors[proto.KindInternal.String()] > 0 {
		t.Errorf("a laptop's malformed uploads were counted as %d internal errors of the server", v.Errors[proto.KindInternal.String()])
	}
	paHonest(t, honest, 30*time.Second)
	paCheckClean(t, d)
}
