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

// TestRollbackSnapshotsKeepTheirPlace: a school rolls its server back to a
// release that writes snapshots without a number (Seq) for a night, then
// upgrades again. The backup made during the rollback is newer than every
// numbered one and must stay the latest (it sorted first: restores took
// the snapshot before it and retention deleted it as the oldest; found by
// e2e's TestCompatRollbackAndUpgradeAgainKeepsTheNewestBackup with the real
// release ae8df14). A snapshot from before the numbers stays the oldest.
func TestRollbackSnapshotsKeepTheirPlace(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	u := addUser(t, s, "ROLL01")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(7)); err != nil {
		t.Fatal(err)
	}
	var ids []store.SnapshotID
	for range 4 {
		_, sn := backupDir(t, s, u, src, nil)
		ids = append(ids, sn.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// As the releases wrote them: the first before the numbers, the third
	// during the rollback; a day apart each.
	base := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	for i, id := range ids {
		p := filepath.Join(dir, "snapshots", u.ID.String(), string(id)+".json")
		var m map[string]any
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["time"] = base.Add(time.Duration(i) * 24 * time.Hour).Format(time.RFC3339Nano)
		switch i {
		case 0, 2:
			delete(m, "seq")
		case 1:
			m["seq"] = 1
		case 3:
			m["seq"] = 2
		}
		if b, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 { // the place given is kept at the next start
		s = openStore(t, dir, store.Options{})
		var got []store.SnapshotID
		for _, sn := range s.Snapshots(u.ID) {
			got = append(got, sn.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("start %d: snapshots in the order %v, want %v (the rollback's is the third)", round+1, got, ids)
		}
		// The next backup comes after all of them.
		_, sn := backupDir(t, s, u, src, nil)
		if l := s.Snapshots(u.ID); l[len(l)-1].ID != sn.ID {
			t.Fatalf("start %d: the new backup %s is not the latest: %v", round+1, sn.ID, l[len(l)-1].ID)
		}
		ids = append(ids, sn.ID)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
