package manifest_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// pattern returns an ID whose bytes are start, start+1, ...
func pattern(start byte) chunk.ID {
	var id chunk.ID
	for i := range id {
		id[i] = start + byte(i)
	}
	return id
}

// goldenTree is the tree whose encoding TestGoldenEncoding pins.
func goldenTree() *manifest.Tree {
	return &manifest.Tree{Entries: []manifest.Entry{
		{Name: "a.txt", Type: manifest.File, Mode: 0o644, MTime: 1000, Size: 10, Chunks: []chunk.ID{pattern(0x00), pattern(0xe0)}},
		{Name: "docs", Type: manifest.Dir, Mode: 0o755, MTime: -1, Subtree: pattern(0x20)},
		{Name: "empty", Type: manifest.File, Mode: 0o600},
		{Name: "link", Type: manifest.Symlink, Mode: 0o777, MTime: 1, Target: "docs/a.txt"},
	}}
}

// goldenHex is the encoding of goldenTree, written out by hand from the
// format description (not copied from Encode's output).
var goldenHex = strings.Join([]string{
	hex.EncodeToString([]byte("XST1")),
	"04", // four entries
	// "a.txt": file, mode 0644, mtime 1000 (zigzag 2000), size 10, 2 chunks
	"05", hex.EncodeToString([]byte("a.txt")), "01", "a403", "d00f", "0a", "02",
	pattern(0x00).String(), pattern(0xe0).String(),
	// "docs": dir, mode 0755, mtime -1 (zigzag 1), size 0, subtree
	"04", hex.EncodeToString([]byte("docs")), "02", "ed03", "01", "00",
	pattern(0x20).String(),
	// "empty": file, mode 0600, mtime 0, size 0, no chunks
	"05", hex.EncodeToString([]byte("empty")), "01", "8003", "00", "00", "00",
	// "link": symlink, mode 0777, mtime 1 (zigzag 2), size 0, target
	"04", hex.EncodeToString([]byte("link")), "03", "ff03", "02", "00",
	"0a", hex.EncodeToString([]byte("docs/a.txt")),
}, "")

// goldenID is chunk.Sum of the golden encoding: the tree's blob ID.
const goldenID = "1f0ebfc54e5c1c32d204309d7a3685f10da6588ae5d126c49aaf12c7577ab1d3"

func golden(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(goldenHex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenEncoding(t *testing.T) {
	want := golden(t)
	got, err := manifest.Encode(goldenTree())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the tree encoding changed (this changes every tree ID and breaks dedup with existing stores):\n got %x\nwant %x", got, want)
	}
	if id := chunk.Sum(got).String(); id != goldenID {
		t.Fatalf("golden tree ID %s, want %s", id, goldenID)
	}
	tr, err := manifest.Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tr, goldenTree()) {
		t.Fatalf("decoded golden tree:\n got %+v\nwant %+v", tr, goldenTree())
	}
}

func sameTree(a, b *manifest.Tree) bool {
	if len(a.Entries) == 0 && len(b.Entries) == 0 {
		return true
	}
	return reflect.DeepEqual(a.Entries, b.Entries)
}

func roundTrip(t *testing.T, tr *manifest.Tree) []byte {
	t.Helper()
	enc, err := manifest.Encode(tr)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	dec, err := manifest.Decode(enc)
	if err != nil {
		t.Fatalf("Decode of Encode's output: %v", err)
	}
	if !sameTree(dec, tr) {
		t.Fatalf("round trip changed the tree:\n got %+v\nwant %+v", dec.Entries, tr.Entries)
	}
	again, err := manifest.Encode(dec)
	if err != nil || !bytes.Equal(again, enc) {
		t.Fatalf("re-encoding differs: %v", err)
	}
	return enc
}

func randomTree(r *rand.Rand) *manifest.Tree {
	tr := &manifest.Tree{}
	n := r.IntN(40)
	names := map[string]bool{}
	for len(tr.Entries) < n {
		nb := make([]byte, 1+r.IntN(manifest.MaxNameLen))
		for i := range nb {
			nb[i] = byte(1 + r.IntN(255))
			if nb[i] == '/' {
				nb[i] = 'x'
			}
		}
		name := string(nb)
		if names[name] || manifest.ValidName(name) != nil {
			continue
		}
		names[name] = true
		e := manifest.Entry{Name: name, Mode: fs.FileMode(r.IntN(0o1000)), MTime: r.Int64() - math.MaxInt64/2}
		if r.IntN(4) == 0 {
			e.Mode |= fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
		}
		switch r.IntN(3) {
		case 0:
			e.Type = manifest.File
			if nc := r.IntN(5); nc > 0 {
				e.Size = 1 + r.Int64N(1<<40)
				for range nc {
					var id chunk.ID
					for i := range id {
						id[i] = byte(r.Uint32())
					}
					e.Chunks = append(e.Chunks, id)
				}
			}
		case 1:
			e.Type = manifest.Dir
			e.Subtree = pattern(byte(1 + r.IntN(200)))
		case 2:
			e.Type = manifest.Symlink
			e.Target = strings.Repeat("../x/", 1+r.IntN(100))
		}
		tr.Entries = append(tr.Entries, e)
	}
	tr.Sort()
	return tr
}

func TestRoundTrip(t *testing.T) {
	roundTrip(t, &manifest.Tree{})
	roundTrip(t, goldenTree())
	long := strings.Repeat("n", manifest.MaxNameLen)
	mixed := &manifest.Tree{Entries: []manifest.Entry{
		{Name: "Мой рисунок 🐢.png", Type: manifest.File, Mode: 0o644, MTime: 1_790_000_000_123_456_789, Size: 3 << 20,
			Chunks: []chunk.ID{chunk.Sum([]byte("a")), chunk.Sum([]byte("b")), chunk.Sum([]byte("a"))}},
		{Name: "bin", Type: manifest.Dir, Mode: 0o755 | fs.ModeSetgid | fs.ModeSticky, MTime: math.MinInt64, Subtree: chunk.Sum([]byte("t"))},
		{Name: "far", Type: manifest.Symlink, Mode: 0o777, MTime: math.MaxInt64, Target: strings.Repeat("t", manifest.MaxTargetLen)},
		{Name: "suid", Type: manifest.File, Mode: 0o755 | fs.ModeSetuid, Size: 1, Chunks: []chunk.ID{pattern(9)}},
		{Name: long, Type: manifest.File, Mode: 0, Size: 0},
	}}
	mixed.Sort()
	if mixed.Entries[0].Name != "bin" || mixed.Entries[4].Name != "Мой рисунок 🐢.png" {
		t.Fatalf("Sort is not byte order: %q ... %q", mixed.Entries[0].Name, mixed.Entries[4].Name)
	}
	roundTrip(t, mixed)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		roundTrip(t, randomTree(r))
	}
}

func TestEncodeRequiresSortedValidTree(t *testing.T) {
	tr := goldenTree()
	tr.Entries[0], tr.Entries[3] = tr.Entries[3], tr.Entries[0]
	if _, err := manifest.Encode(tr); !errors.Is(err, manifest.ErrInvalid) {
		t.Fatalf("Encode of an unsorted tree: %v", err)
	}
	tr.Sort()
	enc, err := manifest.Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, golden(t)) {
		t.Fatal("sorted tree does not encode to the golden bytes")
	}
	bad := []manifest.Entry{
		{Name: "d", Type: manifest.Dir, Mode: 0o755 | fs.ModeDir, Subtree: pattern(1)},
		{Name: "f", Type: manifest.File, Size: -1},
		{Name: "f", Type: manifest.File, Size: 0, Chunks: []chunk.ID{pattern(1)}},
		{Name: "f", Type: manifest.File, Size: 5},
		{Name: "l", Type: manifest.Symlink, Target: "a\x00b"},
		{Name: "l", Type: manifest.Symlink, Target: strings.Repeat("t", manifest.MaxTargetLen+1)},
		{Name: "x", Type: 0},
	}
	for _, e := range bad {
		if _, err := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{e}}); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("Encode accepted %+v: %v", e, err)
		}
	}
	// A tree whose encoding exceeds MaxTreeSize is refused.
	huge := make([]chunk.ID, manifest.MaxTreeSize/32+1)
	if _, err := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: "big", Type: manifest.File, Size: 1 << 40, Chunks: huge}}}); !errors.Is(err, manifest.ErrInvalid) {
		t.Fatalf("Encode of an oversized tree: %v", err)
	}
}

func TestChildren(t *testing.T) {
	got := goldenTree().Children()
	want := []chunk.ID{pattern(0x00), pattern(0xe0), pattern(0x20)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Children = %v, want %v", got, want)
	}
}

// rawEntry is an entry written without any validation, to build inputs that
// Encode refuses to produce.
type rawEntry struct {
	name    string
	typ     byte
	mode    uint64
	mtime   int64
	size    uint64
	chunks  []chunk.ID
	subtree chunk.ID
	target  string
}

func rawEncode(ents ...rawEntry) []byte {
	b := []byte("XST1")
	b = binary.AppendUvarint(b, uint64(len(ents)))
	for _, e := range ents {
		b = binary.AppendUvarint(b, uint64(len(e.name)))
		b = append(b, e.name...)
		b = append(b, e.typ)
		b = binary.AppendUvarint(b, e.mode)
		b = binary.AppendVarint(b, e.mtime)
		b = binary.AppendUvarint(b, e.size)
		switch e.typ {
		case 1:
			b = binary.AppendUvarint(b, uint64(len(e.chunks)))
			for _, id := range e.chunks {
				b = append(b, id[:]...)
			}
		case 2:
			b = append(b, e.subtree[:]...)
		case 3:
			b = binary.AppendUvarint(b, uint64(len(e.target)))
			b = append(b, e.target...)
		}
	}
	return b
}

// oneEntry returns a header announcing one entry, followed by b.
func oneEntry(b ...byte) []byte { return append([]byte("XST1\x01"), b...) }

func file(name string) rawEntry {
	return rawEntry{name: name, typ: 1, mode: 0o644, size: 1, chunks: []chunk.ID{pattern(1)}}
}

func TestRawEncoderMatchesEncode(t *testing.T) {
	// The rejection tests below are only meaningful if rawEncode writes the
	// real format.
	want := golden(t)
	got := rawEncode(
		rawEntry{name: "a.txt", typ: 1, mode: 0o644, mtime: 1000, size: 10, chunks: []chunk.ID{pattern(0x00), pattern(0xe0)}},
		rawEntry{name: "docs", typ: 2, mode: 0o755, mtime: -1, subtree: pattern(0x20)},
		rawEntry{name: "empty", typ: 1, mode: 0o600},
		rawEntry{name: "link", typ: 3, mode: 0o777, mtime: 1, target: "docs/a.txt"},
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("rawEncode:\n got %x\nwant %x", got, want)
	}
	if _, err := manifest.Decode(rawEncode(file("a"), file("b"))); err != nil {
		t.Fatalf("valid raw tree rejected: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	g := golden(t)
	cases := map[string][]byte{
		"empty input":           nil,
		"bad magic":             append([]byte("XST2"), g[4:]...),
		"lowercase magic":       append([]byte("xst1"), g[4:]...),
		"magic only":            []byte("XST1"),
		"trailing byte":         append(append([]byte{}, g...), 0),
		"trailing entry":        append(append([]byte{}, g...), rawEncode(file("z"))[5:]...),
		"unsorted":              rawEncode(file("b"), file("a")),
		"duplicate":             rawEncode(file("a"), file("a")),
		"duplicate of dir":      rawEncode(file("a"), rawEntry{name: "a", typ: 2, subtree: pattern(1)}),
		"empty name":            rawEncode(file("")),
		"dot":                   rawEncode(file(".")),
		"dotdot":                rawEncode(file("..")),
		"slash":                 rawEncode(file("a/b")),
		"leading slash":         rawEncode(file("/etc")),
		"NUL":                   rawEncode(file("a\x00b")),
		"name too long":         rawEncode(file(strings.Repeat("n", manifest.MaxNameLen+1))),
		"type 0":                rawEncode(rawEntry{name: "a", typ: 0}),
		"type 4":                rawEncode(rawEntry{name: "a", typ: 4}),
		"type 255":              rawEncode(rawEntry{name: "a", typ: 255}),
		"dir zero subtree":      rawEncode(rawEntry{name: "d", typ: 2}),
		"symlink empty target":  rawEncode(rawEntry{name: "l", typ: 3}),
		"symlink NUL target":    rawEncode(rawEntry{name: "l", typ: 3, target: "a\x00"}),
		"symlink target long":   rawEncode(rawEntry{name: "l", typ: 3, target: strings.Repeat("t", manifest.MaxTargetLen+1)}),
		"file without chunks":   rawEncode(rawEntry{name: "f", typ: 1, size: 7}),
		"empty file w/ chunks":  rawEncode(rawEntry{name: "f", typ: 1, size: 0, chunks: []chunk.ID{pattern(1)}}),
		"mode type bits":        rawEncode(rawEntry{name: "d", typ: 2, mode: uint64(fs.ModeDir | 0o755), subtree: pattern(1)}),
		"mode over 32 bits":     rawEncode(rawEntry{name: "f", typ: 1, mode: 1 << 33}),
		"size over 1<<62":       rawEncode(rawEntry{name: "f", typ: 1, size: 1<<62 + 1, chunks: []chunk.ID{pattern(1)}}),
		"count without entries": []byte("XST1\x01"),
		"entry count 1<<40":     binary.AppendUvarint([]byte("XST1"), 1<<40),
		"entry count max+1":     append(binary.AppendUvarint([]byte("XST1"), manifest.MaxEntries+1), make([]byte, 64)...),
		"entry count overflow":  append([]byte("XST1"), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"chunk count 1<<40":     binary.AppendUvarint(oneEntry(1, 'f', 1, 0, 0, 1), 1<<40),
		"chunk count too big":   append(binary.AppendUvarint(oneEntry(1, 'f', 1, 0, 0, 1), 2), make([]byte, 40)...),
		"name length 1<<40":     binary.AppendUvarint(oneEntry(), 1<<40),
		"name length past end":  append(oneEntry(), 10, 'a'),
		"target length 1<<40":   binary.AppendUvarint(oneEntry(1, 'l', 3, 0, 0, 0), 1<<40),
		"target length max+1":   append(binary.AppendUvarint(oneEntry(1, 'l', 3, 0, 0, 0), manifest.MaxTargetLen+1), make([]byte, manifest.MaxTargetLen+1)...),
		"truncated subtree":     oneEntry(1, 'd', 2, 0, 0, 0, 1, 2, 3),
		"mtime varint overflow": oneEntry(1, 'f', 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	}
	for name, data := range cases {
		tr, err := manifest.Decode(data)
		if err == nil {
			t.Errorf("%s: Decode accepted %x as %+v", name, data, tr)
			continue
		}
		if !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", name, err)
		}
	}
}

func TestDecodeRejectsEveryTruncation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, enc := range [][]byte{golden(t), roundTrip(t, randomTree(r)), roundTrip(t, randomTree(r))} {
		for n := 0; n < len(enc); n++ {
			if tr, err := manifest.Decode(enc[:n]); err == nil {
				t.Fatalf("Decode accepted the first %d of %d bytes: %+v", n, len(enc), tr)
			} else if !errors.Is(err, manifest.ErrInvalid) {
				t.Fatalf("prefix %d: %v does not wrap ErrInvalid", n, err)
			}
		}
	}
}

func TestDecodeRejectsOversizedInput(t *testing.T) {
	data := make([]byte, manifest.MaxTreeSize+1)
	copy(data, "XST1")
	if _, err := manifest.Decode(data); !errors.Is(err, manifest.ErrInvalid) {
		t.Fatalf("Decode of %d bytes: %v", len(data), err)
	}
	// One byte less passes the size check and fails later (it is mostly zeros).
	if _, err := manifest.Decode(data[:manifest.MaxTreeSize]); !errors.Is(err, manifest.ErrInvalid) {
		t.Fatalf("Decode of %d zero bytes: %v", manifest.MaxTreeSize, err)
	}
}

// TestDecodeRejectsNonCanonicalVarints: a tree's ID is the hash of its
// bytes, so one tree must have exactly one encoding. An over-long varint
// (e.g. 0x80 0x00 for 0) decodes to the same value as the short form.
func TestDecodeRejectsNonCanonicalVarints(t *testing.T) {
	base := rawEncode(file("a"))
	// base: "XST1" count=1, namelen=1, 'a', type=1, mode=0o644 (a4 03), mtime 0, size 1, nchunks 1, id
	if !bytes.Equal(base[:12], []byte("XST1\x01\x01a\x01\xa4\x03\x00\x01")) {
		t.Fatalf("unexpected base encoding %x", base[:12])
	}
	if _, err := manifest.Decode(base); err != nil {
		t.Fatal(err)
	}
	splice := func(at, drop int, with ...byte) []byte {
		out := append([]byte{}, base[:at]...)
		out = append(out, with...)
		return append(out, base[at+drop:]...)
	}
	cases := map[string][]byte{
		"empty tree":  []byte("XST1\x80\x00"),
		"entry count": splice(4, 1, 0x81, 0x00),
		"name length": splice(5, 1, 0x81, 0x00),
		"mode":        splice(8, 2, 0xa4, 0x83, 0x00),
		"mtime":       splice(10, 1, 0x80, 0x00),
		"size":        splice(11, 1, 0x81, 0x80, 0x00),
		"chunk count": splice(12, 1, 0x81, 0x00),
	}
	for name, data := range cases {
		if tr, err := manifest.Decode(data); err == nil {
			enc, _ := manifest.Encode(tr)
			t.Errorf("over-long %s varint accepted: %x decodes to the same tree as %x", name, data, enc)
		}
	}
}

// TestDecodeHugeCountsDoNotAllocate: counts in a tiny input must be checked
// against the input's length before anything is allocated for them.
func TestDecodeHugeCountsDoNotAllocate(t *testing.T) {
	inputs := [][]byte{
		binary.AppendUvarint([]byte("XST1"), 1<<40),
		binary.AppendUvarint([]byte("XST1"), manifest.MaxEntries),
		binary.AppendUvarint(oneEntry(1, 'f', 1, 0, 0, 1), 1<<40),
		binary.AppendUvarint(oneEntry(1, 'f', 1, 0, 0, 1), 1<<20),
		binary.AppendUvarint(oneEntry(1, 'l', 3, 0, 0, 0), 1<<40),
		binary.AppendUvarint(oneEntry(), 1<<40),
	}
	for _, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := manifest.Decode(in)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("Decode(%x) succeeded", in)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("Decode of %d bytes (%x) allocated %d bytes", len(in), in, n)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "...", ".hidden", "a b", "ñ", strings.Repeat("x", manifest.MaxNameLen), "\\"} {
		if err := manifest.ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/", "a\x00", strings.Repeat("x", manifest.MaxNameLen+1)} {
		if err := manifest.ValidName(bad); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("ValidName(%q) = %v", bad, err)
		}
	}
}

func TestTypeString(t *testing.T) {
	got := fmt.Sprint(manifest.File, manifest.Dir, manifest.Symlink, manifest.Type(9))
	if got != "file dir symlink type(9)" {
		t.Fatalf("Type strings: %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(golden(f))
	r := rand.New(rand.NewPCG(5, 6))
	for range 4 {
		enc, err := manifest.Encode(randomTree(r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte("XST1\x00"))
	f.Add(rawEncode(file("a"), rawEntry{name: "b", typ: 3, target: "a"}, rawEntry{name: "c", typ: 2, subtree: pattern(7)}))
	f.Add([]byte("XST1"))
	f.Add([]byte{})
	f.Add([]byte("garbage that is not a tree at all"))
	f.Add(binary.AppendUvarint([]byte("XST1"), 1<<40))
	f.Add(rawEncode(file("b"), file("a")))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := manifest.Decode(data)
		if err != nil {
			if !errors.Is(err, manifest.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := tr.Validate(); err != nil {
			t.Fatalf("Decode returned a tree that does not validate: %v", err)
		}
		enc, err := manifest.Encode(tr)
		if err != nil {
			t.Fatalf("Decode accepted %x but Encode refuses the tree: %v", data, err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("non-canonical encoding accepted:\n input %x\nEncode %x", data, enc)
		}
	})
}
