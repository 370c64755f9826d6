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
	for p, want := range map[string]bool{
		data:                                       true,
		filepath.Join(data, "packs"):               true,
		filepath.Join(data, "new", "dir"):          true, // not made yet
		filepath.Join(other, "link", "x"):          true, // through a link
		filepath.Join(other, "..", "data", "keys"): true,
		other:                         false,
		root:                          false,
		filepath.Join(root, "data2"):  false, // a prefix, not a parent
		filepath.Join(root, "..data"): false,
	} {
		if got := Inside(data, p); got != want {
			t.Errorf("Inside(%s, %s) = %v, want %v", data, p, got, want)
		}
	}
}
