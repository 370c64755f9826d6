package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// saEntry is an entry for the driver's save command.
func saEntry(uid, title, data string) string {
	e := map[string]any{"props": map[string]string{"title": title, "mime_type": "text/plain", "activity": "org.laptop.AbiWordActivity", "description": title}, "data": data}
	if uid != "" {
		e["uid"] = uid
	}
	b, _ := json.Marshal(e)
	return string(b)
}

// saSave runs the driver's save command with the entries given, in a
// session of its own, and returns their uids.
func saSave(t *testing.T, w *saWorld, entries ...string) []string {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "spec.json")
	list := "["
	for i, e := range entries {
		if i > 0 {
			list += ","
		}
		list += e
	}
	if err := os.WriteFile(spec, []byte(list+"]"), 0o644); err != nil {
		t.Fatal(err)
	}
	var uids []string
	saJSONLine(t, sugarSession(t, w.home, w.drv, `$PY $DRV save `+t.TempDir()+` `+spec), &uids)
	return uids
}

// TestSugarAttackRestoreOneEntryIntoTheLiveJournal: a child erases an
// entry in the Journal, and gets it back with `xo-backup restore --to
// <the Journal's directory> <xx/uid>` from the Terminal while Sugar runs;
// she also spoils another entry and restores it with --force over the
// one still there. Expected: the command succeeds, and after Sugar
// restarts the Journal lists both with their backed-up title, preview and
// document, and every other entry as it was.
func TestSugarAttackRestoreOneEntryIntoTheLiveJournal(t *testing.T) {
	w := newSAWorld(t, "SHCSA003")
	sugarSession(t, w.home, w.drv, `$PY $DRV create 4 Drawing `+t.TempDir())
	want := sugarDump(t, w.home, w.drv)
	if len(want) != 4 {
		t.Fatalf("%d entries, want 4", len(want))
	}
	runBackup(t, w.state, w.journal)
	var erased, spoiled string
	for uid := range want {
		switch {
		case erased == "":
			erased = uid
		case spoiled == "":
			spoiled = uid
		}
	}
	saSave(t, w, saEntry(spoiled, "borrado por error", "nada\n"))

	out := filepath.Join(w.root, "restore.out")
	xoCmd := bin + `/xo-backup --state ` + w.state + ` restore --to "$SUGAR_HOME/default/datastore" `
	sugarSession(t, w.home, w.drv, `$PY $DRV delete `+erased+`
$PY $DRV find >/dev/null
`+xoCmd+erased[:2]+`/`+erased+` >`+out+` 2>&1 || { cat `+out+`; exit 1; }
`+xoCmd+`--force `+spoiled[:2]+`/`+spoiled+` >>`+out+` 2>&1 || { cat `+out+`; exit 1; }
$PY $DRV find >/dev/null`)

	sugarSameEntries(t, sugarDump(t, w.home, w.drv), want, "the restore and Sugar's restart")
}

// TestSugarAttackForcedRestoreAndSugarsOptimizer: Sugar's datastore keeps
// one copy of identical documents (its optimizer hard-links them and
// records each document's MD5 under checksums/, which backups leave out).
// A child restores two entries with --force over the versions she has
// now: A, whose document is now a hard link shared with entry B, and D,
// whose current document is recorded under its MD5; after Sugar restarts
// she saves a new entry C whose document is the same as D's spoiled
// version. Expected: B keeps its own document (the restore does not write
// through the shared link), A and D have their backed-up documents, and C
// has the document she saved (not another entry's, which the optimizer
// would link to if the restore left D recorded under the MD5 of the
// document it replaced).
func TestSugarAttackForcedRestoreAndSugarsOptimizer(t *testing.T) {
	w := newSAWorld(t, "SHCSA004")
	uids := saSave(t, w,
		saEntry("", "A", "A: mi cuento\n"),
		saEntry("", "B", "una canción que todos cantan\n"),
		saEntry("", "D", "D: mi dibujo\n"))
	a, b, d := uids[0], uids[1], uids[2]
	runBackup(t, w.state, w.journal)

	// A becomes the same as B (the optimizer links them); D is spoiled.
	saSave(t, w,
		saEntry(a, "A", "una canción que todos cantan\n"),
		saEntry(d, "D", "D: garabatos\n"))
	ia, _ := os.Stat(filepath.Join(w.journal, a[:2], a, "data"))
	ib, _ := os.Stat(filepath.Join(w.journal, b[:2], b, "data"))
	if ia == nil || ib == nil || !os.SameFile(ia, ib) {
		t.Fatalf("Sugar's optimizer did not link A's document to B's (identical): the test shows nothing")
	}

	if out, errOut, code := xo(t, w.state, "restore", "--force", "--to", w.journal, a[:2]+"/"+a, d[:2]+"/"+d); code != 0 {
		t.Fatalf("restore --force: %s %s", out, errOut)
	}
	c := saSave(t, w, saEntry("", "C", "D: garabatos\n"))[0]

	got := sugarDump(t, w.home, w.drv)
	for uid, body := range map[string]string{a: "A: mi cuento\n", b: "una canción que todos cantan\n", d: "D: mi dibujo\n", c: "D: garabatos\n"} {
		g, ok := got[uid]
		if !ok {
			t.Errorf("%s is not listed", uid)
			continue
		}
		if g["data"] != saSHA(body) {
			name := map[string]string{a: "A", b: "B", c: "C", d: "D"}[uid]
			t.Errorf("entry %s (%q) has a document of sha %.12s, want its own %q", name, g["title"], g["data"], body)
		}
	}
}
