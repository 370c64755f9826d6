package bundle

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

var (
	fuzzCodecOnce sync.Once
	fuzzCodec     *chunk.Codec
)

// sharedCodec is one Codec for every fuzz input: making one per input would
// dominate the run time.
func sharedCodec(t testing.TB) *chunk.Codec {
	fuzzCodecOnce.Do(func() {
		c, err := chunk.NewCodec()
		if err != nil {
			t.Fatal(err)
		}
		fuzzCodec = c
	})
	return fuzzCodec
}

// FuzzRead feeds arbitrary streams to the decoder, as Verify and as Read: it
// must never panic, never hand out a record beyond its caps, and never
// accept a stream that is not signed by the key in its header (the fuzzer
// cannot forge a signature, so an accepted input must be one of the seeds).
func FuzzRead(f *testing.F) {
	key := testKey(1)
	data, offs := writeBundle(f, key, testBlobs(f, 20)[:4], testMetas)
	f.Add(data)
	f.Add(data[:offs[2]])
	empty, _ := writeBundle(f, key, nil, nil)
	f.Add(empty)
	f.Add([]byte("XSBUNDLE"))
	codec := sharedCodec(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _, verr := decode(bytes.NewReader(in), trustAll, nil, nil, codec)
		_, _, rerr := decode(bytes.NewReader(in), trustAll, func(b blob.Blob) error {
			if len(b.Data) > MaxStored || b.RawLen > rawLimit(b.Type, b.Compressed) || !b.Type.Valid() {
				t.Fatalf("blob beyond caps: %d stored, %d raw, type %d", len(b.Data), b.RawLen, b.Type)
			}
			return nil
		}, func(name string, data []byte) error {
			if len(name) == 0 || len(name) > MaxMetaName || len(data) > MaxMetaData {
				t.Fatalf("meta beyond caps: %d-byte name, %d bytes", len(name), len(data))
			}
			return nil
		}, codec)
		if (verr == nil) != (rerr == nil) {
			t.Fatalf("Verify: %v, Read: %v", verr, rerr)
		}
		if verr == nil && !bytes.Equal(in, data) && !bytes.Equal(in, empty) {
			t.Fatalf("accepted a stream that is not a seed: %x", in)
		}
	})
}

// FuzzPieces writes arbitrary bytes as two piece files next to real pieces
// and scans, opens and reads them: it must never panic, and a bundle read
// through pieces must still verify only if intact.
func FuzzPieces(f *testing.F) {
	dir := f.TempDir()
	files, _ := writePieces(f, dir, MinPieceSize, testKey(1), testBlobs(f, 21)[:2])
	var real [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		real = append(real, b)
	}
	f.Add(real[0], real[1], uint8(2))
	f.Add(real[1], real[1], uint8(0))
	f.Add(real[0][:100], real[len(real)-1], uint8(1))
	f.Add([]byte("XSBPIECE"), []byte{}, uint8(0))
	codec := sharedCodec(f)
	f.Fuzz(func(t *testing.T, a, b []byte, keep uint8) {
		d := t.TempDir()
		// Some of the real pieces, then the two fuzzed files.
		for i := range int(keep) % (len(real) + 1) {
			os.WriteFile(filepath.Join(d, filepath.Base(files[i])), real[i], 0o644)
		}
		os.WriteFile(filepath.Join(d, "a.xsb"), a, 0o644)
		os.WriteFile(filepath.Join(d, "b"), b, 0o644)
		sets, err := ScanPieces(d)
		if err != nil {
			return
		}
		for _, s := range sets {
			rc, err := s.Open()
			if err != nil {
				continue
			}
			decode(rc, trustAll, nil, nil, codec)
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
}
