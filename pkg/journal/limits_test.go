package journal

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

func TestReadEntryCap(t *testing.T) {
	fsys := fstest.MapFS{}
	for i := 0; i < 5; i++ {
		fsys[fmt.Sprintf("ab/ab%d/metadata/title", i)] = &fstest.MapFile{Data: []byte("t")}
		fsys[fmt.Sprintf("store/old%d", i)] = &fstest.MapFile{Data: []byte("x")}
	}
	lim := defaultLimits
	for _, n := range []int{1, 3, 5, 7} {
		lim.entries = n
		ents, err := read(fsys, lim)
		if len(ents) != n || !errors.Is(err, ErrTooManyEntries) {
			t.Errorf("cap %d: %d entries, %v", n, len(ents), err)
		}
	}
	lim.entries = 10
	if ents, err := read(fsys, lim); len(ents) != 10 || err != nil {
		t.Errorf("cap 10: %d entries, %v", len(ents), err)
	}
}

func TestReadMetadataCaps(t *testing.T) {
	fsys := fstest.MapFS{
		"ab/abc/metadata/aaa":       {Data: []byte(strings.Repeat("a", 60))},
		"ab/abc/metadata/bbb":       {Data: []byte(strings.Repeat("b", 60))},
		"ab/abc/metadata/title":     {Data: []byte("Title")},
		"ab/abc/metadata/timestamp": {Data: []byte("0")},
		"ab/abc/metadata/mime_type": {Data: []byte("text/plain")},
	}
	lim := defaultLimits
	lim.entryMeta = 100
	e := readCurrent(fsys, "abc", lim)
	if e.Title != "Title" || e.Metadata["aaa"] == "" || e.Metadata["bbb"] != "" || len(e.Problems) != 1 {
		t.Errorf("entry metadata cap: %+v", e)
	}
	lim = defaultLimits
	lim.keys = 3
	e = readCurrent(fsys, "abc", lim)
	if len(e.Metadata) != 3 || len(e.Problems) != 1 {
		t.Errorf("keys cap: %+v", e)
	}
	lim = defaultLimits
	lim.value = 59
	e = readCurrent(fsys, "abc", lim)
	if e.Title != "Title" || len(e.Metadata) != 3 || len(e.Problems) != 2 {
		t.Errorf("value cap: %+v", e)
	}
}

func TestReadBundleDataCap(t *testing.T) {
	mk := func(data string, claim uint64) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, _ := zw.Create("u/_metadata.json")
		w.Write([]byte("{}"))
		if claim == 0 {
			w, _ = zw.Create("u/u")
		} else {
			w, _ = zw.CreateRaw(&zip.FileHeader{Name: "u/u", Method: zip.Store, CompressedSize64: uint64(len(data)), UncompressedSize64: claim})
		}
		w.Write([]byte(data))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	lim := defaultBundleLimits
	lim.data = 8
	for _, c := range []struct {
		data  string
		claim uint64
		ok    bool
	}{
		{"12345678", 0, true},
		{"123456789", 0, false},
		{"123456789", 4, false}, // the header lies
	} {
		b := mk(c.data, c.claim)
		got, err := readBundle(bytes.NewReader(b), int64(len(b)), lim)
		if (err == nil) != c.ok || err == nil && string(got.Data) != c.data {
			t.Errorf("data %q claimed %d: %v, %v", c.data, c.claim, got, err)
		}
	}
}
