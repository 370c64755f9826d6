package e2e

// Compatibility across releases, with the real programs of an earlier
// release built from a git worktree: a school upgrades its server first and
// its laptops over months (some laptops are reimaged before their server),
// and an admin may roll the server package back for a night.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// compatPrevious is the previous release: the end of the previous
// development turn.
const compatPrevious = "ae8df14"

type compatBuild struct {
	once sync.Once
	sub  string // the programs' directory, relative to bin
	skip string
	err  error
}

var compatBuilds sync.Map // rev -> *compatBuild

// compatRelease builds xs-backupd, xo-backup and xs-admin of rev once per
// test binary (into bin/compat-REV, removed with bin by TestMain) from a
// worktree in a temporary directory, which is removed again at once. It
// returns the programs' directory relative to bin, for program(). The test
// is skipped only when rev is not in this repository's history (a shallow
// clone) or its modules cannot be fetched.
func compatRelease(t *testing.T, rev string) string {
	t.Helper()
	v, _ := compatBuilds.LoadOrStore(rev, &compatBuild{})
	b := v.(*compatBuild)
	b.once.Do(func() { b.sub, b.skip, b.err = buildRelease(t, rev) })
	if b.skip != "" {
		t.Skip(b.skip)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.sub
}

func buildRelease(t *testing.T, rev string) (sub, skip string, err error) {
	top, gerr := exec.Command("git", "-C", "..", "rev-parse", "--show-toplevel").Output()
	if gerr != nil {
		return "", "not a git checkout: the previous release cannot be built from a worktree", nil
	}
	root := strings.TrimSpace(string(top))
	if exec.Command("git", "-C", root, "cat-file", "-e", rev+"^{commit}").Run() != nil {
		return "", fmt.Sprintf("commit %s is not in this repository's history (shallow clone?): cannot build the previous release", rev), nil
	}
	parent, err := os.MkdirTemp("", "xs-compat-")
	if err != nil {
		return "", "", err
	}
	wt := filepath.Join(parent, rev)
	remove := func() {
		exec.Command("git", "-C", root, "worktree", "remove", "--force", wt).Run()
		os.RemoveAll(parent)
	}
	t.Cleanup(remove) // in case the build below never returns normally
	defer remove()
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", wt, rev).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("git worktree add %s: %v: %s", rev, err, out)
	}
	sub = "compat-" + rev
	// -trimpath: the worktree's path changes every run, the build cache
	// still serves the packages.
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, sub)+"/", "./cmd/xs-backupd", "./cmd/xo-backup", "./cmd/xs-admin")
	cmd.Dir = wt
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		text := string(out)
		for _, s := range []string{"dial tcp", "lookup ", "connection refused", "i/o timeout", "GOPROXY", "GOFLAGS=-mod=mod", "module lookup disabled", "no such host", "410 Gone", "404 Not Found"} {
			if strings.Contains(text, s) {
				return "", fmt.Sprintf("go build of %s cannot fetch its modules: %s", rev, strings.TrimSpace(text)), nil
			}
		}
		return "", "", fmt.Errorf("go build of %s: %v\n%s", rev, err, out)
	}
	return sub, "", nil
}

// startDaemonOf starts the xs-backupd of release sub ("" for this tree's)
// and waits until it is ready; its flags are the ones the previous release
// also has. It stops at the test's end if still running.
func startDaemonOf(t *testing.T, sub, data string, extra ...string) *Daemon {
	t.Helper()
	if sub == "" {
		return StartDaemon(t, data, extra...)
	}
	args := append([]string{"--config", "", "--listen", "127.0.0.1:0", "--data", data, "--metrics", "", "--page", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(filepath.Join(bin, sub, "xs-backupd"), args...)
	d, err := launchDaemon(t, cmd, data, sub)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// stopDaemon stops d with SIGTERM and fails the test at once unless it
// exits cleanly.
func stopDaemon(t *testing.T, d *Daemon) {
	t.Helper()
	d.Stop(t)
	if t.Failed() {
		t.FailNow()
	}
}

func xoOf(t *testing.T, sub, state string, args ...string) (string, string, int) {
	t.Helper()
	return program(t, nil, filepath.Join(sub, "xo-backup"), append([]string{"--state", state}, args...)...)
}

func adminOf(t *testing.T, sub, data string, args ...string) (string, string, int) {
	t.Helper()
	return program(t, nil, filepath.Join(sub, "xs-admin"), append([]string{"--data", data}, args...)...)
}

func adminJSONOf(t *testing.T, sub, data string, v any, args ...string) {
	t.Helper()
	out, errOut, code := adminOf(t, sub, data, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("%s xs-admin %v: exit %d: %s %s", sub, args, code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s xs-admin %v: %v in %q", sub, args, err, out)
	}
}

// compatRun is what xo-backup run --json reports in either release
// (round_trips is newer).
type compatRun struct {
	Outcome    string `json:"outcome"`
	Snapshot   string `json:"snapshot"`
	Files      int64  `json:"files"`
	BytesRead  int64  `json:"bytes_read"`
	BytesSent  int64  `json:"bytes_sent"`
	ChunksNew  int64  `json:"chunks_new"`
	WireSent   int64  `json:"wire_bytes_sent"`
	RoundTrips *int   `json:"round_trips"`
}

func runOf(t *testing.T, sub, state, src string, force bool) compatRun {
	t.Helper()
	args := []string{"run", "--source", src, "--json"}
	if force {
		args = append(args, "--force")
	}
	out, errOut, code := xoOf(t, sub, state, args...)
	var r compatRun
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%s xo-backup run: exit %d, output %q %s: %v", sub, code, out, errOut, err)
	}
	if code != 0 || r.Outcome != "done" || r.Snapshot == "" {
		t.Fatalf("%s xo-backup run: exit %d, %+v, %s", sub, code, r, errOut)
	}
	t.Logf("%s xo-backup run: read %d B, sent %d B (wire %d B), %d new chunks, round trips %v", name(sub), r.BytesRead, r.BytesSent, r.WireSent, r.ChunksNew, deref(r.RoundTrips))
	return r
}

func name(sub string) string {
	if sub == "" {
		return "current"
	}
	return sub
}

func deref(p *int) any {
	if p == nil {
		return "(not reported)"
	}
	return *p
}

func registerOf(t *testing.T, sub, state, addr, serial string) {
	t.Helper()
	out, errOut, code := xoOf(t, sub, state, "register", "--server", addr, "--serial", serial, "--nickname", "kid", "--json")
	var r struct {
		Approved bool `json:"approved"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !r.Approved {
		t.Fatalf("%s xo-backup register %s: exit %d: %s %s", name(sub), serial, code, out, errOut)
	}
}

// compatJournal writes the Journal a laptop had after day days of edits
// (0: as generated), with a 1 MiB recording made from rec when rec != 0.
func compatJournal(t *testing.T, dir string, seed uint64, days int, rec uint64) string {
	t.Helper()
	if _, err := journalgen.Generate(dir, journalgen.Small(seed)); err != nil {
		t.Fatal(err)
	}
	for d := 1; d <= days; d++ {
		if err := journalgen.Mutate(dir, seed, d); err != nil {
			t.Fatal(err)
		}
	}
	if rec != 0 {
		if err := os.WriteFile(filepath.Join(dir, "recording.ogg"), journalgen.Random(randFor(rec), 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func checkClean(t *testing.T, sub, data, when string) {
	t.Helper()
	out, errOut, code := adminOf(t, sub, data, "check", "--read-data")
	if code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("%s: %s xs-admin check --read-data: exit %d: %s %s", when, name(sub), code, out, errOut)
	}
}

type compatSnap struct {
	ID     string `json:"id"`
	Pinned bool   `json:"pinned"`
}

func snapIDs(t *testing.T, sub, data, serial string) []compatSnap {
	t.Helper()
	var s []compatSnap
	adminJSONOf(t, sub, data, &s, "snapshots", serial)
	return s
}

func restoredEquals(t *testing.T, sub, data, serial, id, want string) {
	t.Helper()
	to := filepath.Join(t.TempDir(), "r")
	if o, e, code := adminOf(t, sub, data, "restore", serial, "--snapshot", id, "--to", to); code != 0 {
		t.Fatalf("%s xs-admin restore %s %s: exit %d: %s %s", name(sub), serial, id, code, o, e)
	}
	if err := dircmp.Compare(want, to, backup.JournalExclude); err != nil {
		t.Fatalf("%s xs-admin restore %s %s differs from the Journal it was taken of: %v", name(sub), serial, id, err)
	}
}

type compatRetention struct {
	Retention struct {
		Kept    int `json:"kept"`
		Deleted int `json:"deleted"`
		Users   []struct {
			Serial    string `json:"serial"`
			Snapshots []struct {
				ID   string `json:"id"`
				Keep bool   `json:"keep"`
			} `json:"snapshots"`
		} `json:"users"`
	} `json:"retention"`
}

// TestCompatServerUpgradeKeepsEveryBackup: the previous release's daemon
// and laptops make a store (two laptops, three and two backups with Journal
// edits between, a snapshot pinned, retention and gc by the previous
// xs-admin); the server package is upgraded. Staff expect the new daemon to
// open it, check --read-data to be clean, every snapshot to be listed as
// before (pin kept) and to restore byte for byte (new xs-admin, and the new
// xo-backup on the old state directory), and the new nightly lifecycle to
// keep every snapshot young enough, then at +45 days the pinned and the
// latest ones, and still check clean.
func TestCompatServerUpgradeKeepsEveryBackup(t *testing.T) {
	old := compatRelease(t, compatPrevious)
	data := t.TempDir()
	od := startDaemonOf(t, old, data)
	type lap struct {
		serial, state, src string
		seed               uint64
		refs               map[string]string // snapshot -> the Journal it was taken of
	}
	laps := []*lap{{serial: "CMP0001", seed: 501}, {serial: "CMP0002", seed: 502}}
	for _, l := range laps {
		l.state, l.src, l.refs = t.TempDir(), t.TempDir(), map[string]string{}
		compatJournal(t, l.src, l.seed, 0, 0)
		registerOf(t, old, l.state, od.Addr, l.serial)
		r := runOf(t, old, l.state, l.src, false)
		l.refs[r.Snapshot] = compatJournal(t, t.TempDir(), l.seed, 0, 0)
	}
	for i, l := range laps {
		journalgen.Mutate(l.src, l.seed, 1)
		rec := uint64(600 + i)
		os.WriteFile(filepath.Join(l.src, "recording.ogg"), journalgen.Random(randFor(rec), 1<<20), 0o644)
		r := runOf(t, old, l.state, l.src, true)
		l.refs[r.Snapshot] = compatJournal(t, t.TempDir(), l.seed, 1, rec)
	}
	// Laptop 1 a third time (a new recording: the old one becomes garbage
	// once retention drops the second snapshot).
	l1 := laps[0]
	journalgen.Mutate(l1.src, l1.seed, 2)
	os.WriteFile(filepath.Join(l1.src, "recording.ogg"), journalgen.Random(randFor(700), 1<<20), 0o644)
	r := runOf(t, old, l1.state, l1.src, true)
	l1.refs[r.Snapshot] = compatJournal(t, t.TempDir(), l1.seed, 2, 700)

	before := map[string][]compatSnap{}
	for _, l := range laps {
		before[l.serial] = snapIDs(t, old, data, l.serial)
	}
	pinned := before["CMP0001"][0].ID
	if o, e, code := adminOf(t, old, data, "pin", "CMP0001", pinned, "--reason", "science fair"); code != 0 {
		t.Fatalf("old pin: %s %s", o, e)
	}
	// The previous release's retention drops laptop 2's first backup, its
	// nightly lifecycle and gc run.
	var ret struct{ Kept, Deleted int }
	adminJSONOf(t, old, data, &ret, "retention", "CMP0002", "--at", "+45d")
	if ret.Deleted != 1 || ret.Kept != 1 {
		t.Fatalf("the previous release's retention at +45d for CMP0002: %+v, want 1 deleted, 1 kept", ret)
	}
	var oldLife map[string]any
	adminJSONOf(t, old, data, &oldLife, "lifecycle")
	var oldGC map[string]any
	adminJSONOf(t, old, data, &oldGC, "gc", "--compact-below", "1")
	checkClean(t, old, data, "the previous release's own store")
	for _, l := range laps {
		before[l.serial] = snapIDs(t, old, data, l.serial)
	}
	if len(before["CMP0001"]) != 3 || len(before["CMP0002"]) != 1 || !before["CMP0001"][0].Pinned {
		t.Fatalf("the previous release's store before the upgrade: %+v (want 3 snapshots, the first pinned, and 1)", before)
	}
	stopDaemon(t, od)

	// The server package is upgraded: same data directory, same address.
	nd := StartDaemon(t, data, "--listen", od.Addr)
	checkClean(t, "", data, "the previous release's store opened by the new daemon")
	for _, l := range laps {
		got := snapIDs(t, "", data, l.serial)
		if fmt.Sprint(got) != fmt.Sprint(before[l.serial]) {
			t.Fatalf("%s's snapshots after the upgrade: %+v, before: %+v", l.serial, got, before[l.serial])
		}
		for _, sn := range got {
			restoredEquals(t, "", data, l.serial, sn.ID, l.refs[sn.ID])
		}
	}
	// The laptop's xo-backup is upgraded too: it restores the pinned backup
	// with the state directory the previous release wrote.
	to := filepath.Join(t.TempDir(), "r")
	if o, e, code := xoOf(t, "", l1.state, "restore", "--snapshot", pinned, "--to", to); code != 0 {
		t.Fatalf("new xo-backup restore of an old snapshot with the old state directory: %s %s", o, e)
	}
	if err := dircmp.Compare(l1.refs[pinned], to, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}

	// Tonight's lifecycle keeps every snapshot (all younger than 30 days).
	var life compatRetention
	adminJSONOf(t, "", nd.Data, &life, "lifecycle")
	if life.Retention.Deleted != 0 || life.Retention.Kept != 4 {
		t.Fatalf("the new daemon's first lifecycle deleted %d, kept %d; want 0 and 4", life.Retention.Deleted, life.Retention.Kept)
	}
	checkClean(t, "", data, "after the new daemon's first lifecycle")
	// In 45 days: the pinned and the latest of each laptop stay.
	adminJSONOf(t, "", nd.Data, &life, "lifecycle", "--at", "+45d")
	if life.Retention.Deleted != 1 || life.Retention.Kept != 3 {
		t.Fatalf("lifecycle at +45d deleted %d, kept %d; want 1 (CMP0001's middle backup) and 3", life.Retention.Deleted, life.Retention.Kept)
	}
	checkClean(t, "", data, "after lifecycle and gc at +45d")
	got := snapIDs(t, "", data, "CMP0001")
	b1 := before["CMP0001"]
	if len(got) != 2 || got[0].ID != b1[0].ID || !got[0].Pinned || got[1].ID != b1[2].ID {
		t.Fatalf("CMP0001 after +45d: %+v, want the pinned %s and the latest %s", got, b1[0].ID, b1[2].ID)
	}
	for _, sn := range got {
		restoredEquals(t, "", data, "CMP0001", sn.ID, l1.refs[sn.ID])
	}
	restoredEquals(t, "", data, "CMP0002", before["CMP0002"][0].ID, laps[1].refs[before["CMP0002"][0].ID])
}

// TestCompatOldLaptopKeepsItsHistoryAcrossUpgrades: a laptop registered and
// backed up with the previous release; the server is upgraded and the
// laptop keeps the old xo-backup for months; then the laptop is upgraded with
// the same state directory. A laptop owner expects no staff action, no
// re-upload (an unchanged Journal sends nothing, an edit sends well under
// half of what the first backup sent), the history to continue as the same user, and
// restore --all to bring the Journal back. A laptop with the old image
// registering for the first time with the new server works too.
func TestCompatOldLaptopKeepsItsHistoryAcrossUpgrades(t *testing.T) {
	old := compatRelease(t, compatPrevious)
	data := t.TempDir()
	od := startDaemonOf(t, old, data)
	state, src := t.TempDir(), compatJournal(t, t.TempDir(), 511, 0, 0)
	registerOf(t, old, state, od.Addr, "CMP0011")
	first := runOf(t, old, state, src, false)
	stopDaemon(t, od)
	StartDaemon(t, data, "--listen", od.Addr)

	// The old xo-backup against the new daemon.
	r := runOf(t, old, state, src, true)
	if r.BytesRead != 0 || r.BytesSent != 0 || r.WireSent > 64<<10 {
		t.Fatalf("old xo-backup, unchanged Journal, new daemon: read %d, sent %d (wire %d); want nothing read or sent", r.BytesRead, r.BytesSent, r.WireSent)
	}
	journalgen.Mutate(src, 511, 1)
	r = runOf(t, old, state, src, true)
	if r.ChunksNew == 0 || r.BytesSent > first.BytesSent/2 {
		t.Fatalf("old xo-backup after an edit sent %d bytes (%d new chunks); the first backup sent %d", r.BytesSent, r.ChunksNew, first.BytesSent)
	}
	to := filepath.Join(t.TempDir(), "r")
	if o, e, code := xoOf(t, old, state, "restore", "--to", to); code != 0 {
		t.Fatalf("old xo-backup restore from the new daemon: %s %s", o, e)
	}
	if err := dircmp.Compare(src, to, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}
	// A laptop still on the old image registers with the new server.
	st2, src2 := t.TempDir(), compatJournal(t, t.TempDir(), 512, 0, 0)
	registerOf(t, old, st2, od.Addr, "CMP0012")
	runOf(t, old, st2, src2, false)

	// The laptop's xo-backup is upgraded; its state directory stays.
	r = runOf(t, "", state, src, true)
	if r.BytesRead != 0 || r.BytesSent != 0 || r.WireSent > 64<<10 {
		t.Fatalf("upgraded xo-backup, unchanged Journal: read %d, sent %d (wire %d); the old file cache should spare reading and sending", r.BytesRead, r.BytesSent, r.WireSent)
	}
	if r.RoundTrips == nil || *r.RoundTrips > 3 {
		t.Fatalf("upgraded xo-backup, unchanged Journal: %v round trips, want at most 3", deref(r.RoundTrips))
	}
	journalgen.Mutate(src, 511, 2)
	r = runOf(t, "", state, src, true)
	if r.ChunksNew == 0 || r.BytesSent > first.BytesSent/2 {
		t.Fatalf("upgraded xo-backup after an edit sent %d bytes; the first backup sent %d", r.BytesSent, first.BytesSent)
	}
	out, e, code := xoOf(t, "", state, "list", "--json")
	var list []compatSnap
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 5 || list[0].ID != first.Snapshot || list[4].ID != r.Snapshot {
		t.Fatalf("upgraded xo-backup list: exit %d, %s %s; want 5 backups from %s to %s", code, out, e, first.Snapshot, r.Snapshot)
	}
	var users []struct {
		Serial    string `json:"serial"`
		Snapshots int    `json:"snapshots"`
	}
	adminJSONOf(t, "", data, &users, "users")
	if len(users) != 2 || users[0].Serial != "CMP0011" || users[0].Snapshots != 5 {
		t.Fatalf("users after the upgrades: %+v; want CMP0011 with 5 backups and CMP0012", users)
	}
	restoreAll(t, state, src)
}

// TestCompatNewLaptopAgainstOldServer: a laptop gets the new image before
// its server is upgraded. The new xo-backup registers with the previous
// release's daemon, backs up, backs up an edit incrementally, lists and
// restores --all byte for byte; the old server's own check stays clean.
// (Failing with a clear message would also be acceptable; a silent skip
// reported as success or a damaged store would not.)
func TestCompatNewLaptopAgainstOldServer(t *testing.T) {
	old := compatRelease(t, compatPrevious)
	data := t.TempDir()
	od := startDaemonOf(t, old, data)
	state, src := t.TempDir(), compatJournal(t, t.TempDir(), 521, 0, 0)
	registerOf(t, "", state, od.Addr, "CMP0021")
	first := runOf(t, "", state, src, false)
	journalgen.Mutate(src, 521, 1)
	r := runOf(t, "", state, src, true)
	if r.ChunksNew == 0 || r.BytesSent > first.BytesSent/2 {
		t.Fatalf("new xo-backup against the old daemon sent %d bytes for an edit; the first backup sent %d", r.BytesSent, first.BytesSent)
	}
	if got := snapIDs(t, old, data, "CMP0021"); len(got) != 2 || got[1].ID != r.Snapshot {
		t.Fatalf("the old daemon holds %+v, want the 2 backups the laptop reported", got)
	}
	restoreAll(t, state, src)
	checkClean(t, old, data, "the old daemon's store after a new laptop's backups")
}

// TestCompatRollbackAndUpgradeAgainKeepsTheNewestBackup: the new daemon
// writes the store for a night (a backup, lifecycle with gc); the admin
// rolls the package back to the previous release, which must open the store
// and serve it (check clean, the backup restores); a backup is made under
// it and its nightly lifecycle and gc run; then the package is upgraded
// again. Staff and the laptop expect the backup made during the rollback to
// be the laptop's latest: the one restore and restore --all bring back, and
// the one retention keeps as "latest" 45 days later.
func TestCompatRollbackAndUpgradeAgainKeepsTheNewestBackup(t *testing.T) {
	old := compatRelease(t, compatPrevious)
	data := t.TempDir()
	nd := StartDaemon(t, data)
	state, src := t.TempDir(), compatJournal(t, t.TempDir(), 531, 0, 0)
	registerOf(t, "", state, nd.Addr, "CMP0031")
	a := runOf(t, "", state, src, false)
	var life map[string]any
	adminJSONOf(t, "", data, &life, "lifecycle")
	stopDaemon(t, nd)

	// Rolled back: the previous release opens what the new one wrote.
	od := startDaemonOf(t, old, data, "--listen", nd.Addr)
	checkClean(t, old, data, "the new daemon's store opened by the previous release")
	restoredEquals(t, old, data, "CMP0031", a.Snapshot, compatJournal(t, t.TempDir(), 531, 0, 0))
	journalgen.Mutate(src, 531, 1)
	b := runOf(t, "", state, src, true)
	adminJSONOf(t, old, data, &life, "lifecycle")
	adminJSONOf(t, old, data, &life, "gc", "--compact-below", "1")
	checkClean(t, old, data, "after the previous release's lifecycle and gc")
	stopDaemon(t, od)

	// Upgraded again.
	StartDaemon(t, data, "--listen", nd.Addr)
	checkClean(t, "", data, "upgraded again")
	got := snapIDs(t, "", data, "CMP0031")
	if len(got) != 2 || got[len(got)-1].ID != b.Snapshot {
		t.Errorf("snapshots after upgrading again: %+v; want %s (made during the rollback) as the latest", got, b.Snapshot)
	}
	to := filepath.Join(t.TempDir(), "r")
	if o, e, code := xoOf(t, "", state, "restore", "--to", to); code != 0 {
		t.Fatalf("restore latest: %s %s", o, e)
	} else if err := dircmp.Compare(src, to, backup.JournalExclude); err != nil {
		t.Errorf("xo-backup restore (latest) after upgrading again does not bring back the Journal of the newest backup %s: %v\n%s", b.Snapshot, err, o)
	}
	var ret compatRetention
	adminJSONOf(t, "", data, &ret, "lifecycle", "--at", "+45d", "--dry-run")
	for _, u := range ret.Retention.Users {
		for _, sn := range u.Snapshots {
			if sn.ID == b.Snapshot && !sn.Keep {
				t.Errorf("lifecycle at +45d would delete %s, the newest backup (made during the rollback), and keep an older one as latest: %+v", b.Snapshot, u.Snapshots)
			}
		}
	}
}
