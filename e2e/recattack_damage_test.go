package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// raCase is one damage done to a stopped daemon's data directory. lossy:
// the damage may destroy data that only old snapshots hold (then files no
// laptop has any more may be missing from restores); otherwise every laptop
// still has everything damaged, and nothing at all may be lost.
type raCase struct {
	name   string
	lossy  bool
	damage func(t *testing.T, data string)
}

func raRun(t *testing.T, c raCase) {
	w := raNewWorld(t, t.TempDir())
	w.stop(t)
	c.damage(t, w.data)
	w.staff(t)
	w.finalCheck(t, c.lossy)
	lost := w.verify(t, c.lossy)
	t.Logf("%s: %d file(s) only old snapshots held were lost", c.name, lost)
	w.stillBacksUp(t)
	if out, errOut, code := w.admin(t, "check"); code != 0 && !c.lossy {
		t.Errorf("xs-admin check at the end: exit %d\n%s%s", code, out, errOut)
	}
}

// The second day's pack holds only what the laptops have now: losing any
// of it must cost nothing once they back up again.
func lastPack(t *testing.T, data string) string { p := raPacks(t, data); return p[len(p)-1] }

func firstPack(t *testing.T, data string) string { return raPacks(t, data)[0] }

// TestRecAttackPackDeleted: the pack of day 2 deleted (everything in it is
// on the laptops).
func TestRecAttackPackDeleted(t *testing.T) {
	raRun(t, raCase{name: "last pack deleted", damage: func(t *testing.T, data string) {
		os.Remove(lastPack(t, data))
	}})
}

// TestRecAttackFirstPackDeleted: the pack of day 1 deleted: what the
// laptops changed since is lost from day 1's snapshots, nothing else.
func TestRecAttackFirstPackDeleted(t *testing.T) {
	raRun(t, raCase{name: "first pack deleted", lossy: true, damage: func(t *testing.T, data string) {
		os.Remove(firstPack(t, data))
	}})
}

// TestRecAttackPackTruncatedMidRecord: day 2's pack cut in the middle of a
// record halfway through it.
func TestRecAttackPackTruncatedMidRecord(t *testing.T) {
	raRun(t, raCase{name: "pack truncated", damage: func(t *testing.T, data string) {
		p := lastPack(t, data)
		recs := raRecords(t, p)
		r := recs[len(recs)/2]
		if err := os.Truncate(p, int64(r.off+52+r.n/2)); err != nil {
			t.Fatal(err)
		}
	}})
}

// TestRecAttackTreeRecordFlipped: a byte flipped in the largest tree record
// of day 2's pack (a directory of the laptops' Journals as they are now).
func TestRecAttackTreeRecordFlipped(t *testing.T) {
	raRun(t, raCase{name: "tree flipped", damage: func(t *testing.T, data string) {
		flipIn(t, lastPack(t, data), 2)
	}})
}

// TestRecAttackChunkRecordFlipped: a byte flipped in the largest chunk of
// day 1's pack (the shared book or a laptop's own recording of day 1).
func TestRecAttackChunkRecordFlipped(t *testing.T) {
	raRun(t, raCase{name: "chunk flipped", lossy: true, damage: func(t *testing.T, data string) {
		flipIn(t, firstPack(t, data), 1)
	}})
}

func TestRecAttackIndexDeleted(t *testing.T) {
	raRun(t, raCase{name: "index deleted", damage: func(t *testing.T, data string) {
		if err := os.RemoveAll(filepath.Join(data, "index")); err != nil {
			t.Fatal(err)
		}
	}})
}

func TestRecAttackIndexManifestFlipped(t *testing.T) {
	raRun(t, raCase{name: "MANIFEST flipped", damage: func(t *testing.T, data string) {
		flipFile(t, filepath.Join(data, "index", "MANIFEST"))
	}})
}

func TestRecAttackIndexManifestTruncated(t *testing.T) {
	raRun(t, raCase{name: "MANIFEST truncated", damage: func(t *testing.T, data string) {
		truncHalf(t, filepath.Join(data, "index", "MANIFEST"))
	}})
}

func TestRecAttackIndexSSTFlipped(t *testing.T) {
	raRun(t, raCase{name: "sst flipped", damage: func(t *testing.T, data string) {
		flipFile(t, firstGlob(t, data, "index/*.sst"))
	}})
}

func TestRecAttackIndexSSTTruncated(t *testing.T) {
	raRun(t, raCase{name: "sst truncated", damage: func(t *testing.T, data string) {
		truncHalf(t, firstGlob(t, data, "index/*.sst"))
	}})
}

func TestRecAttackIndexVlogFlipped(t *testing.T) {
	raRun(t, raCase{name: "vlog flipped", damage: func(t *testing.T, data string) {
		flipFile(t, firstGlob(t, data, "index/*.vlog"))
	}})
}

func TestRecAttackIndexVlogTruncated(t *testing.T) {
	raRun(t, raCase{name: "vlog truncated", damage: func(t *testing.T, data string) {
		truncHalf(t, firstGlob(t, data, "index/*.vlog"))
	}})
}

// TestRecAttackSnapshotFileDeleted: one snapshot file gone. The index still
// knows the snapshot's root and every blob it uses is intact in the packs.
func TestRecAttackSnapshotFileDeleted(t *testing.T) {
	raRun(t, raCase{name: "snapshot file deleted", damage: func(t *testing.T, data string) {
		os.Remove(firstGlob(t, data, "snapshots/*/*.json"))
	}})
}

func TestRecAttackSnapshotFileFlipped(t *testing.T) {
	raRun(t, raCase{name: "snapshot file flipped", damage: func(t *testing.T, data string) {
		flipFile(t, firstGlob(t, data, "snapshots/*/*.json"))
	}})
}

func TestRecAttackUsersFileDamaged(t *testing.T) {
	raRun(t, raCase{name: "users file damaged", damage: func(t *testing.T, data string) {
		flipFile(t, firstGlob(t, data, "users/*.json"))
	}})
}

// TestRecAttackIndexGoneAndPackDamaged: several damages at once: the index
// deleted and a chunk of day 2's pack flipped.
func TestRecAttackIndexGoneAndPackDamaged(t *testing.T) {
	raRun(t, raCase{name: "index gone + pack flipped", damage: func(t *testing.T, data string) {
		os.RemoveAll(filepath.Join(data, "index"))
		flipIn(t, lastPack(t, data), 1)
		flipIn(t, lastPack(t, data), 2)
	}})
}
