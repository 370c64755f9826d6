package blob_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// A Ref names a blob by its type and the BLAKE3-256 of its uncompressed
// bytes. The same bytes as a chunk and as a tree are two different blobs.
func ExampleRef() {
	data := []byte("Roses are red\n")
	asChunk := blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}
	asTree := blob.Ref{Type: blob.Tree, ID: chunk.Sum(data)}

	fmt.Println(asChunk)
	fmt.Println("short:", asChunk.ID.Short())
	fmt.Println("same blob as the tree:", asChunk == asTree)

	// The String form's hex part parses back into the ID.
	id, err := chunk.ParseID(asChunk.ID.String())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("parsed back:", id == asChunk.ID)
	// Output:
	// chunk:b4321137785534b27737c9f596bbadc9066496d48fdb9d6548b149b464f52b72
	// short: b43211377855
	// same blob as the tree: false
	// parsed back: true
}

// Type values travel on the wire and sit on disk: check them with Valid
// before trusting one read from outside.
func ExampleType_Valid() {
	for _, t := range []blob.Type{blob.Chunk, blob.Tree, blob.Type(7)} {
		fmt.Printf("%d %s valid=%v\n", uint8(t), t, t.Valid())
	}
	// Output:
	// 1 chunk valid=true
	// 2 tree valid=true
	// 7 type(7) valid=false
}

// A Blob is what a backup uploads (backup.Target.Put): the Ref of the raw
// bytes and their stored form, compressed when that pays. The receiver
// decompresses and checks the hash before it keeps it.
func ExampleBlob() {
	codec, err := chunk.NewCodec()
	if err != nil {
		log.Fatal(err)
	}
	defer codec.Close()

	raw := bytes.Repeat([]byte("My holidays. "), 100)
	data, compressed := codec.Compress(nil, raw)
	b := blob.Blob{
		Ref:        blob.Ref{Type: blob.Chunk, ID: chunk.Sum(raw)},
		Data:       data,
		Compressed: compressed,
		RawLen:     len(raw),
	}
	fmt.Println("compressed:", b.Compressed, "smaller:", len(b.Data) < b.RawLen)

	// The receiving side.
	got := b.Data
	if b.Compressed {
		if got, err = codec.Decompress(nil, b.Data, b.RawLen); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("hash verifies:", chunk.Sum(got) == b.ID)
	// Output:
	// compressed: true smaller: true
	// hash verifies: true
}
