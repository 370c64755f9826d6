// Package blob is the vocabulary the client, the wire protocol and the store
// share: a blob is a content-addressed piece of a backup, either a chunk of a
// file or an encoded manifest tree. It has no dependencies beyond pkg/chunk,
// so the laptop client links it without the server's store.
package blob

import (
	"fmt"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// Type says what a blob holds. The values are stored on disk and sent on the
// wire: never renumber them.
type Type uint8

// Blob types.
const (
	Chunk Type = 1 // a piece of a file's content
	Tree  Type = 2 // an encoded manifest.Tree (one directory)
)

func (t Type) String() string {
	switch t {
	case Chunk:
		return "chunk"
	case Tree:
		return "tree"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t == Chunk || t == Tree }

// Ref names a blob: its type and the BLAKE3-256 of its uncompressed bytes.
// Chunks and trees live in separate name spaces, so a file whose bytes happen
// to equal a tree's encoding never collides with it.
type Ref struct {
	Type Type
	ID   chunk.ID
}

func (r Ref) String() string { return r.Type.String() + ":" + r.ID.String() }

// Blob is a blob's stored form, as uploaded.
type Blob struct {
	Ref
	// Data is the stored form: a zstd frame if Compressed, else the raw bytes.
	Data       []byte
	Compressed bool
	// RawLen is the uncompressed length.
	RawLen int
}

// ErrNotHeld is returned by a commit that references a blob the user does not
// hold: never uploaded by them, or no longer on the server. A client that
// trusted a local cache should forget it and back up again from scratch.
var ErrNotHeld = errkind.ErrNotHeld

// ErrDamaged is returned for a blob whose stored bytes fail their checksum or
// hash. A restore skips the files that use it and restores the rest.
var ErrDamaged = errkind.ErrDamaged
