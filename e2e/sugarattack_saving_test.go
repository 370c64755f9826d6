package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type saVersion struct {
	Op, UID, Title, Data, Preview, Description string
}

// TestSugarAttackBackupsWhileSugarSaves: a child's activities autosave
// while the timer's backup runs. Sugar's real datastore is driven the way
// activities and the Journal drive it: four entries updated in turn (as
// an activity's autosave hands its file over; every third as the
// Journal's copy, which the datastore copies in 64 KiB steps in its idle
// loop), entries created and the ones created deleted, all as fast as the
// datastore answers, while `xo-backup run --force --source JOURNAL` runs
// five times. Each snapshot is then restored (`restore --all --snapshot
// ID`) into a fresh Journal and read back through Sugar's own datastore.
// Expected: every entry Sugar lists there has a document, and its
// document, title, description and preview are one version the writer
// saved, from one save or, for a save Sugar was in the middle of, from it
// and the one before, as Sugar's own directory held them (never a
// truncated document, never versions further apart); and every entry saved
// before the backups started (the churned ones included, which were never
// deleted) is listed, the untouched ones exactly as saved.
func TestSugarAttackBackupsWhileSugarSaves(t *testing.T) {
	w := newSAWorld(t, "SHCSA001")
	tmp := filepath.Join(w.home, "default", "instance") // an activity's instance dir: same filesystem
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	var seeded map[string]saVersion
	saJSONLine(t, sugarSession(t, w.home, w.drv, `mkdir -p `+tmp+` && $PY $DRV seed 8 `+tmp), &seeded)
	if len(seeded) != 8 {
		t.Fatalf("seeded %d entries, want 8", len(seeded))
	}
	var churned []string
	for uid := range seeded {
		if len(churned) < 4 {
			churned = append(churned, uid)
		}
	}
	logp := filepath.Join(w.root, "saves.log")
	stop := filepath.Join(w.root, "stop")
	runs := filepath.Join(w.root, "runs.out")
	xoBin := filepath.Join(bin, "xo-backup")
	backup := xoBin + ` --state ` + w.state + ` run --force --json --source "$SUGAR_HOME/default/datastore" >>` + runs + ` 2>&1`
	sugarSession(t, w.home, w.drv, `$PY $DRV churn `+tmp+` `+logp+` `+stop+` `+strings.Join(churned, " ")+` & c=$!
sleep 0.5
for i in 1 2 3 4 5; do `+backup+`; sleep 0.1; done
touch `+stop+`
wait $c`)

	// Every version the writer saved, by uid.
	saved := map[string][]saVersion{}
	for uid, v := range seeded {
		v.UID = uid
		saved[uid] = append(saved[uid], v)
	}
	f, err := os.Open(logp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	nsaves := 0
	for sc.Scan() {
		var v saVersion
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if v.Op == "save" {
			saved[v.UID] = append(saved[v.UID], v)
			nsaves++
		}
	}
	if nsaves < 20 {
		t.Fatalf("the writer saved only %d versions while the backups ran; want a busy Sugar", nsaves)
	}
	snaps := saSnapshots(t, w.state)
	if len(snaps) != 5 {
		out, _ := os.ReadFile(runs)
		t.Fatalf("%d snapshots after five forced runs, want 5: %s", len(snaps), out)
	}
	t.Logf("%d versions saved during 5 backups", nsaves)
	defer func() {
		if t.Failed() {
			out, _ := os.ReadFile(runs)
			t.Logf("the runs said: %s", out)
		}
	}()

	for i, id := range snaps {
		home := filepath.Join(w.root, fmt.Sprintf("restored%d", i))
		journal := filepath.Join(home, "default", "datastore")
		if out, errOut, code := xo(t, w.state, "restore", "--all", "--snapshot", id, "--journal", journal); code != 0 {
			t.Fatalf("restore --all --snapshot %s: %d %s %s", id, code, out, errOut)
		}
		got := sugarDump(t, home, w.drv)
		for uid, g := range got {
			versions, known := saved[uid]
			if !known {
				t.Errorf("snapshot %s: Sugar lists %s (%q), an entry the writer never saved", id, uid, g["title"])
				continue
			}
			if g["data"] == "" {
				// Sugar writes a new entry's metadata, then its index,
				// then its document: an entry created during the backup
				// may be caught between them, as Sugar's Journal would
				// list it then. One saved before the backups, never.
				if _, old := seeded[uid]; old {
					t.Errorf("snapshot %s: %s (%q) is listed without its document", id, uid, g["title"])
				}
				continue
			}
			// Sugar saves an entry's metadata key by key, then its
			// document, so while one save is in progress its own
			// directory holds parts of that save and of the one before:
			// a snapshot may hold those (Sugar lists the same), and
			// nothing else. Before the entry-level check of the backup,
			// a save during the backup's reading of an entry could mix
			// any two versions, and a document copied in could be cut.
			idx := func(match func(v saVersion) bool) int {
				for k, v := range versions {
					if match(v) {
						return k
					}
				}
				return -1
			}
			kd := idx(func(v saVersion) bool { return v.Data == g["data"] })
			kt := idx(func(v saVersion) bool { return v.Title == g["title"] })
			kp := idx(func(v saVersion) bool { return v.Preview == g["preview"] })
			kx := idx(func(v saVersion) bool { return v.Description == g["description"] })
			newest := max(kd, kt, kp, kx)
			switch {
			case kd < 0:
				t.Errorf("snapshot %s: %s (%q): its document (sha %.12s) is no version the writer saved: truncated or torn", id, uid, g["title"], g["data"])
			case kt < 0 || kp < 0 || kx < 0:
				t.Errorf("snapshot %s: %s: title %q, preview %.8s or description %q is no version the writer saved", id, uid, g["title"], g["preview"], g["description"])
			case min(kd, kt, kp, kx) < newest-1:
				t.Errorf("snapshot %s: %s mixes saves more than one apart: title %q, document of %q, description %q", id, uid, g["title"], versions[kd].Title, g["description"])
			}
		}
		for uid, v := range seeded {
			g, ok := got[uid]
			if !ok {
				t.Errorf("snapshot %s: %s (%q), saved before the backups and never deleted, is missing", id, uid, v.Title)
				continue
			}
			if len(saved[uid]) == 1 && (g["title"] != v.Title || g["data"] != v.Data || g["preview"] != v.Preview) {
				t.Errorf("snapshot %s: untouched entry %s: %v, saved as %+v", id, uid, g, v)
			}
		}
	}
}
