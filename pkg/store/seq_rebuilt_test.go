package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// The latest snapshot's file damaged (or lost) is rebuilt from the index;
// its commit number was in the file. Placed by its time among the others,
// it must stay the latest: after the rebuild, and after the next start too
// (the number is written into the rebuilt file), though the clock was set
// back before it was made.
func TestRebuiltSnapshotKeepsItsPlace(t *testing.T) {
	for _, damage := range []string{"damaged", "missing"} {
		t.Run(damage, func(t *testing.T) {
			s, u, _, made := clockResetStore(t, store.Options{})
			dir := s.Dir()
			newest := made[len(made)-1]
			s.Close()
			file := filepath.Join(dir, "snapshots", u.ID.String(), string(newest.ID)+".json")
			var err error
			if damage == "damaged" {
				err = os.WriteFile(file, []byte("{not json"), 0o640)
			} else {
				err = os.Remove(file)
			}
			if err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				s := openStore(t, dir, store.Options{})
				latest, err := s.Snapshot(u.ID, "latest")
				s.Close()
				if err != nil {
					t.Fatal(err)
				}
				if latest.ID != newest.ID {
					t.Fatalf("open %d after the %s file was rebuilt: latest is %s (%s), want the newest commit %s", round+1, damage, latest.ID, latest.Time, newest.ID)
				}
			}
		})
	}
}
