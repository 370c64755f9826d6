package journal_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// members lists a zip's member names and methods.
func members(t testing.TB, b []byte) map[string]uint16 {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint16{}
	for _, f := range zr.File {
		m[f.Name] = f.Method
	}
	return m
}

func bundle(t testing.TB, fsys fs.FS, e journal.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := journal.WriteBundle(&buf, fsys, e); err != nil {
		t.Fatalf("WriteBundle(%s): %v", e.UID, err)
	}
	return buf.Bytes()
}

func TestBundleRoundTrip(t *testing.T) {
	dir, gen := generate(t, 5)
	write(t, filepath.Join(dir, gen[0].UID[:2], gen[0].UID, "metadata", "preview"), pngBytes)
	if err := os.Remove(filepath.Join(dir, gen[1].UID[:2], gen[1].UID, "data")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, gen[2].UID[:2], gen[2].UID, "metadata", "preview"), pngBytes)
	if err := os.Remove(filepath.Join(dir, gen[2].UID[:2], gen[2].UID, "data")); err != nil {
		t.Fatal(err)
	}
	fsys := os.DirFS(dir)
	ents, err := journal.Read(fsys)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, e := range ents {
		b := bundle(t, fsys, e)
		got, err := journal.ReadBundle(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("ReadBundle(%s): %v", e.UID, err)
		}
		wantMeta := maps.Clone(e.Metadata)
		wantMeta["uid"] = e.UID
		if got.UID != e.UID || !maps.Equal(got.Metadata, wantMeta) {
			t.Errorf("%s: bundle uid %q metadata %v, want %v", e.UID, got.UID, got.Metadata, wantMeta)
		}
		wantNames := []string{e.UID + "/_metadata.json"}
		if e.DataPath != "" {
			data, err := fs.ReadFile(fsys, e.DataPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Data, data) {
				t.Errorf("%s: bundle data differs", e.UID)
			}
			wantNames = append(wantNames, e.UID+"/"+e.UID)
		} else if got.Data != nil {
			t.Errorf("%s: entry without data has bundle data", e.UID)
		}
		if e.PreviewPath != "" {
			if !bytes.Equal(got.Preview, pngBytes) {
				t.Errorf("%s: preview differs", e.UID)
			}
		} else if got.Preview != nil {
			t.Errorf("%s: entry without preview has bundle preview", e.UID)
		} else if _, ok := members(t, b)[e.UID+"/preview/"+e.UID]; !ok {
			t.Errorf("%s: an entry without preview needs an empty preview member (Sugar 0.120 cannot import the bundle without one)", e.UID)
		}
		wantNames = append(wantNames, e.UID+"/preview/"+e.UID)
		m := members(t, b)
		if names := slices.Sorted(maps.Keys(m)); !slices.Equal(names, slices.Sorted(slices.Values(wantNames))) {
			t.Errorf("%s: members %q, want %q", e.UID, names, wantNames)
		}
		if method, ok := m[e.UID+"/"+e.UID]; ok {
			want := zip.Deflate
			if e.MimeType == "image/jpeg" || e.MimeType == "application/pdf" {
				want = zip.Store
				stored++
			}
			if method != want {
				t.Errorf("%s (%s): data method %d, want %d", e.UID, e.MimeType, method, want)
			}
		}
	}
	if stored == 0 {
		t.Error("no stored (already compressed) data in the test journal")
	}
}

func TestWriteBundleMetadata(t *testing.T) {
	fsys := fstest.MapFS{"d": {Data: []byte("<b>&</b>")}}
	e := journal.Entry{UID: "u-1", Metadata: map[string]string{"title": "<b>Mamá</b>", "uid": "other", "preview": "x"},
		DataPath: "d", MimeType: "text/html", PreviewPath: "missing"}
	b := bundle(t, fsys, e)
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := io.ReadAll(rc)
	if want := `{"title":"<b>Mamá</b>","uid":"u-1"}` + "\n"; zr.File[0].Name != "u-1/_metadata.json" || string(meta) != want {
		t.Errorf("%s = %s, want %s", zr.File[0].Name, meta, want)
	}
	// An unreadable preview is left out: the member is empty.
	if len(zr.File) != 3 || zr.File[2].Name != "u-1/preview/u-1" || zr.File[2].UncompressedSize64 != 0 {
		t.Errorf("%d members, the last %s", len(zr.File), zr.File[len(zr.File)-1].Name)
	}
}

func TestWriteErrors(t *testing.T) {
	fsys := fstest.MapFS{"d": {Data: []byte("x")}}
	for _, uid := range []string{"", ".", "..", "a/b", `a\b`, "a..b", "a\nb", "\xff"} {
		var buf bytes.Buffer
		if err := journal.WriteBundle(&buf, fsys, journal.Entry{UID: uid, DataPath: "d"}); err == nil || buf.Len() != 0 {
			t.Errorf("WriteBundle with uid %q: err %v, %d bytes", uid, err, buf.Len())
		}
	}
	var buf bytes.Buffer
	if err := journal.WriteBundle(&buf, fsys, journal.Entry{UID: "u", DataPath: "gone"}); !errors.Is(err, fs.ErrNotExist) || buf.Len() != 0 {
		t.Errorf("WriteBundle with a missing data file: %v, %d bytes", err, buf.Len())
	}
	if err := journal.WriteFile(&buf, fsys, journal.Entry{UID: "u"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile without data: %v", err)
	}
	if err := journal.WriteFile(&buf, fsys, journal.Entry{UID: "u", DataPath: "gone"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile with a missing data file: %v", err)
	}
	if err := journal.WriteFile(&buf, fsys, journal.Entry{UID: "u", DataPath: "d"}); err != nil || buf.String() != "x" {
		t.Errorf("WriteFile = %q, %v", buf.String(), err)
	}
}

// member is one file of a hand-made zip.
type member struct {
	name string
	data string
	size uint64 // the uncompressed size the header claims, if not 0
}

func makeZip(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		var w io.Writer
		var err error
		if m.size != 0 {
			w, err = zw.CreateRaw(&zip.FileHeader{Name: m.name, Method: zip.Store, CRC32: crc32.ChecksumIEEE([]byte(m.data)),
				CompressedSize64: uint64(len(m.data)), UncompressedSize64: m.size})
		} else {
			w, err = zw.Create(m.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadBundle(t *testing.T) {
	meta := member{name: "u/_metadata.json", data: `{"title": "T", "n": 3, "x": [1]}`}
	b := makeZip(t, member{name: "u/"}, member{name: "u/preview/"}, meta, member{name: "u/u", data: "data"},
		member{name: "u/preview/u", data: "png"}, member{name: "u/extra/file", data: "ignored"})
	got, err := journal.ReadBundle(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != "u" || string(got.Data) != "data" || string(got.Preview) != "png" ||
		!maps.Equal(got.Metadata, map[string]string{"title": "T", "n": "3"}) {
		t.Errorf("ReadBundle = %+v", got)
	}
	// An empty data file is there, not missing.
	b = makeZip(t, meta, member{name: "u/u"})
	if got, err := journal.ReadBundle(bytes.NewReader(b), int64(len(b))); err != nil || got.Data == nil || len(got.Data) != 0 {
		t.Errorf("ReadBundle with empty data = %+v, %v", got, err)
	}

	many := []member{meta}
	for i := 0; i < 64; i++ {
		many = append(many, member{name: "u/f" + strings.Repeat("x", i)})
	}
	for name, b := range map[string][]byte{
		"not a zip":          []byte("PK not really"),
		"empty zip":          makeZip(t),
		"no metadata":        makeZip(t, member{name: "u/u", data: "x"}),
		"two top dirs":       makeZip(t, meta, member{name: "v/v", data: "x"}),
		"top-level file":     makeZip(t, member{name: "u", data: "x"}, meta),
		"dot-dot uid":        makeZip(t, member{name: "../_metadata.json", data: "{}"}),
		"dot-dot in uid":     makeZip(t, member{name: "a..b/_metadata.json", data: "{}"}),
		"dot uid":            makeZip(t, member{name: "./_metadata.json", data: "{}"}),
		"absolute":           makeZip(t, member{name: "/u/_metadata.json", data: "{}"}),
		"dot-dot inside":     makeZip(t, meta, member{name: "u/../../etc/passwd", data: "x"}),
		"backslash":          makeZip(t, meta, member{name: `u/..\..\x`, data: "x"}),
		"empty element":      makeZip(t, meta, member{name: "u//x", data: "x"}),
		"two metadata":       makeZip(t, meta, meta),
		"two data":           makeZip(t, meta, member{name: "u/u", data: "x"}, member{name: "u/u", data: "y"}),
		"metadata not JSON":  makeZip(t, member{name: "u/_metadata.json", data: "{"}),
		"metadata array":     makeZip(t, member{name: "u/_metadata.json", data: "[]"}),
		"metadata null":      makeZip(t, member{name: "u/_metadata.json", data: "null"}),
		"65 files":           makeZip(t, many...),
		"metadata over 1MiB": makeZip(t, member{name: "u/_metadata.json", data: `{"a":"` + strings.Repeat("x", 1<<20) + `"}`}),
		"data header 600MiB": makeZip(t, meta, member{name: "u/u", data: "x", size: 600 << 20}),
		"preview over 1MiB":  makeZip(t, meta, member{name: "u/preview/u", data: strings.Repeat("x", 1<<20+1)}),
		"size lies":          makeZip(t, meta, member{name: "u/u", data: "more than three", size: 3}),
	} {
		if got, err := journal.ReadBundle(bytes.NewReader(b), int64(len(b))); err == nil {
			t.Errorf("%s: ReadBundle = %+v, want an error", name, got)
		}
	}
}
