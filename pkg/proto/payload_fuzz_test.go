package proto

import (
	"bytes"
	"crypto/ed25519"
	"slices"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// FuzzDecodePayloads: the payloads inside frames a laptop or a server
// sends (FuzzReadFrame covers the frames around them). Whatever the bytes,
// no panic; what is accepted is what its encoder writes back, byte for
// byte, so no two spellings of one request exist.
func FuzzDecodePayloads(f *testing.F) {
	id := chunk.Sum([]byte("seed"))
	f.Add(encodeRefs([]blob.Ref{{Type: blob.Chunk, ID: id}, {Type: blob.Tree, ID: id}}))
	f.Add(encodeBits([]bool{true, false, true, true, false, false, false, false, true}))
	var buf bytes.Buffer
	writeBlob(&buf, &blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: id}, Data: []byte("seed"), RawLen: 4})
	f.Add(buf.Bytes()[5:])
	f.Add([]byte{byte(KindDamaged), 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if refs, err := decodeRefs(p); err == nil {
			if len(refs) > MaxRefs {
				t.Fatalf("%d refs accepted (limit %d)", len(refs), MaxRefs)
			}
			if !bytes.Equal(encodeRefs(refs), p) {
				t.Fatalf("refs %x decode and encode to %x", p, encodeRefs(refs))
			}
		}
		if bits, err := decodeBits(p); err == nil {
			if len(bits) > MaxRefs {
				t.Fatalf("%d bits accepted (limit %d)", len(bits), MaxRefs)
			}
			again, err := decodeBits(encodeBits(bits))
			if err != nil || !slices.Equal(again, bits) {
				t.Fatalf("bits %x do not survive encoding: %v", p, err)
			}
		}
		if b, err := decodeBlob(p); err == nil {
			if !b.Type.Valid() || b.RawLen < 0 || b.RawLen > max(chunk.MaxChunkSize, 16<<20) {
				t.Fatalf("blob header accepted: %+v", b.Ref)
			}
			var w bytes.Buffer
			writeBlob(&w, &b)
			if !bytes.Equal(w.Bytes()[5:], p) {
				t.Fatalf("blob %x decodes and encodes to %x", p, w.Bytes()[5:])
			}
		}
		if err := decodeError(p); err == nil {
			t.Fatal("an error frame decoded to no error")
		}
	})
}

// FuzzDecodeKey: the server's key file. Anything but a seed in hex (with
// surrounding space) is no key; a key read is the one EncodeKey writes.
func FuzzDecodeKey(f *testing.F) {
	k, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeKey(k))
	f.Add([]byte("  " + string(EncodeKey(k)) + "\n\n"))
	f.Add([]byte("not a key"))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, ok := DecodeKey(b)
		if !ok {
			return
		}
		if len(key) != ed25519.PrivateKeySize {
			t.Fatalf("a key of %d bytes", len(key))
		}
		again, ok := DecodeKey(EncodeKey(key))
		if !ok || !again.Equal(key) {
			t.Fatal("the key read does not survive writing")
		}
	})
}
