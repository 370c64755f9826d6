package pathutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInside(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	other := filepath.Join(root, "other")
	for _, d := range []string{data, other, filepath.Join(data, "packs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(data, filepath.Join(other, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(data, "packs"), filepath.Join(other, "plink")); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		data:                                       true,
		filepath.Join(data, "packs"):               true,
		filepath.Join(data, "new", "dir"):          true, // not made yet
		filepath.Join(other, "link", "x"):          true, // through a link
		filepath.Join(other, "..", "data", "keys"): true,
		other:                                     false,
		root:                                      false,
		filepath.Join(root, "data2"):              false, // a prefix, not a parent
		filepath.Join(root, "..data"):             false,
		filepath.Join(data, "packs", "..", "k"):   true,
		filepath.Join(other, "plink") + "/..":     true, // the kernel's "..": the link's target's parent
		filepath.Join(other, "plink") + "/../new": true,
	} {
		if got := Inside(data, p); got != want {
			t.Errorf("Inside(%s, %s) = %v, want %v", data, p, got, want)
		}
	}
}

// TestOverlap: a destination that holds the directory (a restore of a
// manifest naming "xs-backup/server.key" into /library) overlaps it as
// much as one inside it; a sibling does not.
func TestOverlap(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "library", "xs-backup")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		filepath.Join(root, "library"): true,
		root:                           true,
		"/":                            true,
		filepath.Join(data, "x"):       true,
		filepath.Join(root, "usb"):     false,
	} {
		if got := Overlap(data, p); got != want {
			t.Errorf("Overlap(%s, %s) = %v, want %v", data, p, got, want)
		}
	}
}

// TestInsideRelativeThroughALink: a relative destination given from a
// working directory reached through a link is judged where it really is.
func TestInsideRelativeThroughALink(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(data, "packs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(data, "packs"), filepath.Join(root, "l")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(root, "l"))
	if !Inside(data, "..") || !Inside(data, "../restored") {
		t.Error(`".." from inside a link to data/packs is not taken for data`)
	}
}
