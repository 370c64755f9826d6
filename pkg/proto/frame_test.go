package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	refs := []blob.Ref{{Type: blob.Chunk, ID: chunk.Sum([]byte("a"))}, {Type: blob.Tree, ID: chunk.Sum([]byte("b"))}}
	writeFrame(&buf, tNeed, encodeRefs(refs))
	b := blob.Blob{Ref: refs[0], Data: []byte("a"), RawLen: 1}
	writeFrame(&buf, tBlob, encodeBlob(&b))
	writeError(&buf, Errorf(KindOverQuota, "too much"))
	typ, p, _, err := readFrame(&buf, nil)
	if err != nil || typ != tNeed {
		t.Fatal(typ, err)
	}
	got, err := decodeRefs(p)
	if err != nil || len(got) != 2 || got[1] != refs[1] {
		t.Fatal(got, err)
	}
	typ, p, _, err = readFrame(&buf, nil)
	if err != nil || typ != tBlob {
		t.Fatal(typ, err)
	}
	gb, err := decodeBlob(p)
	if err != nil || gb.Ref != b.Ref || string(gb.Data) != "a" || gb.RawLen != 1 {
		t.Fatal(gb, err)
	}
	_, _, _, err = readFrame(&buf, nil)
	if !errors.Is(err, ErrOverQuota) || err.(*Error).Msg != "too much" {
		t.Fatalf("error frame: %v", err)
	}
	bits := []bool{true, false, true, true, false, false, false, false, true}
	gbits, err := decodeBits(encodeBits(bits))
	if err != nil || len(gbits) != len(bits) {
		t.Fatal(gbits, err)
	}
	for i := range bits {
		if bits[i] != gbits[i] {
			t.Fatalf("bit %d", i)
		}
	}
}

func TestFrameCapsCheckedBeforeAllocation(t *testing.T) {
	for _, typ := range []byte{tHello, tNeed, tBlob, tEnd, tError} {
		limit, _ := frameCap(typ)
		hdr := make([]byte, 5)
		binary.BigEndian.PutUint32(hdr, uint32(limit)+1)
		hdr[4] = typ
		allocated := false
		_, _, _, err := readFrame(bytes.NewReader(hdr), func(n int) (func(), error) { allocated = true; return func() {}, nil })
		if !errors.Is(err, ErrTooLarge) || allocated {
			t.Fatalf("type %d over its cap: %v (allocated %v)", typ, err, allocated)
		}
	}
	hdr := []byte{0, 0, 0, 1, 200}
	if _, _, _, err := readFrame(bytes.NewReader(hdr), nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("unknown type: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, tNeed, encodeRefs([]blob.Ref{{Type: blob.Chunk}}))
	f.Add(bytes.Clone(buf.Bytes()))
	buf.Reset()
	b := blob.Blob{Ref: blob.Ref{Type: blob.Tree}, Data: []byte("xyz"), RawLen: 3, Compressed: true}
	writeFrame(&buf, tBlob, encodeBlob(&b))
	f.Add(bytes.Clone(buf.Bytes()))
	f.Add([]byte{0, 0, 0, 2, tNeedResp, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, tBlob})
	f.Add([]byte{0, 0, 0, 3, tError, 6, 'h', 'i'})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			typ, p, rel, err := readFrame(r, func(n int) (func(), error) {
				if n > MaxBlobFrame && n > 16<<20 {
					t.Fatalf("allocation of %d bytes, beyond every frame cap", n)
				}
				return func() {}, nil
			})
			if err != nil {
				return
			}
			limit, _ := frameCap(typ)
			if len(p) > limit {
				t.Fatalf("payload %d over cap %d", len(p), limit)
			}
			switch typ {
			case tNeed, tFetch:
				if refs, err := decodeRefs(p); err == nil && !bytes.Equal(encodeRefs(refs), p) {
					t.Fatal("refs do not round-trip")
				}
			case tNeedResp:
				decodeBits(p)
			case tBlob:
				if b, err := decodeBlob(p); err == nil && !bytes.Equal(encodeBlob(&b), p) {
					t.Fatal("blob does not round-trip")
				}
			case tHello:
				var h helloReq
				decodeJSON(p, &h)
			}
			rel()
		}
	})
}

// TestWriteBlobAsEncodeBlob: the copy-free writer puts the same bytes on
// the wire as a frame of encodeBlob, compressed or not, tree or chunk, and
// the reader decodes them back.
func TestWriteBlobAsEncodeBlob(t *testing.T) {
	for i, b := range []blob.Blob{
		{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum([]byte("abc"))}, Data: []byte("abc"), RawLen: 3},
		{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum([]byte("t"))}, Data: bytes.Repeat([]byte{7}, 70000), RawLen: 90000, Compressed: true},
		{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(nil)}, RawLen: 0},
	} {
		var want, got bytes.Buffer
		if err := writeFrame(&want, tBlob, encodeBlob(&b)); err != nil {
			t.Fatal(err)
		}
		if err := writeBlob(&got, &b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("blob %d: writeBlob wrote %d bytes unlike encodeBlob's frame of %d", i, got.Len(), want.Len())
		}
		typ, p, _, err := readFrame(&got, nil)
		if err != nil || typ != tBlob {
			t.Fatal(typ, err)
		}
		back, err := decodeBlob(p)
		if err != nil || back.Ref != b.Ref || back.Compressed != b.Compressed || back.RawLen != b.RawLen || !bytes.Equal(back.Data, b.Data) {
			t.Fatalf("blob %d decoded as %+v (%v)", i, back.Ref, err)
		}
	}
}

// encodeBlob is a blob frame's payload built by hand: the reference that
// writeBlob's bytes are checked against.
func encodeBlob(b *blob.Blob) []byte {
	p := []byte{byte(b.Type), 0, 0, 0, 0, 0}
	if b.Compressed {
		p[1] = 1
	}
	binary.BigEndian.PutUint32(p[2:], uint32(b.RawLen))
	p = append(p, b.ID[:]...)
	return append(p, b.Data...)
}
