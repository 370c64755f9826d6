package journal_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// TestRequestReindexRemovesSugarsMarks: the layout version and the
// index flag go, the entries and Sugar's index directory stay; an entry
// without a metadata directory gets an empty one (Sugar's rebuild deletes
// an entry whose metadata it cannot read, document and all); run again
// it is no error; a directory named like a flag is an error, not skipped;
// a Journal on Sugar 0.82's layout is left as it is; a missing or
// non-directory Journal is an error. A folder is a datastore only with
// Sugar's checksums directory and its index or version file.
func TestRequestReindexRemovesSugarsMarks(t *testing.T) {
	const a, b = "3f/3f9c0000-0000-0000-0000-000000000000", "4a/4a000000-0000-0000-0000-000000000000"
	files := map[string]string{
		"version": "6", "index_updated": "", "ds_clean": "", "index/postlist.glass": "x", "checksums/queue/x": "",
		"checksums/0123456789abcdef0123456789abcdef/" + a[3:]: "",
		a + "/data": "a drawing", a + "/metadata/title": "Drawing",
		b + "/data":            "its metadata left out as damaged",
		"ab/not-an-entry/data": "x", // not XX/<uid> with XX == uid[:2]
	}
	dir := t.TempDir()
	writeFiles(t, dir, files)
	if !journal.IsDatastore(dir) {
		t.Fatal("a datastore Sugar ran in is not recognised")
	}
	for range 2 {
		if err := journal.RequestReindex(dir); err != nil {
			t.Fatal(err)
		}
	}
	for name := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		gone := name == "version" || name == "index_updated" || strings.HasPrefix(name, "checksums/0123")
		if gone && err == nil {
			t.Errorf("%s is still there: Sugar would keep its old index", name)
		}
		if !gone && err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, b, "metadata")); err != nil || !fi.IsDir() {
		t.Errorf("the entry without metadata got no metadata directory (%v): Sugar's rebuild deletes it", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ab/not-an-entry/metadata")); err == nil {
		t.Error("a directory that is no entry got a metadata directory")
	}

	odd := t.TempDir()
	writeFiles(t, odd, map[string]string{"version/x": "", "checksums/queue/x": ""})
	if err := journal.RequestReindex(odd); err == nil {
		t.Error("a directory named version was taken for Sugar's flag")
	}

	old := t.TempDir()
	oldFiles := map[string]string{"store/0a1b.metadata": `{"title": "Cuento"}`, "store/0a1b": "había una vez", "version": "6", "index_updated": ""}
	writeFiles(t, old, oldFiles)
	if err := journal.RequestReindex(old); !errors.Is(err, journal.ErrOldLayout) {
		t.Errorf("a Journal on Sugar 0.82's layout: %v, want ErrOldLayout", err)
	}
	for name := range oldFiles {
		if _, err := os.Stat(filepath.Join(old, name)); err != nil {
			t.Errorf("%s of a Journal on the old layout: %v", name, err)
		}
	}

	for name, fs := range map[string]map[string]string{
		"a project folder with an index": {"index/a.html": "x", "version": "2"},
		"a restored copy of a Journal":   {"version": "6", a + "/data": "x"},
	} {
		d := t.TempDir()
		writeFiles(t, d, fs)
		if journal.IsDatastore(d) {
			t.Errorf("%s counted as a datastore", name)
		}
	}
	if err := journal.RequestReindex(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing Journal is no error")
	}
	if err := journal.RequestReindex(filepath.Join(dir, a, "data")); err == nil {
		t.Error("a file taken for a Journal")
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func ExampleRequestReindex() {
	dir, _ := os.MkdirTemp("", "datastore")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "version"), []byte("6"), 0o644)
	os.WriteFile(filepath.Join(dir, "index_updated"), nil, 0o644)
	// ... entries restored into dir ...
	if err := journal.RequestReindex(dir); err != nil {
		panic(err)
	}
	_, err := os.Stat(filepath.Join(dir, "version"))
	fmt.Println("Sugar rebuilds its index at its next start:", os.IsNotExist(err))
	// Output: Sugar rebuilds its index at its next start: true
}
