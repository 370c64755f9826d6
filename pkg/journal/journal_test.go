package journal_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/journal"
)

// start is the time journalgen gives its first entry; entry i is i hours later.
var start = time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)

// pngBytes is a stand-in preview.
var pngBytes = append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 300)...)

func generate(t testing.TB, seed uint64) (string, []journalgen.Entry) {
	t.Helper()
	dir := t.TempDir()
	ents, err := journalgen.Generate(dir, journalgen.Small(seed))
	if err != nil {
		t.Fatal(err)
	}
	return dir, ents
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func byUID(ents []journal.Entry) map[string]journal.Entry {
	m := map[string]journal.Entry{}
	for _, e := range ents {
		m[e.UID] = e
	}
	return m
}

func TestReadGenerated(t *testing.T) {
	dir, gen := generate(t, 7)
	// Things a real datastore holds besides entries.
	write(t, filepath.Join(dir, "checksums", "ab", "cd"), []byte("x"))
	write(t, filepath.Join(dir, "index_updated"), nil)
	write(t, filepath.Join(dir, "ds_clean"), nil)
	write(t, filepath.Join(dir, "zz", "ab-not-an-entry", "data"), []byte("x"))
	write(t, filepath.Join(dir, "zz", "zz-a-file"), []byte("x"))
	write(t, filepath.Join(dir, "ab"), nil) // a file, not a prefix directory
	write(t, filepath.Join(dir, ".tmpXYZ"), []byte("x"))

	fsys := os.DirFS(dir)
	ents, err := journal.Read(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(gen) {
		t.Fatalf("Read found %d entries, want %d", len(ents), len(gen))
	}
	got := byUID(ents)
	for i, g := range gen {
		e, ok := got[g.UID]
		if !ok {
			t.Fatalf("entry %s (%q) missing", g.UID, g.Title)
		}
		want := start.Add(time.Duration(i) * time.Hour)
		if e.Title != g.Title || e.Activity != g.Activity || e.MimeType != g.Mime || !e.Time.Equal(want) ||
			e.Size != int64(len(g.Data)) || e.Layout != journal.LayoutCurrent || e.Problems != nil {
			t.Errorf("entry %d = %+v, want title %q activity %q mime %q time %v size %d",
				i, e, g.Title, g.Activity, g.Mime, want, len(g.Data))
		}
		if e.Metadata["title"] != g.Title || e.Metadata["filesize"] == "" || e.PreviewPath != "" {
			t.Errorf("entry %d: metadata %v, preview %q", i, e.Metadata, e.PreviewPath)
		}
		if e.DataPath != g.UID[:2]+"/"+g.UID+"/data" {
			t.Errorf("entry %d: DataPath %q", i, e.DataPath)
		}
		b, err := fs.ReadFile(fsys, e.DataPath)
		if err != nil || !bytes.Equal(b, g.Data) {
			t.Errorf("entry %d: data through DataPath differs (err %v)", i, err)
		}
		l, err := journal.Lookup(fsys, g.UID)
		if err != nil || l.Title != g.Title || l.DataPath != e.DataPath {
			t.Errorf("Lookup(%s) = %+v, %v", g.UID, l, err)
		}
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Time.After(ents[i-1].Time) {
			t.Fatalf("not newest first at %d: %v after %v", i, ents[i].Time, ents[i-1].Time)
		}
	}
	if !ents[0].Time.Equal(start.Add(time.Duration(len(gen)-1) * time.Hour)) {
		t.Errorf("first entry is %v, want the newest", ents[0].Time)
	}
}

func TestLookupMissing(t *testing.T) {
	dir, _ := generate(t, 1)
	for _, uid := range []string{"0123456789", "", ".", "..", "../x", "index", "version", "store", "a", "in/dex"} {
		if _, err := journal.Lookup(os.DirFS(dir), uid); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lookup(%q) error %v, want fs.ErrNotExist", uid, err)
		}
	}
}

func TestReadRoot(t *testing.T) {
	if _, err := journal.Read(os.DirFS(filepath.Join(t.TempDir(), "missing"))); err == nil {
		t.Error("Read of a missing root succeeded")
	}
	ents, err := journal.Read(fstest.MapFS{})
	if err != nil || len(ents) != 0 {
		t.Errorf("Read of an empty datastore = %v, %v", ents, err)
	}
	// A root that is a file cannot be listed.
	if _, err := journal.Read(fstest.MapFS{".": {Data: []byte("x")}}); err == nil {
		t.Error("Read of a file root succeeded")
	}
}

func TestReadOldLayout(t *testing.T) {
	fsys := fstest.MapFS{
		"store/uid-json":                {Data: []byte("hello")},
		"store/uid-json.metadata":       {Data: []byte(`{"title": "Mi cuento", "activity": "org.laptop.AbiWordActivity", "mime_type": "text/plain", "timestamp": 1200000000, "keep": 1, "fraction": -1.5e3, "buddies": {"a": 1}, "list": [1], "flag": true, "none": null, "preview": "abc"}`)},
		"store/preview/uid-json":        {Data: pngBytes},
		"store/uid-nometa":              {Data: []byte("data without metadata")},
		"store/uid-bad":                 {Data: []byte("data")},
		"store/uid-bad.metadata":        {Data: []byte(`{"title": "Broken`)},
		"store/uid-null.metadata":       {Data: []byte(`null`)},
		"store/uid-array.metadata":      {Data: []byte(`["title"]`)},
		"store/uid-only-meta.metadata":  {Data: []byte(`{"title": "No file", "timestamp": "1725177600.5"}`)},
		"store/uid-mtime.metadata":      {Data: []byte(`{"title": "", "mtime": "2008-06-17T14:41:36.470311", "timestamp": "soon"}`)},
		"store/uid-big.metadata":        {Data: []byte(`{"title": "` + strings.Repeat("x", 1<<20) + `"}`)},
		"store/uid-bigvalue.metadata":   {Data: []byte(`{"title": "Big", "description": "` + strings.Repeat("x", 513<<10) + `"}`)},
		"store/preview/uid-nometa":      {Data: bytes.Repeat([]byte{1}, 1<<20+1)}, // too large
		"store/sub/not-an-entry":        {Data: []byte("x")},
		"ab/abcdef/data":                {Data: []byte("current")},
		"ab/abcdef/metadata/title":      {Data: []byte("Current one")},
		"ab/abcdef/metadata/timestamp":  {Data: []byte("1300000000")},
		"ab/abcdef/metadata/mime_type":  {Data: []byte("text/plain")},
		"ab/abcdef/metadata/activity":   {Data: []byte("org.laptop.TurtleArtActivity")},
		"ab/abcdef/metadata/preview":    {Data: pngBytes},
		"ab/abcdef/metadata/icon-color": {Data: []byte("#FF0000,#00FF00")},
	}
	ents, err := journal.Read(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, e := range ents {
		uids = append(uids, e.UID)
	}
	want := "uid-only-meta abcdef uid-mtime uid-json uid-array uid-bad uid-big uid-bigvalue uid-nometa uid-null"
	if strings.Join(uids, " ") != want {
		t.Fatalf("Read order\n%s\nwant\n%s", strings.Join(uids, " "), want)
	}
	m := byUID(ents)

	e := m["uid-json"]
	if e.Title != "Mi cuento" || e.Activity != "org.laptop.AbiWordActivity" || e.MimeType != "text/plain" ||
		!e.Time.Equal(time.Unix(1200000000, 0)) || e.Size != 5 || e.DataPath != "store/uid-json" ||
		e.PreviewPath != "store/preview/uid-json" || e.Layout != journal.LayoutOld || e.Problems != nil {
		t.Errorf("uid-json = %+v", e)
	}
	if e.Metadata["keep"] != "1" || e.Metadata["fraction"] != "-1.5e3" || e.Metadata["timestamp"] != "1200000000" {
		t.Errorf("uid-json numbers = %v", e.Metadata)
	}
	for _, k := range []string{"buddies", "list", "flag", "none", "preview"} {
		if _, ok := e.Metadata[k]; ok {
			t.Errorf("uid-json: %q kept in metadata", k)
		}
	}

	for _, uid := range []string{"uid-nometa", "uid-bad", "uid-null", "uid-array", "uid-big"} {
		e := m[uid]
		if e.Title != uid || len(e.Problems) == 0 || e.Metadata == nil || !e.Time.IsZero() {
			t.Errorf("%s = %+v, want a listed damaged entry", uid, e)
		}
	}
	if e := m["uid-nometa"]; e.Size != int64(len("data without metadata")) || e.PreviewPath != "" || len(e.Problems) != 2 {
		t.Errorf("uid-nometa = %+v", e)
	}
	if e := m["uid-only-meta"]; e.Size != -1 || e.DataPath != "" || e.Title != "No file" ||
		!e.Time.Equal(time.Unix(1725177600, 5e8)) || e.Problems != nil {
		t.Errorf("uid-only-meta = %+v", e)
	}
	if e := m["uid-mtime"]; e.Title != "uid-mtime" || !e.Time.Equal(time.Date(2008, 6, 17, 14, 41, 36, 470311000, time.UTC)) ||
		len(e.Problems) != 1 || !strings.Contains(e.Problems[0], "timestamp") {
		t.Errorf("uid-mtime = %+v", e)
	}
	if e := m["uid-bigvalue"]; e.Title != "Big" || len(e.Problems) != 1 || e.Metadata["description"] != "" {
		t.Errorf("uid-bigvalue = %+v", e)
	}
	if e := m["abcdef"]; e.Title != "Current one" || e.PreviewPath != "ab/abcdef/metadata/preview" ||
		e.Metadata["icon-color"] != "#FF0000,#00FF00" || e.Metadata["preview"] != "" || e.Layout != journal.LayoutCurrent {
		t.Errorf("abcdef = %+v", e)
	}

	l, err := journal.Lookup(fsys, "uid-bad")
	if err != nil || l.Layout != journal.LayoutOld || l.Title != "uid-bad" || len(l.Problems) == 0 {
		t.Errorf("Lookup(uid-bad) = %+v, %v", l, err)
	}
	for _, uid := range []string{"uid-bad.metadata", "preview", "sub"} {
		if _, err := journal.Lookup(fsys, uid); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lookup(%q) error %v, want fs.ErrNotExist", uid, err)
		}
	}
}

func TestReadDamagedCurrent(t *testing.T) {
	dir, gen := generate(t, 3)
	path := func(i int, elem ...string) string {
		return filepath.Join(append([]string{dir, gen[i].UID[:2], gen[i].UID}, elem...)...)
	}
	rm := func(p string) {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	rm(path(0, "metadata"))                                                    // 0: no metadata
	write(t, path(1, "metadata", "timestamp"), []byte("yesterday"))            // 1: timestamp unreadable, mtime is there
	write(t, path(2, "metadata", "title"), bytes.Repeat([]byte("é"), 257<<10)) // 2: title over 512 KiB
	rm(path(3, "metadata"))                                                    // 3: metadata is a file
	write(t, path(3, "metadata"), []byte("title=x"))
	rm(path(4, "data"))                                                       // 4: no data file
	write(t, path(5, "metadata", "description"), []byte{0xff, 0xfe, 0})       // 5: binary value
	write(t, path(6, "metadata", "preview"), pngBytes)                        // 6: preview
	write(t, path(7, "metadata", "preview"), make([]byte, 1<<20+1))           // 7: preview too large
	write(t, path(8, "metadata", "timestamp"), []byte("1725177600.5"))        // 8: fractional timestamp
	write(t, path(9, "metadata", "timestamp"), []byte("1e300"))               // 9: timestamp out of range
	rm(path(9, "metadata", "mtime"))                                          //    and no mtime
	write(t, path(10, "metadata", "title"), []byte("  \n"))                   // 10: blank title
	rm(path(11, "data"))                                                      // 11: data is a directory
	write(t, path(11, "data", "x"), []byte("x"))                              //
	write(t, filepath.Join(dir, "zz", "zz-no-metadata", "data"), []byte("x")) // entry with only data

	ents, err := journal.Read(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(gen)+1 {
		t.Fatalf("Read found %d entries, want %d", len(ents), len(gen)+1)
	}
	m := byUID(ents)
	e := func(i int) journal.Entry { return m[gen[i].UID] }
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Hour) }

	for _, i := range []int{0, 3} {
		if e := e(i); e.Title != gen[i].UID || len(e.Problems) != 1 || !strings.Contains(e.Problems[0], "metadata") ||
			e.Size != int64(len(gen[i].Data)) || !e.Time.IsZero() || len(e.Metadata) != 0 {
			t.Errorf("entry %d = %+v", i, e)
		}
	}
	if e := e(1); e.Title != gen[1].Title || !e.Time.Equal(at(1)) || len(e.Problems) != 1 {
		t.Errorf("entry 1 = %+v", e)
	}
	if e := e(2); e.Title != gen[2].UID || e.Activity != gen[2].Activity || len(e.Problems) != 1 || !strings.Contains(e.Problems[0], "title") {
		t.Errorf("entry 2 = %+v", e)
	}
	if e := e(4); e.Size != -1 || e.DataPath != "" || e.Title != gen[4].Title || e.Problems != nil {
		t.Errorf("entry 4 = %+v", e)
	}
	if e := e(5); e.Metadata["description"] != "" || len(e.Problems) != 1 || e.Title != gen[5].Title {
		t.Errorf("entry 5 = %+v", e)
	}
	if e := e(6); e.PreviewPath != gen[6].UID[:2]+"/"+gen[6].UID+"/metadata/preview" || e.Problems != nil {
		t.Errorf("entry 6 = %+v", e)
	}
	if e := e(7); e.PreviewPath != "" || len(e.Problems) != 1 {
		t.Errorf("entry 7 = %+v", e)
	}
	if e := e(8); !e.Time.Equal(time.Unix(1725177600, 5e8)) || e.Problems != nil {
		t.Errorf("entry 8 = %+v", e)
	}
	if e := e(9); !e.Time.IsZero() || len(e.Problems) != 1 {
		t.Errorf("entry 9 = %+v", e)
	}
	if e := e(10); e.Title != gen[10].UID || e.Problems != nil {
		t.Errorf("entry 10 = %+v", e)
	}
	if e := e(11); e.Size != -1 || e.DataPath != "" || len(e.Problems) != 1 {
		t.Errorf("entry 11 = %+v", e)
	}
	if e := m["zz-no-metadata"]; e.Title != "zz-no-metadata" || e.Size != 1 || len(e.Problems) != 1 {
		t.Errorf("zz-no-metadata = %+v", e)
	}
	// Entries without a time come last, by UID.
	n := len(ents)
	var last []string
	for _, e := range ents[n-4:] {
		if !e.Time.IsZero() {
			t.Errorf("entry %s with time %v among the last", e.UID, e.Time)
		}
		last = append(last, e.UID)
	}
	for i := 1; i < len(last); i++ {
		if last[i] < last[i-1] {
			t.Errorf("entries without time not by UID: %v", last)
		}
	}
}

func TestMatch(t *testing.T) {
	ents := []journal.Entry{
		{UID: "u1", Title: "Mi dibujo 1"},
		{UID: "u2", Title: "Рисунок 2"},
		{UID: "u3", Title: "Canción 3"},
		{UID: "u4", Title: "我的画 4"},
		{UID: "u5", Title: "Straße 5"},
		{UID: "u6", Title: "ΣΟΦΙΑ 6"},
	}
	uids := func(es []journal.Entry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.UID)
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct {
		uids, titles []string
		want         string
	}{
		{nil, nil, ""},
		{[]string{"u4", "nope"}, nil, "u4"},
		{nil, []string{"MI DIBUJO"}, "u1"},
		{nil, []string{"рисунок"}, "u2"},
		{nil, []string{"CANCIÓN"}, "u3"},
		{nil, []string{"的画"}, "u4"},
		{nil, []string{"STRASSE"}, ""}, // simple folding only
		{nil, []string{"STRAßE"}, "u5"},
		{nil, []string{"σοφια"}, "u6"},
		{nil, []string{""}, ""},
		{[]string{"u1"}, []string{"dibujo", " "}, "u1 u2 u3 u4 u5 u6"},
		{[]string{"u3"}, []string{"1", "3"}, "u1 u3"},
	} {
		if got := uids(journal.Match(ents, c.uids, c.titles)); got != c.want {
			t.Errorf("Match(%q, %q) = %q, want %q", c.uids, c.titles, got, c.want)
		}
	}
}

func TestActivityName(t *testing.T) {
	for id, want := range map[string]string{
		"org.laptop.TurtleArtActivity":  "TurtleArt",
		"org.laptop.AbiWordActivity":    "Write",
		"org.laptop.Oficina":            "Paint",
		"org.laptop.WebActivity":        "Browse",
		"org.laptop.sugar.ReadActivity": "Read",
		"org.laptop.RecordActivity":     "Record",
		"org.laptop.Memorize":           "Memorize",
		"org.sugarlabs.Music":           "Music",
		"org.vpri.EtoysActivity":        "Etoys",
		"vu.lux.olpc.Speak":             "Speak",
		"org.example.FooActivity":       "Foo",
		"org.example.Activity":          "Activity",
		"Standalone":                    "Standalone",
		"org.laptop.Calculate\n":        "Calculate",
		"org.":                          "org",
		"":                              "",
	} {
		if got := journal.ActivityName(id); got != want {
			t.Errorf("ActivityName(%q) = %q, want %q", id, got, want)
		}
	}
}
