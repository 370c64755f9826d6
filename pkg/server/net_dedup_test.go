package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// TestCommitRefusalSaysNothingOfOthers: Need answers a chunk only another
// laptop holds exactly like one nobody has (TestDedupIsPrivateOverTheWire),
// and a commit naming another laptop's chunk is refused
// (TestRefusals). The refusal itself must not tell the two apart either:
// otherwise one failed commit answers "does any laptop of this school hold
// this exact file?" (a leaked exam, a known document) as well as Need would.
func TestCommitRefusalSaysNothingOfOthers(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	a, b := newLaptop(t, d, "SHC3D01", 61), newLaptop(t, d, "SHC3D02", 62)
	secret := journalgen.Random(randFor(63), 200<<10)
	os.WriteFile(filepath.Join(a.src, "exam.pdf"), secret, 0o644)
	a.run(t)
	ua := userBySerial(t, d, "SHC3D01")
	sn, _ := d.Store.Snapshot(ua.ID, "latest")
	e, err := d.Store.Lookup(ctx, sn.Root, "exam.pdf")
	if err != nil || len(e.Chunks) == 0 {
		t.Fatalf("lookup: %v %+v", err, e)
	}
	held := e.Chunks[0] // a chunk of A's file, which only A holds
	nobody := chunk.Sum([]byte("a chunk no laptop has"))

	cb := dialLaptop(t, d, b)
	probe := func(id chunk.ID) string {
		tree := &manifest.Tree{Entries: []manifest.Entry{{Name: "x", Type: manifest.File, Mode: 0o644, Size: 1, Chunks: []chunk.ID{id}}}}
		enc, _ := manifest.Encode(tree)
		root := chunk.Sum(enc)
		if err := cb.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)}}); err != nil {
			t.Fatal(err)
		}
		_, err := cb.Commit(ctx, root)
		if err == nil {
			t.Fatalf("commit naming chunk %s was accepted", id.Short())
		}
		return strings.ReplaceAll(strings.ReplaceAll(err.Error(), id.Short(), "CHUNK"), id.String(), "CHUNK") + " [kind " + proto.KindOf(err).String() + "]"
	}
	pa, pn := probe(held), probe(nobody)
	t.Logf("another laptop's chunk: %s", pa)
	t.Logf("nobody's chunk:         %s", pn)
	if pa != pn {
		t.Errorf("a refused commit tells whether another laptop holds a chunk:\n  held by A: %s\n  by nobody: %s", pa, pn)
	}
}
