package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
)

// copyTree copies a directory (the Journal as it was on a given day).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoreEndToEnd: staff list a laptop's Journal by title, restore one
// entry from an older backup (as files, as a .xoj, in a tar), then move the
// student to a replacement laptop, which gets its whole Journal back.
func TestRestoreEndToEnd(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	state, src := t.TempDir(), t.TempDir()
	ents, err := journalgen.Generate(src, journalgen.Small(31))
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "OLD1", "--nickname", "Amani"); code != 0 {
		t.Fatal(errOut)
	}
	first := runBackup(t, state, src)
	day0 := t.TempDir()
	copyTree(t, src, day0)
	journalgen.Mutate(src, 31, 1)
	runBackup(t, state, src, "--force")

	// An entry whose document the edit round changed.
	var changed journalgen.Entry
	for _, e := range ents {
		p := filepath.Join(e.UID[:2], e.UID, "data")
		a, _ := os.ReadFile(filepath.Join(day0, p))
		b, _ := os.ReadFile(filepath.Join(src, p))
		if !bytes.Equal(a, b) {
			changed = e
		}
	}
	if changed.UID == "" {
		t.Fatal("the edit round changed no document")
	}
	old, _ := os.ReadFile(filepath.Join(day0, changed.UID[:2], changed.UID, "data"))

	var ls struct {
		Snapshot string
		Entries  []struct{ UID, Title, Activity string }
	}
	adminJSON(t, d.Data, &ls, "ls", "OLD1")
	titles := map[string]string{}
	for _, e := range ls.Entries {
		titles[e.UID] = e.Title
	}
	for _, e := range ents {
		if titles[e.UID] != e.Title {
			t.Errorf("ls shows %q for %s, want %q", titles[e.UID], e.UID, e.Title)
		}
	}
	if len(ls.Entries) != len(ents)+1 {
		t.Errorf("ls lists %d entries, the Journal has %d", len(ls.Entries), len(ents)+1)
	}
	text, _, _ := admin(t, d.Data, "ls", "OLD1")
	if !strings.Contains(text, changed.Title) {
		t.Errorf("ls text lacks %q:\n%s", changed.Title, text)
	}

	// From the first (not the latest) snapshot, by title.
	to := t.TempDir()
	if o, e, code := admin(t, d.Data, "restore", "OLD1", "--snapshot", first.Snapshot, "--title", changed.Title, "--to", to); code != 0 {
		t.Fatalf("restore --title: %s %s", o, e)
	}
	got, err := os.ReadFile(filepath.Join(to, changed.UID[:2], changed.UID, "data"))
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("restored document differs from the first backup's (%v)", err)
	}
	if err := dircmp.Compare(filepath.Join(day0, changed.UID[:2], changed.UID), filepath.Join(to, changed.UID[:2], changed.UID), nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(to, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Fatalf("restore --title wrote %d documents, want exactly 1", n)
	}

	// As a Journal Entry Bundle.
	xojDir := t.TempDir()
	if o, e, code := admin(t, d.Data, "restore", "OLD1", "--snapshot", first.Snapshot, "--entry", changed.UID, "--xoj", xojDir); code != 0 {
		t.Fatalf("restore --xoj: %s %s", o, e)
	}
	bundles, _ := filepath.Glob(filepath.Join(xojDir, "*.xoj"))
	if len(bundles) != 1 {
		t.Fatalf("--xoj wrote %v", bundles)
	}
	zr, err := zip.OpenReader(bundles[0])
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	members := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		members[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	if !bytes.Equal(members[changed.UID+"/"+changed.UID], old) {
		t.Fatalf("bundle members %v: data missing or wrong", keys(members))
	}
	var meta map[string]any
	if err := json.Unmarshal(members[changed.UID+"/_metadata.json"], &meta); err != nil || meta["title"] != changed.Title || meta["uid"] != changed.UID || meta["activity"] != changed.Activity {
		t.Fatalf("bundle metadata %v (%v)", meta, err)
	}
	for name := range members {
		if !strings.HasPrefix(name, changed.UID+"/") {
			t.Fatalf("bundle member %q is outside %s/", name, changed.UID)
		}
	}

	// The whole latest snapshot as a tar file.
	tarPath := filepath.Join(t.TempDir(), "journal.tar")
	tarOut, e, code := admin(t, d.Data, "restore", "OLD1", "--tar", tarPath, "--json")
	if code != 0 {
		t.Fatalf("restore --tar: %s %s", tarOut, e)
	}
	f, _ := os.Open(tarPath)
	tr := tar.NewReader(f)
	var files, fileBytes int64
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Typeflag == tar.TypeReg {
			files++
			fileBytes += h.Size
		}
	}
	f.Close()
	if files < int64(len(ents))*5 {
		t.Fatalf("the tar holds %d files", files)
	}
	// Staff are told what the file holds (it said 0 files before).
	var said struct{ Files, Bytes int64 }
	if err := json.Unmarshal([]byte(tarOut), &said); err != nil || said.Files != files || said.Bytes != fileBytes {
		t.Fatalf("restore --tar --json said %s (%v); the file holds %d files, %d bytes", tarOut, err, files, fileBytes)
	}

	// The laptop is replaced: the new one registers, staff alias the
	// student onto it, and it gets the whole Journal back.
	newState, newJournal := t.TempDir(), filepath.Join(t.TempDir(), "datastore")
	if _, errOut, code := xo(t, newState, "register", "--server", d.Addr, "--serial", "NEW1"); code != 0 {
		t.Fatal(errOut)
	}
	if o, e, code := admin(t, d.Data, "alias", "OLD1", "NEW1"); code != 0 {
		t.Fatalf("alias: %s %s", o, e)
	}
	// The alias alone trusts no key: staff approve the one that registered.
	if o, e, code := admin(t, d.Data, "approve", "NEW1"); code != 0 {
		t.Fatalf("approve: %s %s", o, e)
	}
	if o, e, code := xo(t, newState, "restore", "--all", "--journal", newJournal); code != 0 {
		t.Fatalf("restore --all on the new laptop: %s %s", o, e)
	}
	restoredJournalEquals(t, src, newJournal)
	// Again into the now non-empty Journal: refused without --force.
	if _, e, code := xo(t, newState, "restore", "--all", "--journal", newJournal); code == 0 || !strings.Contains(e, "force") {
		t.Fatalf("restore --all over a Journal: exit %d %s", code, e)
	}
	// The old laptop can no longer use the backups.
	if _, _, code := xo(t, state, "list"); code == 0 {
		t.Fatal("the old laptop still lists the student's backups after alias")
	}
	var snaps []map[string]any
	adminJSON(t, d.Data, &snaps, "snapshots", "NEW1")
	if len(snaps) != 2 {
		t.Fatalf("NEW1 has %d snapshots, want the student's 2", len(snaps))
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
