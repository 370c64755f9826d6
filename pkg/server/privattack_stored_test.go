package server_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// privText is size bytes of compressible text (zstd shrinks it a lot),
// different for every seed.
func privText(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	words := []string{"the", "school", "garden", "grows", "beans", "and", "maize", "every", "spring", "children", "water", "it"}
	var b bytes.Buffer
	fmt.Fprintf(&b, "essay %d\n", seed)
	for b.Len() < size {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:size]
}

// privOneFileTree is a tree holding one file "essay.txt" made of the chunk
// data (one chunk).
func privOneFileTree(t *testing.T, data []byte) (chunk.ID, blob.Blob) {
	t.Helper()
	enc, err := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: "essay.txt", Type: manifest.File,
		Mode: 0o644, Size: int64(len(data)), Chunks: []chunk.ID{chunk.Sum(data)}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := chunk.Sum(enc)
	return id, blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: id}, Data: enc, RawLen: len(enc)}
}

func rawChunk(data []byte) blob.Blob {
	return blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
}

// privSetup: laptop A backs up the compressible essay the way an honest
// client does (zstd); B, the attacker, then uploads that essay and a
// second essay nobody has, both uncompressed, with a one-file tree each.
func privSetup(t *testing.T) (d *server.Daemon, b *laptop, cb *proto.Client, shared, fresh []byte) {
	t.Helper()
	ctx := context.Background()
	d = startDaemon(t, nil)
	a := newLaptop(t, d, "PRIVSA", 1)
	b = newLaptop(t, d, "PRIVSB", 2)
	shared, fresh = privText(1, 64<<10), privText(2, 64<<10)

	ca := dialLaptop(t, d, a)
	codec, err := chunk.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	z, compressed := codec.Compress(nil, shared)
	if !compressed || len(z) > len(shared)/2 {
		t.Fatalf("the essay did not compress (%d of %d bytes)", len(z), len(shared))
	}
	rootA, treeA := privOneFileTree(t, shared)
	if err := ca.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(shared)}, Data: z, Compressed: true, RawLen: len(shared)}, treeA}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Commit(ctx, rootA); err != nil {
		t.Fatal(err)
	}

	cb = dialLaptop(t, d, b)
	if err := cb.Put(ctx, []blob.Blob{rawChunk(shared), rawChunk(fresh)}); err != nil {
		t.Fatal(err)
	}
	return d, b, cb, shared, fresh
}

// TestPrivAttackSnapshotStoredShowsOthersCopy: B uploads two 64 KiB
// chunks in exactly the same way (uncompressed), one that only A holds
// (A uploaded it compressed) and one nobody holds, and commits a one-file
// snapshot of each. The snapshot records the commit reply and the
// listing give B must not differ between the two: a "stored" figure that
// is A's compressed size for the first tells B that another laptop has
// the essay (the dedup side channel).
func TestPrivAttackSnapshotStoredShowsOthersCopy(t *testing.T) {
	ctx := context.Background()
	_, _, cb, shared, fresh := privSetup(t)
	rootS, treeS := privOneFileTree(t, shared)
	rootF, treeF := privOneFileTree(t, fresh)
	if err := cb.Put(ctx, []blob.Blob{treeS, treeF}); err != nil {
		t.Fatal(err)
	}
	snS, err := cb.CommitWith(ctx, rootS, proto.CommitInfo{})
	if err != nil {
		t.Fatal(err)
	}
	snF, err := cb.CommitWith(ctx, rootF, proto.CommitInfo{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("commit reply: snapshot of the essay A has: stored %d; of the essay nobody has: stored %d (both uploaded as %d raw bytes)",
		snS.Stored, snF.Stored, len(shared))
	if snS.Stored != snF.Stored {
		t.Errorf("B's commit reply says stored %d for a chunk only A holds and %d for one nobody holds, both uploaded alike: it reveals A's copy",
			snS.Stored, snF.Stored)
	}
	list, err := cb.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for _, sn := range list {
		stored[sn.ID] = sn.Stored
	}
	if stored[snS.ID] != stored[snF.ID] {
		t.Errorf("B's snapshot list says stored %d for the essay A has and %d for the one nobody has", stored[snS.ID], stored[snF.ID])
	}
}

// TestPrivAttackFetchShowsOthersCopy: a laptop may fetch back what it
// holds, pending uploads included. B fetches the two chunks it has just
// uploaded uncompressed: what comes back must not depend on whether
// another laptop had the chunk. Receiving A's zstd frame (compressed,
// other bytes) for the first tells B that someone else has the essay.
func TestPrivAttackFetchShowsOthersCopy(t *testing.T) {
	ctx := context.Background()
	_, _, cb, shared, fresh := privSetup(t)
	got := map[chunk.ID]blob.Blob{}
	refs := []blob.Ref{rawChunk(shared).Ref, rawChunk(fresh).Ref}
	if err := cb.Fetch(ctx, refs, func(b blob.Blob) error {
		got[b.ID] = blob.Blob{Ref: b.Ref, Data: bytes.Clone(b.Data), Compressed: b.Compressed, RawLen: b.RawLen}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s, f := got[chunk.Sum(shared)], got[chunk.Sum(fresh)]
	t.Logf("fetched back: essay A has: compressed=%v %d bytes; essay nobody has: compressed=%v %d bytes", s.Compressed, len(s.Data), f.Compressed, len(f.Data))
	if s.Compressed != f.Compressed || len(s.Data) != len(f.Data) {
		t.Errorf("B fetched back a chunk only A holds as compressed=%v, %d bytes, and one nobody holds as compressed=%v, %d bytes; both were uploaded uncompressed: the stored form reveals A's copy",
			s.Compressed, len(s.Data), f.Compressed, len(f.Data))
	}
}

// TestPrivAttackQuotaUnchangedByOthersCopy: the quota B is told at hello
// grows by what B uploaded, for both essays alike (control: this part of
// the promise holds).
func TestPrivAttackQuotaUnchangedByOthersCopy(t *testing.T) {
	ctx := context.Background()
	d, b, _, shared, fresh := privSetup(t)
	key, _ := b.st.Key()
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, err := c.Hello(ctx, "info")
	if err != nil {
		t.Fatal(err)
	}
	// B holds both (pending) plus nothing else yet beyond its own uploads:
	// each costs its raw 64 KiB.
	if g.Quota.Used != int64(len(shared)+len(fresh)) {
		t.Errorf("B's quota says %d bytes used after uploading %d+%d uncompressed bytes", g.Quota.Used, len(shared), len(fresh))
	}
}
