package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// privMsg is an error's message with the IDs of a and b made alike.
func privMsg(err error, ids ...chunk.ID) string {
	if err == nil {
		return "<nil>"
	}
	m := err.Error()
	for _, id := range ids {
		m = strings.ReplaceAll(m, id.String(), "ID")
		m = strings.ReplaceAll(m, id.Short(), "ID")
	}
	return m
}

// TestPrivAttackFetchByIDOfOthersChunk: B asks to download, by ID, a chunk
// only A holds and a chunk nobody holds. Both are refused, with the same
// kind and the same words, and no bytes of A's chunk reach B.
func TestPrivAttackFetchByIDOfOthersChunk(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	a, b := newLaptop(t, d, "PRIVFA", 1), newLaptop(t, d, "PRIVFB", 2)
	ca := dialLaptop(t, d, a)
	secret := privText(7, 32<<10)
	root, tree := privOneFileTree(t, secret)
	if err := ca.Put(ctx, []blob.Blob{rawChunk(secret), tree}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Commit(ctx, root); err != nil {
		t.Fatal(err)
	}
	cb := dialLaptop(t, d, b)
	nobody := chunk.Sum([]byte("nobody has this"))
	var errs []error
	for _, r := range []blob.Ref{rawChunk(secret).Ref, {Type: blob.Chunk, ID: nobody}, {Type: blob.Tree, ID: root}, {Type: blob.Tree, ID: nobody}} {
		got := 0
		err := cb.Fetch(ctx, []blob.Ref{r}, func(blob.Blob) error { got++; return nil })
		if got != 0 || err == nil {
			t.Fatalf("B fetched %s, which it never uploaded: %d blobs, %v", r, got, err)
		}
		if !errors.Is(err, proto.ErrNotFound) {
			t.Errorf("fetch of %s: %v, want not found", r, err)
		}
		errs = append(errs, err)
	}
	if m0, m1 := privMsg(errs[0], chunk.Sum(secret), nobody), privMsg(errs[1], chunk.Sum(secret), nobody); m0 != m1 {
		t.Errorf("fetch of A's chunk says %q, of a chunk nobody has %q", m0, m1)
	}
	if m0, m1 := privMsg(errs[2], root, nobody), privMsg(errs[3], root, nobody); m0 != m1 {
		t.Errorf("fetch of A's tree says %q, of a tree nobody has %q", m0, m1)
	}
}

// TestPrivAttackNeedAfterOwnSnapshotDeleted: B backs up a chunk A also
// has, then B's snapshot is deleted (staff, retention). B's Need must ask
// for it again, like for a chunk nobody has: the copy A keeps alive must
// not make the server say "I have it" to B.
func TestPrivAttackNeedAfterOwnSnapshotDeleted(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	a, b := newLaptop(t, d, "PRIVNA", 1), newLaptop(t, d, "PRIVNB", 2)
	shared, fresh := privText(11, 32<<10), privText(12, 32<<10)
	ca := dialLaptop(t, d, a)
	rootA, treeA := privOneFileTree(t, shared)
	if err := ca.Put(ctx, []blob.Blob{rawChunk(shared), treeA}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Commit(ctx, rootA); err != nil {
		t.Fatal(err)
	}
	cb := dialLaptop(t, d, b)
	rootS, treeS := privOneFileTree(t, shared)
	rootF, treeF := privOneFileTree(t, fresh)
	if err := cb.Put(ctx, []blob.Blob{rawChunk(shared), rawChunk(fresh), treeS, treeF}); err != nil {
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
	refs := []blob.Ref{rawChunk(shared).Ref, rawChunk(fresh).Ref, {Type: blob.Tree, ID: rootS}, {Type: blob.Tree, ID: rootF}}
	need, err := cb.Need(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range need {
		if n {
			t.Fatalf("B's need before the deletion = %v: B holds all of them", need)
		}
	}
	cb.Close()
	ub := userBySerial(t, d, "PRIVNB")
	for _, id := range []string{snS.ID, snF.ID} {
		if err := d.Store.DeleteSnapshot(ctx, ub.ID, store.SnapshotID(id)); err != nil {
			t.Fatal(err)
		}
	}
	cb2 := dialLaptop(t, d, b)
	need, err = cb2.Need(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	if need[0] != need[1] || need[2] != need[3] || !need[0] || !need[2] {
		t.Errorf("after B's snapshots were deleted, B's need for [A's chunk, nobody's chunk, A's tree, nobody's tree] = %v: all must be asked for", need)
	}
	if u, _ := d.Store.Usage(ctx, ub.ID); u.Bytes != 0 {
		t.Errorf("B holds nothing but is charged %+v", u)
	}
}

// TestPrivAttackHardQuotaRefusalSame: at a hard quota, an upload of a
// chunk only A holds and of one nobody holds are refused alike (kind and
// words), and the quota B is then told is the same.
func TestPrivAttackHardQuotaRefusalSame(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, func(c *server.Config) { c.Quota.Hard = 48 << 10 })
	a, b := newLaptop(t, d, "PRIVHA", 1), newLaptop(t, d, "PRIVHB", 2)
	shared, fresh := privText(21, 32<<10), privText(22, 32<<10)
	ca := dialLaptop(t, d, a)
	if err := ca.Put(ctx, []blob.Blob{rawChunk(shared)}); err != nil {
		t.Fatal(err)
	}
	cb := dialLaptop(t, d, b)
	filler := privText(23, 24<<10)
	if err := cb.Put(ctx, []blob.Blob{rawChunk(filler)}); err != nil {
		t.Fatal(err)
	}
	e1 := cb.Put(ctx, []blob.Blob{rawChunk(shared)})
	e2 := cb.Put(ctx, []blob.Blob{rawChunk(fresh)})
	if !errors.Is(e1, proto.ErrOverQuota) || !errors.Is(e2, proto.ErrOverQuota) {
		t.Fatalf("uploads past the hard quota: %v / %v", e1, e2)
	}
	if m1, m2 := privMsg(e1, chunk.Sum(shared), chunk.Sum(fresh)), privMsg(e2, chunk.Sum(shared), chunk.Sum(fresh)); m1 != m2 {
		t.Errorf("over-quota refusal for A's chunk %q, for a new chunk %q", m1, m2)
	}
}
