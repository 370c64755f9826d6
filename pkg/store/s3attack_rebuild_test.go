package store_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// The school server's disk is lost and the store is rebuilt from the
// bucket alone (OpenForRepair + Repair on an empty data directory).

// rebuild moves the fixture to a new, empty data directory rebuilt from
// the bucket through remote.
func (a *s3a) rebuild(remote store.Remote) *store.RepairReport {
	a.t.Helper()
	a.close()
	a.dir = a.t.TempDir()
	if remote != nil {
		a.remote = remote
	}
	rs, err := store.OpenForRepair(context.Background(), a.dir, a.opts())
	if err != nil {
		a.t.Fatalf("open an empty directory on the bucket for repair: %v", err)
	}
	rep, err := rs.Repair(context.Background())
	rs.Close()
	if err != nil {
		a.t.Fatalf("repair from the bucket: %v", err)
	}
	a.t.Logf("rebuild: %d packs, %d blobs, %d lost, %d snapshots, %d kept below damaged trees, %d trees restored",
		rep.Packs, rep.Blobs, rep.Lost, rep.Snapshots, rep.KeptBelowDamagedTrees, rep.TreesRestored)
	a.open()
	return rep
}

// A pack object was deleted from the bucket, and then the server's disk is
// lost: the rebuilt index has no copies of the trees, so the old snapshots'
// directories in that pack cannot come back (only the laptops' current
// ones, from their backups). The promise kept: every acknowledged snapshot
// is there, nothing beyond the deleted pack's blobs is lost, what the
// laptops still have heals. What the lost tree copies cost is logged.
func TestS3AttackRebuildFromBucketAfterPackDeleted(t *testing.T) {
	a := newS3A(t, nil)
	seq, dmg := a.treePack()
	// What the old snapshots lose if no copy of their trees survives:
	// files whose own chunks are intact but sit below a damaged tree.
	if err := os.Remove(a.objPath(pack.Name(seq))); err != nil {
		t.Fatal(err)
	}
	rep := a.rebuild(nil)
	if rep.Snapshots != len(a.snaps) {
		t.Errorf("rebuild found %d snapshots, %d acknowledged", rep.Snapshots, len(a.snaps))
	}
	a.staffSequence()
	unhealed, filesOut := a.verify(dmg, false)
	// Files left out although every chunk of theirs is intact: below an
	// old tree that only the lost index's copy could have given back.
	trees := 0
	cur := a.current()
	for r := range dmg {
		if r.Type == blob.Tree && !cur[r] {
			if _, err := a.s.ReadBlob(context.Background(), r); err != nil {
				trees++
			}
		}
	}
	t.Logf("FINDING: after a rebuild from the bucket alone, %d old tree(s) of the deleted pack stay lost (no copy survives an index rebuilt from scratch); %d damaged blob(s) unhealed, %d file(s) left out of restores", trees, unhealed, filesOut)
}

// Repair from the bucket while its listing lags (leaves out one pack, not
// the newest): the blobs of that pack are not damaged and must not be
// marked lost; once the listing catches up, nothing is lost.
func TestS3AttackRebuildWhileListingLags(t *testing.T) {
	a := newS3A(t, nil)
	seq, _ := a.treePack()
	lag := &laggingRemote{Remote: a.srv.Remote(t, a.prefix), hide: pack.Name(seq)}
	a.rebuild(lag)
	if d := a.damagedNow(); len(d) != 0 {
		t.Errorf("a listing that lags was taken for damage: %d blob(s) marked lost by the rebuild, e.g. %s (%s)", len(d), d[0].Ref, d[0].Reason)
	}
	// The listing catches up; staff run what check advises, nights pass,
	// the laptops back up.
	a.close()
	a.remote = a.srv.Remote(t, a.prefix)
	a.open()
	a.staffSequence()
	a.verify(map[blob.Ref]bool{}, true)
}

// A metadata copy in the bucket rots (same size: a flipped byte); the store
// runs on (restarts, check, nightly lifecycle), then the server's disk is
// lost: the store rebuilt from the bucket must hold every acknowledged
// snapshot, and every laptop under its serial.
func TestS3AttackMetaCopyDamagedThenDiskLost(t *testing.T) {
	for _, which := range []string{"snapshot", "user", "config"} {
		t.Run(which, func(t *testing.T) {
			a := newS3A(t, nil)
			var name string
			switch which {
			case "snapshot":
				name = "meta/snapshots/" + a.users[0].ID.String() + "/" + string(a.snaps[0].id) + ".json"
			case "user":
				name = "meta/users/" + a.users[0].ID.String() + ".json"
			case "config":
				name = "meta/xs-store.json"
			}
			path := a.objPath(name)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no copy %s in the bucket: %v (objects: %v)", name, err, keys(a.srv.Objects(t, a.prefix+"/meta/")))
			}
			b = bytes.Replace(b, []byte("{"), []byte("X"), 1) // same size, not JSON any more
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			// The store runs on: restart, check, a night.
			a.close()
			s, err := store.Open(context.Background(), a.dir, a.opts())
			if err != nil {
				t.Fatalf("the store no longer opens because its copy of %s in the bucket is damaged (the local file is intact): %v", filepath.Base(name), err)
			}
			a.s = s
			a.checkAndAdvice()
			a.night()
			got, _ := os.ReadFile(path)
			if bytes.Equal(got, b) {
				t.Logf("FINDING: the damaged copy %s is still in the bucket after a restart, check and the nightly run", name)
			}
			// The disk is lost.
			a.rebuild(nil)
			for i, u := range a.users {
				got, err := a.s.UserBySerial(u.Serial)
				if err != nil || got.ID != u.ID {
					t.Errorf("laptop %d (%s) after the rebuild: %v", i, u.Serial, err)
				}
			}
			if md := a.s.MetaDamage(); len(md) > 0 {
				t.Logf("meta damage after the rebuild: %+v", md)
			}
			a.verify(map[blob.Ref]bool{}, true)
		})
	}
}

func keys(m map[string]int64) string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return strings.Join(s, " ")
}
