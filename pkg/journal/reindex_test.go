package journal_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// TestRequestReindexRemovesSugarsMarks: the layout version and the
// index flag go, the entries and Sugar's index directory stay; run again
// (nothing left to remove) it is no error; a directory named like a flag
// is not Sugar's and stays; a missing or non-directory Journal is an error.
func TestRequestReindexRemovesSugarsMarks(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"version":              "6",
		"index_updated":        "",
		"ds_clean":             "",
		"index/postlist.glass": "x",
		"3f/3f9c0000-0000-0000-0000-000000000000/data":           "a drawing",
		"3f/3f9c0000-0000-0000-0000-000000000000/metadata/title": "Drawing",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !journal.IsDatastore(dir) {
		t.Fatal("a datastore with Sugar's index is not recognised")
	}
	for range 2 {
		if err := journal.RequestReindex(dir); err != nil {
			t.Fatal(err)
		}
	}
	for name := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		gone := name == "version" || name == "index_updated"
		if gone && err == nil {
			t.Errorf("%s is still there: Sugar would keep its old index", name)
		}
		if !gone && err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	odd := t.TempDir()
	if err := os.Mkdir(filepath.Join(odd, "version"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := journal.RequestReindex(odd); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(odd, "version")); err != nil || !fi.IsDir() {
		t.Errorf("a directory named version was removed: %v", err)
	}
	if journal.IsDatastore(odd) {
		t.Error("a directory without Sugar's index counted as a datastore")
	}

	if err := journal.RequestReindex(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing Journal is no error")
	}
	if err := journal.RequestReindex(filepath.Join(dir, "3f/3f9c0000-0000-0000-0000-000000000000/data")); err == nil {
		t.Error("a file taken for a Journal")
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
