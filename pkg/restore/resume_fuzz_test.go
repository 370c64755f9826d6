package restore

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// FuzzParseResume: whatever a progress file holds, parsing never panics,
// trusts nothing without its header, and lists only valid relative paths.
func FuzzParseResume(f *testing.F) {
	head := resumeHeader(chunk.ID{1}, "/home/olpc/.sugar/default/datastore")
	f.Add([]byte(head + "12 34 1700000000000000000 1700000000000000001 \"a/b\"\n"))
	f.Add([]byte(head + "12 34 1 1 \"../x\"\n1 2 3 4 \"c\"\n"))
	f.Add([]byte(head + "12 34 1 1 \"a\nb\"\n"))
	f.Add([]byte("12 34 1 1 \"a\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		done, good := parseResume(b, head)
		if good > len(b) || len(done) > 0 && good <= len(head) {
			t.Fatalf("%d entries in %d whole bytes of %d", len(done), good, len(b))
		}
		if len(done) > 0 && !strings.HasPrefix(string(b), head) {
			t.Fatalf("trusted %d entries without the header", len(done))
		}
		for p := range done {
			if !fs.ValidPath(p) || p == "." {
				t.Fatalf("listed %q", p)
			}
		}
	})
}

// A progress file whose last line was torn (a power cut in the middle of a
// write): what a later run adds after it is still read by the run after.
func TestResumeTornLineIsCutOff(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.Mkdir(target, 0o755)
	os.WriteFile(filepath.Join(target, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(target, "b"), []byte("b"), 0o644)
	name := filepath.Join(dir, "progress")
	root := chunk.ID{7}
	abs, _ := filepath.Abs(target)
	os.WriteFile(name, []byte(resumeHeader(root, abs)+"1 1 1 1 \"a\"\n12 34 5"), 0o600)
	l, err := openResume(name, root, target)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.done) != 1 {
		t.Fatalf("%d entries read", len(l.done))
	}
	r, _ := os.OpenRoot(target)
	defer r.Close()
	l.record(r, "b", "b")
	l.close(false)
	b, _ := os.ReadFile(name)
	if done, _ := parseResume(b, resumeHeader(root, abs)); len(done) != 2 {
		t.Fatalf("after the torn line, the next run's entry is lost: %d entries in %q", len(done), b)
	}
}
