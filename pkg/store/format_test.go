package store_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// oldUserJSON is a user file exactly as the release before key changes and
// claim codes (commit 56351e1) wrote it: these fields, this layout.
func oldUserJSON(id store.UserID, serial string, key []byte, approved, revoked bool, aliases ...string) string {
	s := fmt.Sprintf("{\n  \"id\": %d,\n  \"serial\": %q,\n  \"nickname\": \"kid %s\",\n", id, serial, serial)
	if key != nil {
		s += fmt.Sprintf("  \"public_key\": %q,\n", base64.StdEncoding.EncodeToString(key))
	}
	s += fmt.Sprintf("  \"created\": \"2026-03-01T08:00:00Z\",\n  \"approved\": %v", approved)
	if revoked {
		s += ",\n  \"revoked\": true"
	}
	if len(aliases) > 0 {
		s += ",\n  \"aliases\": ["
		for i, a := range aliases {
			if i > 0 {
				s += ", "
			}
			s += fmt.Sprintf("%q", a)
		}
		s += "]"
	}
	return s + "\n}"
}

// TestOpensPreviousReleaseStore: a store whose user files were written by
// the previous release opens with every user, snapshot and alias intact,
// including the states that release could leave behind (a revoked user with
// backups beside an empty user of the same serial; an aliased user with no
// key yet), and each of them is reachable by serial.
func TestOpensPreviousReleaseStore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	src := map[string]string{}
	type row struct {
		serial   string
		key      []byte
		approved bool
		revoked  bool
		aliases  []string
		snaps    int
	}
	rows := []row{
		{serial: "SHC001", key: []byte("k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1"), approved: true, snaps: 2},
		{serial: "SHC002", key: []byte("k2k2k2k2k2k2k2k2k2k2k2k2k2k2k2k2"), approved: true, revoked: true, snaps: 1}, // revoked with history
		{serial: "SHC002", key: []byte("k3k3k3k3k3k3k3k3k3k3k3k3k3k3k3k3"), approved: true},                          // the empty user registered after it
		{serial: "SHC004", approved: true, aliases: []string{"SHC003"}, snaps: 1},                                    // aliased, new key not yet known
		{serial: "SHC005", key: []byte("k5k5k5k5k5k5k5k5k5k5k5k5k5k5k5k5"), approved: false},                         // waiting for approval
	}
	ids := make([]store.UserID, len(rows))
	for i, r := range rows {
		u := addUser(t, s, fmt.Sprintf("TMP%d", i))
		ids[i] = u.ID
		for n := 0; n < r.snaps; n++ {
			d := t.TempDir()
			if _, err := journalgen.Generate(d, journalgen.Small(uint64(10*i+n))); err != nil {
				t.Fatal(err)
			}
			_, sn := backupDir(t, s, u, d, nil)
			src[string(sn.ID)] = d
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if err := os.WriteFile(filepath.Join(dir, "users", ids[i].String()+".json"), []byte(oldUserJSON(ids[i], r.serial, r.key, r.approved, r.revoked, r.aliases...)), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s = openStore(t, dir, store.Options{})
	if n := len(s.Users()); n != len(rows) {
		t.Fatalf("%d users after reopening, want %d", n, len(rows))
	}
	for i, r := range rows {
		u, err := s.User(ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if u.Serial != r.serial || u.Approved != r.approved || u.Revoked != r.revoked || fmt.Sprint(u.Aliases) != fmt.Sprint(r.aliases) || string(u.PublicKey) != string(r.key) {
			t.Errorf("user %d read back as %+v", i, u)
		}
		snaps := s.Snapshots(ids[i])
		if len(snaps) != r.snaps {
			t.Errorf("user %s: %d snapshots, want %d", r.serial, len(snaps), r.snaps)
		}
		for _, sn := range snaps {
			restoreAndCompare(t, s, sn, src[string(sn.ID)])
		}
		// Reachable: by serial (the active user wins a shared serial), by
		// former serial, and always by ID.
		if got, err := s.UserBySerial(ids[i].String()); err != nil || got.ID != ids[i] {
			t.Errorf("user %s not reachable by its ID: %v", r.serial, err)
		}
	}
	for serial, want := range map[string]store.UserID{"SHC001": ids[0], "SHC002": ids[2], "SHC003": ids[3], "SHC004": ids[3], "SHC005": ids[4]} {
		if u, err := s.UserBySerial(serial); err != nil || u.ID != want {
			t.Errorf("serial %s: %v %v, want user %s", serial, u, err, want)
		}
	}
	checkClean(t, s)
}

// TestRollbackSnapshotsKeepTheirPlace: a store of the release before the
// numbers (its snapshots have no Seq) is upgraded, numbered backups follow
// (the server's clock reset to 2000 meanwhile, so they are dated before
// the old ones), then the school rolls the server back to the old release
// for a night (a backup without a number, dated by the old clock again)
// and upgrades again. The old release's first backups stay the oldest,
// whatever their dates; the backup made during the rollback is the latest
// (it sorted first: restores and retention's "latest" took the one before
// it; found by e2e's TestCompatRollbackAndUpgradeAgainKeepsTheNewestBackup
// with the real release ae8df14), and keeps its place at every start.
func TestRollbackSnapshotsKeepTheirPlace(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	u := addUser(t, s, "ROLL01")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(7)); err != nil {
		t.Fatal(err)
	}
	var ids []store.SnapshotID
	for range 2 {
		_, sn := backupDir(t, s, u, src, nil)
		ids = append(ids, sn.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// edit rewrites a snapshot file as a release wrote it: its time, and
	// its number (0: none, as the old release writes).
	edit := func(id store.SnapshotID, when time.Time, seq int) {
		t.Helper()
		rewriteSnap(t, dir, u.ID, id, func(m map[string]any) {
			m["time"] = when.Format(time.RFC3339Nano)
			setSeqField(m, seq)
		})
	}
	old := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	reset := time.Date(2000, 1, 1, 20, 0, 0, 0, time.UTC)
	order := func(round string) {
		t.Helper()
		var got []store.SnapshotID
		for _, sn := range s.Snapshots(u.ID) {
			got = append(got, sn.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("%s: snapshots in the order %v, want %v", round, got, ids)
		}
	}
	// The old release's store: ids[0] and ids[1] without numbers, and no
	// mark of a numbering release.
	edit(ids[0], old, 0)
	edit(ids[1], old.Add(24*time.Hour), 0)
	if err := os.Remove(filepath.Join(dir, "snapshots", "numbered.json")); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, store.Options{}) // upgraded
	order("the old release's store upgraded")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Two numbered backups while the clock reads 2000, then the rollback's
	// backup, dated by the right clock again; then upgraded again, twice.
	s = openStore(t, dir, store.Options{})
	for range 3 {
		_, sn := backupDir(t, s, u, src, nil)
		ids = append(ids, sn.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	edit(ids[2], reset, 1)
	edit(ids[3], reset.Add(24*time.Hour), 2)
	edit(ids[4], old.Add(48*time.Hour), 0) // the rollback's: the old release made it,
	unmark(t, dir, u.ID, ids[4])           // so this release never knew it
	for round := range 2 {
		s = openStore(t, dir, store.Options{})
		order(fmt.Sprintf("start %d after the rollback", round+1))
		// The next backup comes after all of them.
		_, sn := backupDir(t, s, u, src, nil)
		ids = append(ids, sn.ID)
		order(fmt.Sprintf("start %d, a new backup", round+1))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// unmark removes a snapshot from the numbering mark, as if this release
// had never seen it (an older release made it).
func unmark(t *testing.T, dir string, user store.UserID, id store.SnapshotID) {
	t.Helper()
	p := filepath.Join(dir, "snapshots", "numbered.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int64
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, user.String()+"/"+string(id))
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rewriteSnap rewrites a snapshot file's JSON fields with fn.
func rewriteSnap(t *testing.T, dir string, user store.UserID, id store.SnapshotID, fn func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "snapshots", user.String(), string(id)+".json")
	var m map[string]any
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// setSeqField sets a snapshot's number in its JSON fields (0: none, as the
// release before the numbers writes it).
func setSeqField(m map[string]any, seq int) {
	delete(m, "seq")
	if seq > 0 {
		m["seq"] = seq
	}
}

// TestNumbersSurviveAnOldReleaseAndARebuild: two ways a snapshot file
// loses its number without being a rollback's backup, each judged over two
// starts (the review of the numbering mark found both made the old backup
// the latest at the second start). The old release pins a numbered
// snapshot while the school has rolled back: its file is rewritten without
// the number, which comes back. The oldest snapshot's file is damaged and
// rebuilt from the index: it stays the oldest.
func TestNumbersSurviveAnOldReleaseAndARebuild(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, dir string, user store.UserID, id store.SnapshotID)
	}{
		{"pinned by the old release", func(t *testing.T, dir string, user store.UserID, id store.SnapshotID) {
			rewriteSnap(t, dir, user, id, func(m map[string]any) { setSeqField(m, 0) })
		}},
		{"file damaged and rebuilt", func(t *testing.T, dir string, user store.UserID, id store.SnapshotID) {
			if err := os.WriteFile(filepath.Join(dir, "snapshots", user.String(), string(id)+".json"), []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, store.Options{})
			u := addUser(t, s, "ROLL02")
			src := t.TempDir()
			if _, err := journalgen.Generate(src, journalgen.Small(9)); err != nil {
				t.Fatal(err)
			}
			var ids []store.SnapshotID
			for range 3 {
				_, sn := backupDir(t, s, u, src, nil)
				ids = append(ids, sn.ID)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			c.damage(t, dir, u.ID, ids[0])
			for round := range 2 {
				s = openStore(t, dir, store.Options{})
				var got []store.SnapshotID
				for _, sn := range s.Snapshots(u.ID) {
					got = append(got, sn.ID)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(ids) {
					t.Fatalf("start %d: snapshots in the order %v, want %v", round+1, got, ids)
				}
			}
		})
	}
}
