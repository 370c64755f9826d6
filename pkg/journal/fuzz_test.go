package journal_test

import (
	"bytes"
	"maps"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

func FuzzReadBundle(f *testing.F) {
	fsys := fstest.MapFS{
		"d": {Data: []byte("Había una vez una tortuga.")},
		"p": {Data: pngBytes},
	}
	meta := map[string]string{"title": "Mi cuento", "activity": "org.laptop.AbiWordActivity", "mime_type": "text/plain", "timestamp": "1725177600"}
	for _, e := range []journal.Entry{
		{UID: "1a2b3c4d-0000", Metadata: meta, DataPath: "d", PreviewPath: "p", MimeType: "text/plain"},
		{UID: "1a2b3c4d-0001", Metadata: meta, DataPath: "d", MimeType: "image/jpeg"},
		{UID: "u", Metadata: map[string]string{}},
	} {
		f.Add(bundle(f, fsys, e))
	}
	f.Add(makeZip(f, member{name: "u/_metadata.json", data: `{"a": 1, "b": [true], "preview": "x"}`}, member{name: "u/u", data: "x"}))
	f.Add(makeZip(f, member{name: "../_metadata.json", data: "{}"}))
	f.Add(makeZip(f, member{name: "u/_metadata.json", data: "{}"}, member{name: "u/u", data: "x", size: 600 << 20}))
	f.Add([]byte{})
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))

	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := journal.ReadBundle(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if b.UID == "" || strings.ContainsAny(b.UID, "/\\\x00") || strings.Contains(b.UID, "..") || b.Metadata == nil ||
			len(b.Data) > 512<<20 || len(b.Preview) > 1<<20 {
			t.Fatalf("ReadBundle accepted uid %q, metadata %v, %d data bytes, %d preview bytes", b.UID, b.Metadata, len(b.Data), len(b.Preview))
		}
		// What was read writes back the same.
		fsys := fstest.MapFS{}
		e := journal.Entry{UID: b.UID, Metadata: b.Metadata}
		if b.Data != nil {
			fsys["d"], e.DataPath = &fstest.MapFile{Data: b.Data}, "d"
		}
		if b.Preview != nil {
			fsys["p"], e.PreviewPath = &fstest.MapFile{Data: b.Preview}, "p"
		}
		var buf bytes.Buffer
		if err := journal.WriteBundle(&buf, fsys, e); err != nil {
			t.Fatalf("WriteBundle of a read bundle: %v", err)
		}
		b2, err := journal.ReadBundle(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("ReadBundle of a rewritten bundle: %v", err)
		}
		want := maps.Clone(b.Metadata)
		want["uid"] = b.UID
		if b2.UID != b.UID || !bytes.Equal(b2.Data, b.Data) || !bytes.Equal(b2.Preview, b.Preview) || !maps.Equal(b2.Metadata, want) {
			t.Fatalf("round trip changed the bundle: %+v, want %+v", b2, b)
		}
	})
}

func FuzzOldMetadata(f *testing.F) {
	for _, s := range []string{
		`{"title": "Mi cuento", "timestamp": 1200000000, "mtime": "2008-06-17T14:41:36.470311", "keep": 1}`,
		`{"title": "x", "timestamp": "1725177600.5", "buddies": {"a": [1, 2]}, "flag": true, "none": null}`,
		`{"title": 12, "timestamp": 1e400}`,
		`{"title": "\u0000\ud800"}`,
		`{"title": "Broken`,
		`null`, `[]`, `"string"`, ``, "\xff\xfe{}",
	} {
		f.Add([]byte(s))
	}
	const uid = "0123abcd-ef"
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{"store/" + uid: {Data: []byte("x")}, "store/" + uid + ".metadata": {Data: data}}
		ents, err := journal.Read(fsys)
		if err != nil || len(ents) != 1 {
			t.Fatalf("Read = %d entries, %v", len(ents), err)
		}
		e := ents[0]
		if e.UID != uid || e.Layout != journal.LayoutOld || e.Title == "" || e.Size != 1 || e.DataPath != "store/"+uid {
			t.Fatalf("entry = %+v", e)
		}
		checkName(t, journal.FileName(e))
		checkName(t, journal.BundleName(e))
		l, err := journal.Lookup(fsys, uid)
		if err != nil || l.Title != e.Title || !l.Time.Equal(e.Time) {
			t.Fatalf("Lookup = %+v, %v; Read gave %+v", l, err, e)
		}
	})
}

func FuzzMetadataValue(f *testing.F) {
	f.Add([]byte("Mi dibujo"), []byte("1725177600"))
	f.Add([]byte("我的画"), []byte("1725177600.5"))
	f.Add([]byte("Рисунок"), []byte("-1"))
	f.Add([]byte(""), []byte("NaN"))
	f.Add([]byte("../../etc/passwd"), []byte("1e300"))
	f.Add([]byte("\xff\x00"), []byte("0x10"))
	f.Add([]byte("   "), []byte(" 12 "))
	const uid = "ab12cd34-5678"
	f.Fuzz(func(t *testing.T, title, timestamp []byte) {
		dir := uid[:2] + "/" + uid
		fsys := fstest.MapFS{
			dir + "/data":               {Data: []byte("data")},
			dir + "/metadata/title":     {Data: title},
			dir + "/metadata/timestamp": {Data: timestamp},
			dir + "/metadata/mtime":     {Data: []byte("2026-09-01T08:00:00.000000")},
		}
		ents, err := journal.Read(fsys)
		if err != nil || len(ents) != 1 {
			t.Fatalf("Read = %d entries, %v", len(ents), err)
		}
		e := ents[0]
		wantTitle := string(title)
		if !utf8.Valid(title) || len(title) > 512<<10 || strings.TrimSpace(wantTitle) == "" {
			wantTitle = uid
		}
		if e.UID != uid || e.Title != wantTitle || e.Time.IsZero() || e.Size != 4 {
			t.Fatalf("entry = %+v, want title %q", e, wantTitle)
		}
		checkName(t, journal.FileName(e))
		checkName(t, journal.BundleName(e))
		if m := journal.Match(ents, nil, []string{e.Title}); len(m) != 1 {
			t.Fatalf("Match by its own title found %d entries", len(m))
		}
		var buf bytes.Buffer
		if err := journal.WriteBundle(&buf, fsys, e); err != nil {
			t.Fatal(err)
		}
		b, err := journal.ReadBundle(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil || string(b.Data) != "data" || b.Metadata["timestamp"] != e.Metadata["timestamp"] {
			t.Fatalf("bundle = %+v, %v", b, err)
		}
		if _, ok := e.Metadata["title"]; ok && b.Metadata["title"] != string(title) {
			t.Fatalf("bundle title %q, want %q", b.Metadata["title"], title)
		}
	})
}
