package chunk_test

import (
	"bytes"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// TestCompressLeavesWhatDecompressCannotRead: a large directory's tree may
// be longer than a chunk; Decompress reads at most MaxChunkSize, so
// Compress leaves anything longer as it is (stored uncompressed), and
// compresses what is at the cap.
func TestCompressLeavesWhatDecompressCannotRead(t *testing.T) {
	c, err := chunk.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	at := bytes.Repeat([]byte("a Journal entry's metadata "), chunk.MaxChunkSize/27+1)[:chunk.MaxChunkSize]
	z, ok := c.Compress(nil, at)
	if !ok {
		t.Fatal("compressible data of exactly MaxChunkSize was not compressed")
	}
	if raw, err := c.Decompress(nil, z, len(at)); err != nil || !bytes.Equal(raw, at) {
		t.Fatalf("round trip at the cap: %v", err)
	}
	over := append(at, 'x')
	z, ok = c.Compress(nil, over)
	if ok || !bytes.Equal(z, over) {
		t.Fatalf("data one byte over MaxChunkSize was compressed (%v, %d bytes): nothing could decompress it", ok, len(z))
	}
}
