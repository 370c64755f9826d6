package store_test

import (
	"os"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Damage to pack objects in the bucket, behind the store's back, then what
// staff run: check --read-data and what it advises, the nightly lifecycle,
// each laptop's next backup (Journal unchanged, cache kept), another night.
// Only the damaged pack's blobs may be lost, only those no laptop has any
// more, and never a tree (its copy in the index brings it back).

func (a *s3a) staffSequence() {
	a.t.Helper()
	a.checkAndAdvice()
	a.night()
	a.nextBackups()
	a.night()
}

// A pack object deleted from the bucket (its local copy went after the
// upload, as always).
func TestS3AttackPackObjectDeleted(t *testing.T) {
	a := newS3A(t, nil)
	seq, dmg := a.treePack()
	if n := localPacks(t, a.dir); n != 0 {
		t.Fatalf("%d packs still local", n)
	}
	if err := os.Remove(a.objPath(pack.Name(seq))); err != nil {
		t.Fatal(err)
	}
	rep, _ := a.checkAndAdvice()
	if rep == nil {
		t.FailNow()
	}
	// Every record the object held is marked lost at once (markMissingPacks):
	// one backup of each laptop heals every level below a lost tree.
	lost := map[blob.Ref]bool{}
	for _, d := range a.damagedNow() {
		lost[d.Ref] = true
	}
	for r := range dmg {
		if !lost[r] && r.Type != blob.Tree {
			t.Errorf("check did not mark %s of the deleted object lost (check reported %d damaged)", r, rep.Damaged)
			break
		}
	}
	a.night()
	a.nextBackups()
	a.night()
	a.verify(dmg, true)
}

// A pack object cut short (half of it gone): the records past the cut are
// lost, those before it are not, and the lifecycle goes on.
func TestS3AttackPackObjectTruncated(t *testing.T) {
	a := newS3A(t, nil)
	seq, used := a.treePack()
	path := a.objPath(pack.Name(seq))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := st.Size() / 2
	dmg := map[blob.Ref]bool{}
	offs := a.blobsIn(seq)
	for r := range used {
		if offs[r]+pack.RecordHeaderLen > cut-1<<10 { // the record the cut lands in, and after
			dmg[r] = true
		}
	}
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	a.staffSequence()
	a.verify(dmg, true)
}

// A pack object replaced by another pack's bytes (a wrong object copied
// back, a bucket replication mix-up): its own records are lost, nothing else.
func TestS3AttackPackObjectReplacedByAnother(t *testing.T) {
	a := newS3A(t, nil)
	// The smallest pack holding a used tree, replaced by the largest other
	// pack: every record the index knows still lies inside the object, and
	// intact records of other blobs sit where the index looks (a smaller
	// replacement fails as the truncation does).
	all := a.allRefs()
	sizes := map[uint64]int64{}
	var seq, other uint64
	for _, s := range a.packSeqs() {
		st, err := os.Stat(a.objPath(pack.Name(s)))
		if err != nil {
			t.Fatal(err)
		}
		sizes[s] = st.Size()
		if other == 0 || st.Size() > sizes[other] {
			other = s
		}
	}
	for _, s := range a.packSeqs() {
		if s == other {
			continue
		}
		trees := false
		for r := range a.blobsIn(s) {
			trees = trees || (all[r] && r.Type == blob.Tree)
		}
		if trees && (seq == 0 || sizes[s] < sizes[seq]) {
			seq = s
		}
	}
	if seq == 0 {
		t.Fatal("no second pack with trees")
	}
	dmg := map[blob.Ref]bool{}
	for r := range a.blobsIn(seq) {
		if all[r] {
			dmg[r] = true
		}
	}
	b, err := os.ReadFile(a.objPath(pack.Name(other)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pack %016x (%d bytes, %d used blobs) replaced by the bytes of pack %016x (%d bytes)", seq, sizes[seq], len(dmg), other, len(b))
	if err := os.WriteFile(a.objPath(pack.Name(seq)), b, 0o644); err != nil {
		t.Fatal(err)
	}
	a.staffSequence()
	a.verify(dmg, true)
}
