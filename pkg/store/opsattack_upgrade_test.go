package store_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// opsEditJSON rewrites the JSON object in path through edit.
func opsEditJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // the chunker's polynomial does not survive a float64
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// An upgrade from the release before Snapshot.Seq: snapshot files without
// "seq" (and, as a newer release may write them, with fields this one does
// not know, in the snapshot, user and xs-store.json files) load, restore,
// check clean; after the upgrade the server's clock is set back (a power
// cut, no network) and the next backup is still the latest, after every
// snapshot written by the old release, which keep their time order.
func TestOpsAttackUpgradeFromSnapshotsWithoutSeq(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := openStore(t, dir, store.Options{Now: clock})
	u := addUser(t, s, "SHC0001")
	src := map[store.SnapshotID]string{}
	for i := 0; i < 3; i++ {
		d := t.TempDir()
		if _, err := journalgen.Generate(d, journalgen.Small(uint64(40+i))); err != nil {
			t.Fatal(err)
		}
		_, sn := backupDir(t, s, u, d, nil)
		src[sn.ID] = d
		now = now.Add(24 * time.Hour)
	}
	old := s.Snapshots(u.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snapFiles, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "*.json"))
	if len(snapFiles) != 3 {
		t.Fatalf("%d snapshot files, want 3: %v", len(snapFiles), snapFiles)
	}
	for _, f := range snapFiles {
		opsEditJSON(t, f, func(m map[string]any) {
			delete(m, "seq")
			m["labels"] = []string{"from a newer release"}
		})
	}
	userFiles, _ := filepath.Glob(filepath.Join(dir, "users", "*.json"))
	for _, f := range userFiles {
		opsEditJSON(t, f, func(m map[string]any) { m["class"] = "5B" })
	}
	opsEditJSON(t, filepath.Join(dir, "xs-store.json"), func(m map[string]any) { m["dedup_domain"] = "region-1" })

	now = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) // the clock went back
	s = openStore(t, dir, store.Options{Now: clock})
	got := s.Snapshots(u.ID)
	if len(got) != 3 {
		t.Fatalf("%d snapshots after the upgrade, want 3", len(got))
	}
	for i, sn := range got {
		if sn.ID != old[i].ID {
			t.Errorf("snapshot %d is %s, was %s: the old release's order by time is lost", i, sn.ID, old[i].ID)
		}
		restoreAndCompare(t, s, sn, src[sn.ID])
	}
	if usr, err := s.UserBySerial("SHC0001"); err != nil || usr.ID != u.ID {
		t.Fatalf("user after the upgrade: %v %v", usr, err)
	}
	d := t.TempDir()
	if _, err := journalgen.Generate(d, journalgen.Small(99)); err != nil {
		t.Fatal(err)
	}
	_, fresh := backupDir(t, s, u, d, nil)
	got = s.Snapshots(u.ID)
	if len(got) != 4 || got[len(got)-1].ID != fresh.ID {
		t.Errorf("the first backup after the upgrade (clock set back) is not the latest: %v", got)
	}
	restoreAndCompare(t, s, fresh, d)
	checkClean(t, s)
}
