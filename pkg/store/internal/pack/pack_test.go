package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
)

func packBytes(recs ...[]byte) []byte {
	hdr := make([]byte, HeaderLen)
	copy(hdr, packMagic)
	binary.LittleEndian.PutUint64(hdr[8:], 1)
	return append(hdr, bytes.Join(recs, nil)...)
}

func record(data string) []byte {
	h := Header{Type: blob.Chunk, Stored: uint32(len(data)), Raw: uint32(len(data)), ID: chunk.Sum([]byte(data))}
	return h.Encode([]byte(data))
}

func writePack(t testing.TB, dir string, b []byte) fsys.FS {
	files := fsys.Dir(dir)
	files.MkdirAll("packs/01", 0o755)
	if err := os.WriteFile(dir+"/"+Name(1), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return files
}

func TestScanPackStopsAtTornTail(t *testing.T) {
	full := packBytes(record("one"), record("two"), record("three"))
	for cut := HeaderLen; cut <= len(full); cut++ {
		files := writePack(t, t.TempDir(), full[:cut])
		var got []string
		good, err := Scan(files, 1, func(h Header, off int64, data []byte) error {
			got = append(got, string(data))
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, end := range []int{HeaderLen + 55, HeaderLen + 55 + 55, len(full)} {
			if cut >= end {
				want++
			}
		}
		if len(got) != want || good > int64(cut) {
			t.Fatalf("cut at %d: got %v (good %d), want %d records", cut, got, good, want)
		}
	}
}

// A damaged byte anywhere in a pack costs at most the record that holds it:
// the scan finds every other record, before and after it, and reports the
// damaged span (issue: one flipped byte used to hide the rest of the pack).
func TestScanPackResyncsPastDamage(t *testing.T) {
	names := []string{"one", "two", strings.Repeat("three", 40), "four", strings.Repeat("XSR1", 30), "six"}
	var recs [][]byte
	var starts []int
	off := HeaderLen
	for _, n := range names {
		r := record(n)
		recs = append(recs, r)
		starts = append(starts, off)
		off += len(r)
	}
	full := packBytes(recs...)
	owner := func(pos int) int { // index of the record holding byte pos, -1 in the pack header
		for i := len(starts) - 1; i >= 0; i-- {
			if pos >= starts[i] {
				return i
			}
		}
		return -1
	}
	for _, mode := range []string{"flip", "zero16", "truncate"} {
		for pos := 0; pos < len(full); pos++ {
			bad := bytes.Clone(full)
			switch mode {
			case "flip":
				bad[pos] ^= 0x5a
			case "zero16":
				for i := pos; i < min(len(bad), pos+16); i++ {
					bad[i] = 0
				}
			case "truncate":
				bad = bad[:pos]
			}
			got := map[string]bool{}
			var spans []DamagedSpan
			_, err := Scan(writePack(t, t.TempDir(), bad), 1, func(h Header, off int64, data []byte) error {
				got[string(data)] = true
				return nil
			}, func(sp DamagedSpan) { spans = append(spans, sp) })
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range names {
				hit := owner(pos) == i
				if mode == "zero16" {
					hit = i >= owner(pos) && i <= owner(min(len(full)-1, pos+15))
				}
				if mode == "truncate" {
					hit = starts[i]+len(recs[i]) > pos
				}
				if !hit && !got[n] {
					t.Fatalf("%s at %d: intact record %d (%.10q) lost; spans %+v", mode, pos, i, n, spans)
				}
			}
			if !bytes.Equal(bad, full) && len(got) == len(names) && mode != "truncate" && len(spans) == 0 && owner(pos) >= 0 {
				// The damage must be noticed (a flip of a byte the CRC covers).
				t.Fatalf("%s at %d: damage not reported", mode, pos)
			}
		}
	}
}

func FuzzScanPack(f *testing.F) {
	f.Add(packBytes(record("one"), record("two")))
	f.Add(packBytes())
	f.Add(packBytes(record("x"))[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		files := writePack(t, t.TempDir(), data)
		good, err := Scan(files, 1, func(h Header, off int64, d []byte) error {
			if len(d) != int(h.Stored) || off < HeaderLen {
				t.Fatalf("record at %d: %d bytes, header says %d", off, len(d), h.Stored)
			}
			return nil
		}, func(sp DamagedSpan) {
			if sp.Off >= sp.End || sp.End > int64(len(data)) {
				t.Fatalf("damaged span %+v in %d bytes", sp, len(data))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if good > int64(len(data)) {
			t.Fatalf("good %d beyond %d bytes", good, len(data))
		}
	})
}

// The writer builds every record in one buffer: records of falling and
// rising sizes, one bigger than the buffer it keeps, each read back whole
// and equal to what was appended, and equal to Encode's bytes.
func TestWriterReusesItsRecordBuffer(t *testing.T) {
	files := fsys.Dir(t.TempDir())
	w := NewWriter(files, 64<<20, 1)
	defer w.Close()
	var datas [][]byte
	var offs []int64
	for i, n := range []int{300 << 10, 17, 4 << 10, 3 << 20, 1, 200 << 10} {
		d := bytes.Repeat([]byte{byte('a' + i)}, n)
		h := Header{Type: blob.Chunk, Stored: uint32(n), Raw: uint32(n), ID: chunk.Sum(d)}
		seq, off, err := w.Append(h, d)
		if err != nil || seq != 1 {
			t.Fatalf("append %d: pack %d, %v", i, seq, err)
		}
		datas, offs = append(datas, d), append(offs, off)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	for i, d := range datas {
		h, got, err := ReadRecord(files, 1, offs[i], uint32(len(d)))
		if err != nil || !bytes.Equal(got, d) || h.ID != chunk.Sum(d) {
			t.Fatalf("record %d (%d bytes) read back wrong: %v", i, len(d), err)
		}
		raw := make([]byte, RecordHeaderLen+len(d))
		f, err := files.OpenFile(Name(1), os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.ReadAt(raw, offs[i])
		f.Close()
		if want := h.Encode(d); !bytes.Equal(raw, want) {
			t.Fatalf("record %d on disk is not Encode's", i)
		}
	}
}

// TestReadRecordRefusesASizeNoRecordHas: the stored size comes from the
// index; a damaged entry (a flipped byte in Badger, whose values carry no
// checksum of their own) can say 4 GiB. The read is refused as a bad record
// before anything that size is allocated.
func TestReadRecordRefusesASizeNoRecordHas(t *testing.T) {
	files := fsys.Dir(t.TempDir())
	w := NewWriter(files, 64<<20, 1)
	defer w.Close()
	d := []byte("a small chunk")
	_, off, err := w.Append(Header{Type: blob.Chunk, Stored: uint32(len(d)), Raw: uint32(len(d)), ID: chunk.Sum(d)}, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, stored := range []uint32{MaxStored + 1, 1 << 31, 0xFFFFFFFF} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := ReadRecord(files, 1, off, stored)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrBadRecord) {
			t.Errorf("stored %d: %v, want ErrBadRecord", stored, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("stored %d: the read allocated %d bytes", stored, grew)
		}
	}
}
