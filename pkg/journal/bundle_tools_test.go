package journal_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// TestBundleMetadataKeysAreNames: Sugar installs a .xoj by handing its
// _metadata.json to the datastore, which writes each key as a file:
// open(os.path.join(metadata_path, key), 'w') (sugar-datastore
// carquinyol/metadatastore.py), with no check of the key. In the current
// layout a key is a file name and cannot hold '/', but an old-layout
// entry's metadata is a JSON object whose keys can be anything, and
// WriteBundle copies them into the bundle as they are. A bundle the school
// server makes (the restore page, xs-admin restore --xoj) must only carry
// keys that can be metadata file names, or opening it on an XO writes
// outside the Journal.
func TestBundleMetadataKeysAreNames(t *testing.T) {
	fsys := fstest.MapFS{
		"store/old1": {Data: []byte("document")},
		"store/old1.metadata": {Data: []byte(`{"title": "homework",
			"../../../../../../home/olpc/.bashrc": "echo owned",
			"/home/olpc/.profile": "echo owned",
			"..": "x", ".": "y", "a\u0000b": "z", "": "empty"}`)},
	}
	ents, err := journal.Read(fsys)
	if err != nil || len(ents) != 1 {
		t.Fatalf("%v %v", ents, err)
	}
	var buf bytes.Buffer
	if err := journal.WriteBundle(&buf, fsys, ents[0]); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open("old1/_metadata.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	var meta map[string]any
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if meta["title"] != "homework" {
		t.Errorf("title lost: %s", b)
	}
	for k := range meta {
		base, _, _ := strings.Cut(k, ":") // Sugar cuts "title:text" to "title"
		if base == "" || base == "." || base == ".." || strings.ContainsAny(base, "/\x00") {
			t.Errorf("the bundle carries metadata key %q: Sugar opens os.path.join(metadata_path, %q) for writing", k, base)
		}
	}
}

// TestBundleOtherTools: a bundle of an entry with an odd uid (not ASCII,
// spaces, a leading dash, '#', a percent escape), no time and an empty data
// file passes `unzip -t`, extracts with unzip only under its uid directory,
// and Python's zipfile (what Sugar reads it with) finds it sound.
func TestBundleOtherTools(t *testing.T) {
	unzip, err := exec.LookPath("unzip")
	if err != nil {
		t.Skip("no unzip here")
	}
	py, _ := exec.LookPath("python3")
	for _, uid := range []string{"ñandú dibujo", "-rf", "notes#1", "%2e%2e", "ab:c", "e1000000-0000-4000-8000-000000000001"} {
		fsys := fstest.MapFS{
			"store/" + uid:               {Data: nil},
			"store/" + uid + ".metadata": {Data: []byte(`{"title": "x"}`)},
			"store/preview/" + uid:       {Data: pngBytes},
		}
		ents, err := journal.Read(fsys)
		if err != nil || len(ents) != 1 {
			t.Fatalf("%q: %v %v", uid, ents, err)
		}
		var buf bytes.Buffer
		if err := journal.WriteBundle(&buf, fsys, ents[0]); err != nil {
			t.Fatalf("%q: %v", uid, err)
		}
		dir := t.TempDir()
		xoj := filepath.Join(dir, "e.xoj")
		os.WriteFile(xoj, buf.Bytes(), 0o644)
		if out, err := exec.Command(unzip, "-t", xoj).CombinedOutput(); err != nil {
			t.Errorf("%q: unzip -t: %v\n%s", uid, err, out)
		}
		into := filepath.Join(dir, "into")
		if out, err := exec.Command(unzip, "-q", xoj, "-d", into).CombinedOutput(); err != nil {
			t.Errorf("%q: unzip: %v\n%s", uid, err, out)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 2 {
			t.Errorf("%q: unzip wrote next to its directory: %v", uid, ents)
		}
		for _, p := range []string{"_metadata.json", uid, "preview/" + uid} {
			if _, err := os.Stat(filepath.Join(into, uid, filepath.FromSlash(p))); err != nil {
				t.Errorf("%q: %s not extracted: %v", uid, p, err)
			}
		}
		if py != "" {
			script := `import sys, zipfile, json
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
names = z.namelist()
base = names[0].split('/')[0]
assert all(n.startswith(base + '/') for n in names), names
json.loads(z.read(base + '/_metadata.json'))
print(base)`
			out, err := exec.Command(py, "-c", script, xoj).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != uid {
				t.Errorf("%q: python zipfile: %v\n%s", uid, err, out)
			}
		}
	}
}
