package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// sugarDriver talks to Sugar's real datastore over D-Bus, as the Journal
// and activities do: "create N PREFIX DIR" saves N entries with documents,
// "find" prints what the Journal lists from the datastore's index (its
// titles, and the count the datastore gives) once the datastore has
// finished indexing, "dump" each indexed entry's metadata and the hashes
// of its preview and document, "install BUNDLE..." opens .xoj files as the
// Journal does.
const sugarDriver = `
import sys, json, time, hashlib, dbus
from dbus.mainloop.glib import DBusGMainLoop
DBusGMainLoop(set_as_default=True)
from gi.repository import GLib
bus = dbus.SessionBus()
NAME = 'org.laptop.sugar.DataStore'
for _ in range(300):
    if bus.name_has_owner(NAME):
        break
    time.sleep(0.1)
else:
    sys.exit('the datastore did not start')
ds = dbus.Interface(bus.get_object(NAME, '/org/laptop/sugar/DataStore'), NAME)

def indexed():
    # While the datastore rebuilds its index it lists the entries on disk
    # (and find_ids lists none): wait for the index to answer.
    for _ in range(600):
        entries, count = ds.find({}, ['uid'], timeout=60)
        if len(ds.find_ids({}, timeout=60)) == int(count):
            return [str(e['uid']) for e in entries]
        time.sleep(0.1)
    sys.exit('the datastore did not finish indexing')

def sha(b):
    return hashlib.sha256(bytes(b)).hexdigest() if b else ''

cmd = sys.argv[1]
if cmd == 'create':
    # Entries as activities save them; every other one without a preview.
    n, prefix, tmp = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    for i in range(n):
        path = '%s/%s-%d.txt' % (tmp, prefix, i)
        with open(path, 'w') as f:
            f.write('%s %d: what a child wrote\n' % (prefix, i) * 50)
        props = {'title': '%s %d' % (prefix, i), 'mime_type': 'text/plain',
                 'activity': 'org.laptop.AbiWordActivity',
                 'description': 'un dibujo del ñandú — %d' % i, 'tags': 'río escuela',
                 'keep': '1' if i % 3 == 0 else '0'}
        if i % 2 == 0:
            props['preview'] = dbus.ByteArray(b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * (i + 1))
        ds.create(props, path, False, timeout=60)
elif cmd == 'find':
    indexed()
    entries, count = ds.find({}, ['title'], timeout=60)
    print(json.dumps({'titles': sorted(str(e['title']) for e in entries), 'count': int(count)}))
elif cmd == 'dump':
    out = {}
    for uid in indexed():
        p = ds.get_properties(uid, timeout=60)
        name = ds.get_filename(uid, timeout=60)
        data = open(name, 'rb').read() if name else b''
        out[uid] = {k: str(p.get(k, '')) for k in ('title', 'description', 'tags', 'mime_type', 'activity', 'keep')}
        out[uid]['preview'] = sha(p.get('preview', b''))
        out[uid]['data'] = sha(data)
    print(json.dumps(out))
elif cmd == 'install':
    # The Journal's own importer (jarabe), as opening a downloaded .xoj runs
    # it. Its clean-up of the unpacked bundle is held until the datastore
    # has answered: in Sugar 0.120 it removes the document before the
    # datastore (answering the write asynchronously) has taken it, so
    # installed entries lose their documents whatever the bundle holds.
    import gi, shutil
    gi.require_version('SugarExt', '1.0')
    from jarabe.journal import journalentrybundle
    held, rmtree = [], shutil.rmtree
    journalentrybundle.shutil.rmtree = lambda p, **kw: held.append(p)
    for path in sys.argv[2:]:
        journalentrybundle.JournalEntryBundle(path).install()
    loop = GLib.MainLoop()
    def done():
        entries, count = ds.find({}, ['uid'], timeout=60)
        if int(count) >= len(sys.argv[2:]):
            loop.quit()
            return False
        return True
    GLib.timeout_add(100, done)
    GLib.timeout_add(30000, loop.quit)
    loop.run()
    for p in held:
        rmtree(p, ignore_errors=True)
`

// sugarSession runs script under a session bus of its own, with Sugar's
// datastore started on home's Journal (SUGAR_HOME) and stopped as a
// logout stops it (SIGTERM: it flushes its index and marks itself clean).
// The script finds the driver as $DRV and Python as $PY.
func sugarSession(t *testing.T, home, drv, script string) string {
	t.Helper()
	full := `set -e
/usr/bin/datastore-service & ds=$!
trap 'kill -TERM $ds 2>/dev/null; wait $ds || true' EXIT
` + script
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", "--", "sh", "-c", full)
	cmd.Env = append(os.Environ(), "SUGAR_HOME="+home, "DRV="+drv, "PY=/usr/bin/python3", "HOME="+home)
	// A session that hangs is killed whole: the bus, the datastore, the driver.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Sugar session %q: %v\n%s", script, err, out)
	}
	return string(out)
}

type sugarListing struct {
	Titles []string `json:"titles"`
	Count  int      `json:"count"`
}

// sugarFind is what the Journal lists, in a session of its own.
func sugarFind(t *testing.T, home, drv string) sugarListing {
	t.Helper()
	out := sugarSession(t, home, drv, `$PY $DRV find`)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			var l sugarListing
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("find: %q: %v", line, err)
			}
			return l
		}
	}
	t.Fatalf("find printed no listing:\n%s", out)
	return sugarListing{}
}

// sugarWorld skips the test without Sugar (see needSugar) and returns a
// temporary directory, the SUGAR_HOME in it, that home's Journal and the
// driver script's path.
func sugarWorld(t *testing.T) (root, home, journal, drv string) {
	t.Helper()
	needSugar(t)
	root = t.TempDir()
	home = filepath.Join(root, "sugar")
	journal = filepath.Join(home, "default", "datastore")
	drv = filepath.Join(root, "drv.py")
	if err := os.WriteFile(drv, []byte(sugarDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, home, journal, drv
}

// needSugar skips (fails in CI, which installs them) without Debian's
// python3-carquinyol (Sugar's datastore) and dbus-run-session.
func needSugar(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []string{"/usr/bin/datastore-service", "/usr/bin/python3"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if _, err := exec.LookPath("dbus-run-session"); err != nil {
		missing = append(missing, "dbus-run-session")
	}
	if len(missing) == 0 {
		return
	}
	msg := "Sugar's datastore is not installed (apt-get install python3-carquinyol dbus): missing " + strings.Join(missing, ", ")
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; .ci/run installs it")
	}
	t.Skip(msg)
}

// TestSugarListsTheRestoredJournal: with Sugar's real datastore, a child's
// Journal backed up, the laptop reflashed (a new, empty Journal that
// Sugar starts on), `xo-backup restore --all` run while Sugar runs (from
// the Terminal, as a child or teacher would) and a new entry saved after
// it: once Sugar starts again, its Journal lists every restored entry and
// the new one. (Before, the entries were on disk and the Journal listed
// only the new one: Sugar lists what its index holds, and its index did
// not know them.)
func TestSugarListsTheRestoredJournal(t *testing.T) {
	root, home, journal, drv := sugarWorld(t)
	docs := t.TempDir()

	sugarSession(t, home, drv, `$PY $DRV create 4 Drawing `+docs)
	before := sugarFind(t, home, drv)
	want := []string{"Drawing 0", "Drawing 1", "Drawing 2", "Drawing 3"}
	if !slices.Equal(before.Titles, want) {
		t.Fatalf("the Journal before the backup lists %v, want %v", before.Titles, want)
	}

	d := StartDaemon(t, t.TempDir())
	state := t.TempDir()
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "SHC5150", "--nickname", "kid"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	runBackup(t, state, journal)
	// Staff see the entries by the titles the Journal shows, read from
	// the files Sugar's own datastore wrote.
	var listing struct {
		Entries []struct {
			UID, Title string
			Size       int64
		}
	}
	adminJSON(t, d.Data, &listing, "ls", "SHC5150")
	var titles []string
	for _, e := range listing.Entries {
		titles = append(titles, e.Title)
		if e.Size != 1500 {
			t.Errorf("xs-admin ls: %s (%s) is %d bytes, want its document's 1500", e.Title, e.UID, e.Size)
		}
	}
	slices.Sort(titles)
	if !slices.Equal(titles, want) {
		t.Errorf("xs-admin ls lists %v, want the Journal's %v", titles, want)
	}

	// The reflash: a new, empty Journal, which Sugar starts on.
	if err := os.RemoveAll(journal); err != nil {
		t.Fatal(err)
	}
	if l := sugarFind(t, home, drv); l.Count != 0 {
		t.Fatalf("the new Journal lists %v", l.Titles)
	}

	// Restored while Sugar runs; then the child saves something new.
	restoreOut := filepath.Join(root, "restore.out")
	sugarSession(t, home, drv, `$PY $DRV find >/dev/null
`+filepath.Join(bin, "xo-backup")+` --state `+state+` restore --all --journal "$SUGAR_HOME/default/datastore" >`+restoreOut+` 2>&1 || { cat `+restoreOut+`; exit 1; }
$PY $DRV create 1 New `+docs)
	said, err := os.ReadFile(restoreOut)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(said), "Restored ") || !strings.Contains(string(said), "once Sugar starts again") {
		t.Errorf("restore --all said %q: no summary, or nothing on when the Journal lists the entries", said)
	}

	after := sugarFind(t, home, drv)
	want = append(want, "New 0")
	if !slices.Equal(after.Titles, want) || after.Count != len(want) {
		t.Fatalf("after the restore and Sugar's restart the Journal lists %v (count %d), want %v", after.Titles, after.Count, want)
	}
	// And it stays so at the start after.
	if again := sugarFind(t, home, drv); !slices.Equal(again.Titles, want) {
		t.Fatalf("at the next start the Journal lists %v, want %v", again.Titles, want)
	}
}

// TestSugarImportsTheJournalEntryBundles: entries saved through Sugar's
// own datastore (with and without previews, non-ASCII metadata), backed
// up by the real programs, written as Journal Entry Bundles by `xs-admin
// restore --xoj` (the restore page serves the same bundles), and opened
// on another laptop's Journal by the Journal's own importer (jarabe's
// JournalEntryBundle): each comes back under its uid with its title,
// description, tags, type, activity, keep flag, preview and document.
// Before, a bundle of an entry without a preview made Sugar 0.120's
// importer fail (it hands the text it reads for a missing preview to
// dbus.ByteArray), and the child got nothing.
func TestSugarImportsTheJournalEntryBundles(t *testing.T) {
	needSugar(t)
	if _, err := os.Stat("/usr/lib/python3/dist-packages/jarabe/journal/journalentrybundle.py"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Sugar's Journal (python3-jarabe) is not installed; .ci/run installs it")
		}
		t.Skip("Sugar's Journal is not installed (apt-get install --no-install-recommends python3-jarabe)")
	}
	root, home, _, drv := sugarWorld(t)
	sugarSession(t, home, drv, `$PY $DRV create 4 Drawing `+t.TempDir())
	want := sugarDump(t, home, drv)
	if len(want) != 4 {
		t.Fatalf("the Journal holds %d entries, want 4", len(want))
	}

	d := StartDaemon(t, t.TempDir())
	state := t.TempDir()
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "SHC5151", "--nickname", "kid"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	runBackup(t, state, filepath.Join(home, "default", "datastore"))
	xojDir := t.TempDir()
	if out, errOut, code := admin(t, d.Data, "restore", "SHC5151", "--xoj", xojDir); code != 0 {
		t.Fatalf("xs-admin restore --xoj: %s %s", out, errOut)
	}
	bundles, _ := filepath.Glob(filepath.Join(xojDir, "*.xoj"))
	if len(bundles) != len(want) {
		t.Fatalf("%d bundles for %d entries", len(bundles), len(want))
	}

	other := filepath.Join(root, "other")
	var args []string
	for _, b := range bundles { // titles name them: "Drawing 0.xoj"
		args = append(args, "'"+strings.ReplaceAll(b, "'", `'\''`)+"'")
	}
	sugarSession(t, other, drv, `$PY $DRV install `+strings.Join(args, " "))
	sugarSameEntries(t, sugarDump(t, other, drv), want, "the import")
}

// sugarSameEntries fails unless got (a sugarDump) lists exactly want's
// entries, each with want's values, after what is named by after.
func sugarSameEntries(t *testing.T, got, want map[string]map[string]string, after string) {
	t.Helper()
	for uid, w := range want {
		g, ok := got[uid]
		if !ok {
			t.Errorf("%s (%s) is not listed after %s", uid, w["title"], after)
			continue
		}
		for k, v := range w {
			if g[k] != v {
				t.Errorf("%s (%s): %s %q after %s, %q before", uid, w["title"], k, g[k], after, v)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("the Journal lists %d entries after %s, want %d", len(got), after, len(want))
	}
}

// sugarDump is each indexed entry's metadata, with its preview's and its
// document's SHA-256 ("" for none), by uid.
func sugarDump(t *testing.T, home, drv string) map[string]map[string]string {
	t.Helper()
	out := sugarSession(t, home, drv, `$PY $DRV dump`)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			var m map[string]map[string]string
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("dump: %q: %v", line, err)
			}
			return m
		}
	}
	t.Fatalf("dump printed nothing:\n%s", out)
	return nil
}

// TestSugarKeepsARestoredOldJournalWhole: a backup of a laptop still on
// Sugar 0.82's layout (store/<uid>, store/<uid>.metadata without a
// timestamp, as 0.82 wrote them), restored onto a reflashed laptop whose
// Sugar started on the new layout. Asking that Sugar to reindex would run
// its migration of the old layout, which in Sugar 0.120 deletes such
// entries or moves them without their documents: the restore leaves the
// Journal's version file, says the new Sugar will not list those entries
// and how to get their documents, and after Sugar's restart every old file
// is still there byte for byte.
func TestSugarKeepsARestoredOldJournalWhole(t *testing.T) {
	_, home, journal, drv := sugarWorld(t)
	old := t.TempDir()
	files := map[string]string{}
	for i, uid := range []string{"0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002"} {
		files["store/"+uid] = fmt.Sprintf("había una vez %d\n", i)
		files["store/"+uid+".metadata"] = fmt.Sprintf(`{"title": "Cuento %d", "mime_type": "text/plain", "activity": "org.laptop.AbiWordActivity", "mtime": "2008-09-01T08:00:00.123456"}`, i)
		files["store/preview/"+uid] = "\x89PNG old"
	}
	for name, content := range files {
		p := filepath.Join(old, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := StartDaemon(t, t.TempDir())
	state := t.TempDir()
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "SHC5152", "--nickname", "kid"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	runBackup(t, state, old)

	if l := sugarFind(t, home, drv); l.Count != 0 { // the reflashed laptop's Sugar
		t.Fatalf("the new Journal lists %v", l.Titles)
	}
	out, errOut, code := xo(t, state, "restore", "--all", "--journal", journal)
	if code != 1 || !strings.Contains(errOut, "Sugar 0.82") || !strings.Contains(errOut, "restore-link") || strings.Contains(out, "once Sugar starts again") {
		t.Errorf("restore --all of an old-layout Journal onto a new Sugar: exit %d, %q %q; want exit 1 saying the new Sugar will not list them, and where their documents are", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(journal, "version")); err != nil {
		t.Errorf("the new Journal's version file: %v; without it Sugar migrates the old layout and loses entries", err)
	}
	sugarFind(t, home, drv) // Sugar starts again
	for name, content := range files {
		if got, err := os.ReadFile(filepath.Join(journal, name)); err != nil || string(got) != content {
			t.Errorf("%s after Sugar's restart: %q, %v; want it as backed up", name, got, err)
		}
	}
}

// TestSugarKeepsAnEntryWhoseMetadataWasLeftOut: a restore that left an
// entry's metadata directory out (its copy on the server damaged) writes
// its document; Sugar, rebuilding its index, deletes an entry whose
// metadata it cannot read, document and all. The entry gets an empty
// metadata directory: after Sugar's restart it is listed, untitled, with
// its document, beside the whole entries.
func TestSugarKeepsAnEntryWhoseMetadataWasLeftOut(t *testing.T) {
	_, home, ds, drv := sugarWorld(t)
	sugarSession(t, home, drv, `$PY $DRV create 3 Drawing `+t.TempDir())
	before := sugarDump(t, home, drv)
	var lost string
	for uid := range before {
		lost = uid
		break
	}
	// What such a restore leaves: the entry's document, no metadata.
	if err := os.RemoveAll(filepath.Join(ds, lost[:2], lost, "metadata")); err != nil {
		t.Fatal(err)
	}
	if err := journal.RequestReindex(ds); err != nil {
		t.Fatal(err)
	}
	after := sugarDump(t, home, drv)
	if len(after) != len(before) {
		t.Fatalf("Sugar lists %d entries after its rebuild, want %d (the one without metadata deleted?)", len(after), len(before))
	}
	if after[lost]["data"] != before[lost]["data"] {
		t.Errorf("the entry without metadata: document %q after the rebuild, %q before", after[lost]["data"], before[lost]["data"])
	}
	for uid, e := range before {
		if uid != lost && after[uid]["title"] != e["title"] {
			t.Errorf("%s: title %q after the rebuild, %q before", uid, after[uid]["title"], e["title"])
		}
	}
}
