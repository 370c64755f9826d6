package store

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

func packBytes(recs ...[]byte) []byte {
	hdr := make([]byte, packHeaderLen)
	copy(hdr, packMagic)
	binary.LittleEndian.PutUint64(hdr[8:], 1)
	return append(hdr, bytes.Join(recs, nil)...)
}

func record(data string) []byte {
	h := recordHeader{Type: blob.Chunk, Stored: uint32(len(data)), Raw: uint32(len(data)), ID: chunk.Sum([]byte(data))}
	return h.encode([]byte(data))
}

func writePack(t testing.TB, dir string, b []byte) FS {
	fsys := DirFS(dir)
	fsys.MkdirAll("packs/01", 0o755)
	if err := os.WriteFile(dir+"/"+packName(1), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return fsys
}

func TestScanPackStopsAtTornTail(t *testing.T) {
	full := packBytes(record("one"), record("two"), record("three"))
	for cut := packHeaderLen; cut <= len(full); cut++ {
		fsys := writePack(t, t.TempDir(), full[:cut])
		var got []string
		good, err := scanPack(fsys, 1, func(h recordHeader, off int64, data []byte) error {
			got = append(got, string(data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, end := range []int{packHeaderLen + 55, packHeaderLen + 55 + 55, len(full)} {
			if cut >= end {
				want++
			}
		}
		if len(got) != want || good > int64(cut) {
			t.Fatalf("cut at %d: got %v (good %d), want %d records", cut, got, good, want)
		}
	}
	// A flipped byte in the middle record's data stops the scan there.
	bad := bytes.Clone(full)
	bad[packHeaderLen+55+recordHeaderLen] ^= 1
	n := 0
	scanPack(writePack(t, t.TempDir(), bad), 1, func(recordHeader, int64, []byte) error { n++; return nil })
	if n != 1 {
		t.Fatalf("scan past a damaged record: %d records", n)
	}
}

func FuzzScanPack(f *testing.F) {
	f.Add(packBytes(record("one"), record("two")))
	f.Add(packBytes())
	f.Add(packBytes(record("x"))[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := writePack(t, t.TempDir(), data)
		good, err := scanPack(fsys, 1, func(h recordHeader, off int64, d []byte) error {
			if len(d) != int(h.Stored) || off < packHeaderLen {
				t.Fatalf("record at %d: %d bytes, header says %d", off, len(d), h.Stored)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if good > int64(len(data)) {
			t.Fatalf("good %d beyond %d bytes", good, len(data))
		}
	})
}
