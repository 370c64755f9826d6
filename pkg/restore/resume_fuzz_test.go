package restore

import (
	"io/fs"
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
		done := parseResume(b, head)
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
