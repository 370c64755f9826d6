package manifest_test

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// TestEncodedSizeIsWhatEncodeWrites: the size a tree will have, computed
// without encoding it (what a backup uses to leave out the files a tree
// cannot hold), is the size of its encoding, for every kind of entry and
// varint length.
func TestEncodedSizeIsWhatEncodeWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		tr := &manifest.Tree{}
		for i := 0; i < r.IntN(40); i++ {
			e := manifest.Entry{Name: fmt.Sprintf("entry-%03d-%d", i, r.Uint64()),
				Mode: fs.FileMode(r.IntN(1 << 9)), MTime: r.Int64N(1<<62) - 1<<61}
			switch r.IntN(3) {
			case 0:
				e.Type = manifest.File
				if n := r.IntN(300); n > 0 {
					e.Size = int64(n) * int64(1+r.IntN(1<<20))
					for j := 0; j < n; j++ {
						e.Chunks = append(e.Chunks, chunk.Sum([]byte{byte(j), byte(i)}))
					}
				}
			case 1:
				e.Type, e.Subtree = manifest.Dir, chunk.Sum([]byte{byte(i)})
			default:
				e.Type, e.Target = manifest.Symlink, fmt.Sprintf("../target/%d", r.Uint64())
			}
			tr.Entries = append(tr.Entries, e)
		}
		tr.Sort()
		b, err := manifest.Encode(tr)
		if err != nil {
			t.Fatal(err)
		}
		if got := manifest.EncodedSize(tr); got != len(b) {
			t.Fatalf("round %d: EncodedSize %d, Encode wrote %d bytes", round, got, len(b))
		}
	}
}
