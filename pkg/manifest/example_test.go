package manifest_test

import (
	"fmt"
	"log"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

func ExampleEncode() {
	// Chunks and subtrees are named by the hash of their bytes.
	drawing := []byte("a child's drawing")
	sub, err := manifest.Encode(&manifest.Tree{}) // an empty directory
	if err != nil {
		log.Fatal(err)
	}

	t := &manifest.Tree{Entries: []manifest.Entry{
		{Name: "metadata", Type: manifest.Dir, Mode: 0o755, Subtree: chunk.Sum(sub)},
		{Name: "data", Type: manifest.File, Mode: 0o644, Size: int64(len(drawing)), Chunks: []chunk.ID{chunk.Sum(drawing)}},
		{Name: "latest", Type: manifest.Symlink, Mode: 0o777, Target: "data"},
	}}
	t.Sort() // Encode requires entries in name order
	enc, err := manifest.Encode(t)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("encoded %d bytes; the tree's ID is chunk.Sum of them\n", len(enc))

	back, err := manifest.Decode(enc)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range back.Entries {
		fmt.Printf("%-8s %-7v %v size=%d chunks=%d target=%q\n", e.Name, e.Type, e.Mode, e.Size, len(e.Chunks), e.Target)
	}
	// Output:
	// encoded 111 bytes; the tree's ID is chunk.Sum of them
	// data     file    -rw-r--r-- size=17 chunks=1 target=""
	// latest   symlink -rwxrwxrwx size=0 chunks=0 target="data"
	// metadata dir     -rwxr-xr-x size=0 chunks=0 target=""
}
