package e2e

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

type regOut struct {
	Serial    string `json:"serial"`
	Approved  bool   `json:"approved"`
	Key       string `json:"key"`
	KeyChange bool   `json:"key_change"`
	Continued bool   `json:"continued"`
	Snapshots int    `json:"snapshots"`
}

// register runs xo-backup register --json and returns what it recorded
// and the exit code.
func register(t *testing.T, d *Daemon, state, serial string, extra ...string) (regOut, string, int) {
	t.Helper()
	out, errOut, code := xo(t, state, append([]string{"register", "--server", d.Addr, "--serial", serial, "--json"}, extra...)...)
	var r regOut
	if code == 0 {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("register output %q: %v", out, err)
		}
	}
	return r, errOut, code
}

func snapshotCount(t *testing.T, d *Daemon, serial string) int {
	t.Helper()
	var snaps []map[string]any
	adminJSON(t, d.Data, &snaps, "snapshots", serial)
	return len(snaps)
}

// restoreAll runs xo-backup restore --all into a fresh Journal and compares
// it with src.
func restoreAll(t *testing.T, state, src string) {
	t.Helper()
	journal := filepath.Join(t.TempDir(), "datastore")
	if o, e, code := xo(t, state, "restore", "--all", "--journal", journal); code != 0 {
		t.Fatalf("restore --all: %s %s", o, e)
	}
	restoredJournalEquals(t, src, journal)
}

// restoredJournalEquals fails unless journal, restored by restore --all,
// holds src's files byte for byte, but for Sugar's own files and the
// layout's version file: the restore removes that one, so that Sugar
// rebuilds its index (and writes it again) at its next start.
func restoredJournalEquals(t *testing.T, src, journal string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(journal, "version")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("restore --all left the Journal's version file (%v): Sugar would not list the entries", err)
	}
	if err := dircmp.Compare(src, journal, func(rel string, isDir bool) bool {
		return rel == "version" || backup.JournalExclude(rel, isDir)
	}); err != nil {
		t.Fatalf("restored Journal differs: %v", err)
	}
}

func newJournal(t *testing.T, seed uint64) string {
	t.Helper()
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(seed)); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestReflashKeepsHistory: a laptop backs up twice, is reflashed (its
// state, key included, is gone) and registers again with a new key. It gets
// nothing until staff approve the key they see in xs-admin pending; then
// restore --all brings the Journal back byte for byte, the next backup
// continues the same history, and the old key is refused.
func TestReflashKeepsHistory(t *testing.T) {
	d := StartDaemon(t, t.TempDir()) // open registration: a key change still waits
	src := newJournal(t, 1)
	old := t.TempDir()
	if r, e, code := register(t, d, old, "SHC100"); code != 0 || !r.Approved {
		t.Fatalf("first registration: %+v %s", r, e)
	}
	runBackup(t, old, src)
	journalgen.Mutate(src, 1, 1)
	runBackup(t, old, src, "--force")

	fresh := t.TempDir() // the reflash
	r, e, code := register(t, d, fresh, "SHC100")
	if code != 0 || r.Approved || !r.KeyChange {
		t.Fatalf("registration after the reflash: exit %d %+v %s", code, r, e)
	}
	if _, _, code := xo(t, fresh, "list"); code == 0 {
		t.Fatal("an unapproved key change lists the history")
	}
	var pending []struct {
		Serial     string `json:"serial"`
		KeyChange  bool   `json:"key_change"`
		NewKey     string `json:"new_key"`
		OldKey     string `json:"old_key"`
		Snapshots  int    `json:"snapshots"`
		LastBackup string `json:"last_backup"`
	}
	adminJSON(t, d.Data, &pending, "pending")
	if len(pending) != 1 || !pending[0].KeyChange || pending[0].NewKey != r.Key || pending[0].OldKey == "" || pending[0].Snapshots != 2 || pending[0].LastBackup == "" {
		t.Fatalf("xs-admin pending: %+v (laptop key %s)", pending, r.Key)
	}
	if _, e, code := admin(t, d.Data, "approve", "SHC100", "--key", "SHA256:nottheoneatall"); code == 0 || !strings.Contains(e, "do not approve") {
		t.Fatalf("approve with the wrong key: exit %d %s", code, e)
	}
	if o, e, code := admin(t, d.Data, "approve", "SHC100", "--key", r.Key); code != 0 {
		t.Fatalf("approve: %s %s", o, e)
	}
	restoreAll(t, fresh, src)
	journalgen.Mutate(src, 2, 1)
	runBackup(t, fresh, src, "--force")
	if n := snapshotCount(t, d, "SHC100"); n != 3 {
		t.Fatalf("%d snapshots after the reflashed laptop's backup, want 3 (the same history)", n)
	}
	var users []map[string]any
	adminJSON(t, d.Data, &users, "users")
	if len(users) != 1 {
		t.Fatalf("%d users after the reflash, want 1", len(users))
	}
	if _, _, code := xo(t, old, "list"); code == 0 {
		t.Fatal("the old key still lists the backups")
	}
	if _, _, code := register(t, d, old, "SHC100"); code == 0 {
		t.Fatal("the replaced key registered again")
	}
}

// TestClaimCodeReflash: staff issue a claim code before a class reflash; the
// reflashed laptop gives it at register and continues at once; a wrong code
// gets nothing, and the code works once.
func TestClaimCodeReflash(t *testing.T) {
	d := StartDaemon(t, t.TempDir(), "--registration", "approve")
	src := newJournal(t, 2)
	old := t.TempDir()
	register(t, d, old, "SHC200")
	admin(t, d.Data, "approve", "SHC200")
	runBackup(t, old, src)
	var claim struct {
		Code string `json:"code"`
	}
	adminJSON(t, d.Data, &claim, "claim-code", "SHC200", "--expires", "2d")
	if len(claim.Code) < 10 {
		t.Fatalf("claim code %q", claim.Code)
	}
	fresh := t.TempDir()
	if _, _, code := register(t, d, fresh, "SHC200", "--claim", "zzzzz-zzzzz"); code == 0 {
		t.Fatal("a wrong claim code was accepted")
	}
	r, e, code := register(t, d, fresh, "SHC200", "--claim", strings.ToUpper(claim.Code))
	if code != 0 || !r.Approved || !r.Continued || r.Snapshots != 1 {
		t.Fatalf("register --claim: exit %d %+v %s", code, r, e)
	}
	restoreAll(t, fresh, src)
	runBackup(t, fresh, src, "--force")
	if n := snapshotCount(t, d, "SHC200"); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}
	if _, _, code := register(t, d, t.TempDir(), "SHC200", "--claim", claim.Code); code == 0 {
		t.Fatal("a claim code worked twice")
	}
	if _, _, code := xo(t, old, "list"); code == 0 {
		t.Fatal("the old key still lists the backups")
	}
}

// TestNoInheritanceWithoutProof: after xs-admin alias OLD NEW or xs-admin
// register NEW, the first device to register NEW gets nothing, in open and
// approve mode; the real laptop gets the history once staff approve its key.
func TestNoInheritanceWithoutProof(t *testing.T) {
	for _, mode := range []string{"open", "approve"} {
		t.Run(mode, func(t *testing.T) {
			d := StartDaemon(t, t.TempDir(), "--registration", mode)
			src := newJournal(t, 3)
			victim := t.TempDir()
			register(t, d, victim, "OLD300")
			admin(t, d.Data, "approve", "OLD300")
			runBackup(t, victim, src)
			if o, e, code := admin(t, d.Data, "alias", "OLD300", "NEW300"); code != 0 {
				t.Fatalf("alias: %s %s", o, e)
			}
			if o, e, code := admin(t, d.Data, "register", "PRE300"); code != 0 {
				t.Fatalf("register by hand: %s %s", o, e)
			}
			for _, serial := range []string{"NEW300", "PRE300"} {
				thief := t.TempDir()
				r, e, code := register(t, d, thief, serial)
				if code != 0 || r.Approved || !r.KeyChange {
					t.Fatalf("%s: the first device to register: exit %d %+v %s", serial, code, r, e)
				}
				if _, _, code := xo(t, thief, "list"); code == 0 {
					t.Fatalf("%s: the first device lists the history", serial)
				}
				if _, _, code := xo(t, thief, "restore", "--all", "--journal", filepath.Join(t.TempDir(), "j")); code == 0 {
					t.Fatalf("%s: the first device restored the history", serial)
				}
				if _, _, code := register(t, d, t.TempDir(), serial, "--claim", "aaaaa-aaaaa"); code == 0 {
					t.Fatalf("%s: a guessed claim code was accepted", serial)
				}
			}
			// The real laptop registers; the thief asks again after it;
			// staff approve the key the real laptop showed: refused while
			// the thief's key waits, accepted once the real one asks again.
			real := t.TempDir()
			rr, _, _ := register(t, d, real, "NEW300")
			register(t, d, t.TempDir(), "NEW300")
			if _, e, code := admin(t, d.Data, "approve", "NEW300", "--key", rr.Key); code == 0 {
				t.Fatalf("approve --key of a key no longer waiting: %s", e)
			}
			register(t, d, real, "NEW300")
			if o, e, code := admin(t, d.Data, "approve", "NEW300", "--key", rr.Key); code != 0 {
				t.Fatalf("approve: %s %s", o, e)
			}
			restoreAll(t, real, src)
			if _, _, code := xo(t, victim, "list"); code == 0 {
				t.Fatal("the old laptop still lists the backups after the alias")
			}
		})
	}
}

// TestRevokeUndoAndReregister: a revoked laptop's backups stay reachable by
// serial; unrevoke undoes it; a revoked laptop that registers again with a
// new key continues its history when staff approve, or starts a new one
// (the old one kept as SERIAL.old) if they choose.
func TestRevokeUndoAndReregister(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	src := newJournal(t, 4)
	st := t.TempDir()
	register(t, d, st, "SHC400")
	runBackup(t, st, src)
	admin(t, d.Data, "revoke", "SHC400")
	if _, _, code := xo(t, st, "run", "--source", src, "--force"); code == 0 {
		t.Fatal("a revoked laptop backed up")
	}
	if n := snapshotCount(t, d, "SHC400"); n != 1 {
		t.Fatalf("a revoked laptop's snapshots: %d", n)
	}
	if _, e, code := register(t, d, st, "SHC400"); code == 0 || !strings.Contains(e, "unrevoke") {
		t.Fatalf("re-registering the revoked key: exit %d %s", code, e)
	}
	if o, e, code := admin(t, d.Data, "unrevoke", "SHC400"); code != 0 {
		t.Fatalf("unrevoke: %s %s", o, e)
	}
	runBackup(t, st, src, "--force")

	// Revoked, then reflashed: continue.
	admin(t, d.Data, "revoke", "SHC400")
	st2 := t.TempDir()
	if r, e, code := register(t, d, st2, "SHC400"); code != 0 || !r.KeyChange {
		t.Fatalf("register after revoke: %+v %s", r, e)
	}
	if o, e, code := admin(t, d.Data, "approve", "SHC400"); code != 0 {
		t.Fatalf("approve after revoke: %s %s", o, e)
	}
	restoreAll(t, st2, src)
	runBackup(t, st2, src, "--force")
	if n := snapshotCount(t, d, "SHC400"); n != 3 {
		t.Fatalf("%d snapshots after continuing, want 3", n)
	}

	// Revoked, then a new history by staff's choice.
	admin(t, d.Data, "revoke", "SHC400")
	st3 := t.TempDir()
	register(t, d, st3, "SHC400")
	if o, e, code := admin(t, d.Data, "approve", "SHC400", "--new-history"); code != 0 {
		t.Fatalf("approve --new-history: %s %s", o, e)
	}
	runBackup(t, st3, newJournal(t, 5))
	if a, b := snapshotCount(t, d, "SHC400"), snapshotCount(t, d, "SHC400.old"); a != 1 || b != 3 {
		t.Fatalf("new history %d snapshots, old %d; want 1 and 3", a, b)
	}
	// alias SN SN says what to do instead of refusing with wrong advice.
	if _, e, code := admin(t, d.Data, "alias", "SHC400", "SHC400"); code == 0 || !strings.Contains(e, "approve") {
		t.Fatalf("alias SN SN: exit %d %s", code, e)
	}
}
