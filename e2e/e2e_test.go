// Package e2e runs the real programs as separate processes: xs-backupd on
// loopback and one xo-backup process per laptop.
package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xs-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin = dir
	cmd := exec.Command("go", "build", "-o", dir, "../cmd/xs-backupd", "../cmd/xo-backup", "../cmd/xs-admin")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Daemon is a running xs-backupd process.
type Daemon struct {
	Cmd  *exec.Cmd
	Addr string
	Data string
	// PageAddr is the restore page's address (host:port), from the log.
	PageAddr string
}

var (
	readyRe = regexp.MustCompile(`listen=(\S+)`)
	pageRe  = regexp.MustCompile(`msg="restore page" addr=(\S+)`)
)

// StartDaemon starts xs-backupd on a free loopback port and waits until it is ready.
func StartDaemon(t testing.TB, data string, extra ...string) *Daemon {
	t.Helper()
	return startDaemonEnv(t, data, nil, extra...)
}

// startDaemonEnv is StartDaemon with extra environment variables.
func startDaemonEnv(t testing.TB, data string, env []string, extra ...string) *Daemon {
	t.Helper()
	d, err := tryStartDaemon(t, data, env, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tryStartDaemon starts xs-backupd and waits until it is ready or has exited.
func tryStartDaemon(t testing.TB, data string, env []string, extra ...string) (*Daemon, error) {
	args := append([]string{"--config", "", "--listen", "127.0.0.1:0", "--data", data, "--metrics", "", "--page", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(filepath.Join(bin, "xs-backupd"), args...)
	cmd.Env = append(os.Environ(), env...)
	return launchDaemon(t, cmd, data, "")
}

// launchDaemon starts cmd (an xs-backupd of label's release, "" for this
// tree's) and waits until it says it is ready (its address and its page's
// then known), or has exited (the error holds its log until then), or 20 s
// passed. A daemon that came up is stopped at the test's end.
func launchDaemon(t testing.TB, cmd *exec.Cmd, data, label string) (*Daemon, error) {
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &Daemon{Cmd: cmd, Data: data}
	addr := make(chan string, 1)
	ended := make(chan struct{})
	var lines []string
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := pageRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				d.PageAddr = m[1]
			}
			if m := readyRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
			if !sent {
				lines = append(lines, sc.Text())
			}
			if testing.Verbose() {
				t.Log(strings.TrimSpace(label+" xs-backupd:"), sc.Text())
			}
		}
	}()
	select {
	case d.Addr = <-addr:
	case <-ended:
		cmd.Wait()
		return nil, fmt.Errorf("%s exited before it was ready: %s", strings.TrimSpace(label+" xs-backupd"), strings.Join(lines, " | "))
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s did not become ready", strings.TrimSpace(label+" xs-backupd"))
	}
	t.Cleanup(func() { d.Stop(t) })
	return d, nil
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop(t testing.TB) {
	if d.Cmd.ProcessState != nil {
		return
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.Cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("xs-backupd exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		d.Cmd.Process.Kill()
		t.Error("xs-backupd did not stop on SIGTERM")
	}
}

// xo runs xo-backup and returns stdout, stderr and the exit code.
func xo(t testing.TB, state string, args ...string) (string, string, int) {
	t.Helper()
	return program(t, nil, "xo-backup", append([]string{"--state", state}, args...)...)
}

// admin runs xs-admin on a data directory.
func admin(t testing.TB, data string, args ...string) (string, string, int) {
	t.Helper()
	return program(t, nil, "xs-admin", append([]string{"--data", data}, args...)...)
}

type runSummary struct {
	Outcome      string `json:"outcome"`
	Snapshot     string `json:"snapshot"`
	Files        int64  `json:"files"`
	BytesScanned int64  `json:"bytes_scanned"`
	BytesRead    int64  `json:"bytes_read"`
	BytesSent    int64  `json:"bytes_sent"`
	ChunksNew    int64  `json:"chunks_new"`
	ChunksTotal  int64  `json:"chunks_total"`
	DurationMS   int64  `json:"duration_ms"`
	WireSent     int64  `json:"wire_bytes_sent"`
	Error        string `json:"error"`
}

func runBackup(t testing.TB, state, src string, extra ...string) runSummary {
	t.Helper()
	out, errOut, code := xo(t, state, append([]string{"run", "--source", src, "--json"}, extra...)...)
	var s runSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("run output %q (%s): %v", out, errOut, err)
	}
	if code != 0 || s.Outcome != "done" {
		t.Fatalf("xo-backup run: exit %d, %+v, %s", code, s, errOut)
	}
	return s
}

func TestProcessesEndToEnd(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	type lap struct{ state, src, serial string }
	var laps []lap
	for i := 0; i < 3; i++ {
		l := lap{state: t.TempDir(), src: t.TempDir(), serial: fmt.Sprintf("SHC%04d", i)}
		if _, err := journalgen.Generate(l.src, journalgen.Small(uint64(i))); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := xo(t, l.state, "register", "--server", d.Addr, "--serial", l.serial, "--nickname", "kid"); code != 0 {
			t.Fatalf("register: %s %s", out, errOut)
		}
		laps = append(laps, l)
	}
	// Before a run is forced, "already done today" makes the second run skip.
	for _, l := range laps {
		s := runBackup(t, l.state, l.src)
		if s.ChunksNew == 0 || s.Files == 0 {
			t.Fatalf("first run: %+v", s)
		}
		if _, _, code := xo(t, l.state, "run", "--source", l.src); code != 3 {
			t.Fatalf("second run the same day exited %d, want 3 (skipped)", code)
		}
		s = runBackup(t, l.state, l.src, "--force")
		if s.BytesRead != 0 || s.ChunksNew != 0 {
			t.Fatalf("unchanged forced run: %+v", s)
		}
	}
	for i, l := range laps {
		journalgen.Mutate(l.src, uint64(i), 1)
		s := runBackup(t, l.state, l.src, "--force")
		if s.ChunksNew == 0 {
			t.Fatalf("after an edit: %+v", s)
		}
		out := t.TempDir()
		if o, e, code := xo(t, l.state, "restore", "--to", out); code != 0 {
			t.Fatalf("restore: %s %s", o, e)
		}
		if err := dircmp.Compare(l.src, out, backup.JournalExclude); err != nil {
			t.Fatal(err)
		}
		listOut, _, code := xo(t, l.state, "list", "--json")
		var sns []map[string]any
		if code != 0 || json.Unmarshal([]byte(listOut), &sns) != nil || len(sns) != 3 {
			t.Fatalf("list: %s", listOut)
		}
	}
	// A laptop that never registered is skipped with exit code 3.
	if _, _, code := xo(t, t.TempDir(), "run", "--source", laps[0].src); code != 3 {
		t.Fatalf("unregistered run exited %d, want 3", code)
	}
	// Staff see the laptops through the running daemon's admin socket...
	usersOut, errOut, code := admin(t, d.Data, "users", "--json")
	var users []map[string]any
	if code != 0 || json.Unmarshal([]byte(usersOut), &users) != nil || len(users) != 3 || users[0]["snapshots"].(float64) != 3 {
		t.Fatalf("xs-admin users (live): %d %s %s", code, usersOut, errOut)
	}
	if out, errOut, code := admin(t, d.Data, "check", "--repair"); code == 0 || !strings.Contains(errOut, "stop xs-backupd") {
		t.Fatalf("repair while live must be refused: %s %s", out, errOut)
	}
	// Stop (SIGTERM); with the daemon stopped xs-admin opens the store itself.
	d.Stop(t)
	if out, errOut, code := admin(t, d.Data, "check", "--read-data"); code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("xs-admin check (stopped): %d %s %s", code, out, errOut)
	}
	if out, errOut, code := admin(t, d.Data, "check", "--repair"); code != 0 || !strings.Contains(out, "9 snapshots") {
		t.Fatalf("xs-admin check --repair: %d %s %s", code, out, errOut)
	}
	d2 := StartDaemon(t, d.Data, "--listen", d.Addr)
	_ = d2
	listOut, errOut, code := xo(t, laps[0].state, "list", "--json")
	if code != 0 || !strings.Contains(listOut, `"id"`) {
		t.Fatalf("after restart: %s %s", listOut, errOut)
	}
}

// packBytes is the size of the store's pack files on disk.
func packBytes(t testing.TB, data string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(filepath.Join(data, "packs"), func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if fi, err := de.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func adminJSON(t testing.TB, data string, v any, args ...string) {
	t.Helper()
	out, errOut, code := admin(t, data, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("xs-admin %v: exit %d: %s %s", args, code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("xs-admin %v: %v in %q", args, err, out)
	}
}

// TestLifecycleEndToEnd: laptops back up twice, staff pin one snapshot,
// retention 45 days ahead deletes the older snapshots, gc gives the space
// back on disk, the store checks clean, restores still match, and a laptop
// over its hard quota is refused with exit code 5 and no snapshot.
func TestLifecycleEndToEnd(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	type lap struct{ state, src, serial string }
	var laps []lap
	for i := 0; i < 3; i++ {
		l := lap{state: t.TempDir(), src: t.TempDir(), serial: fmt.Sprintf("LC%02d", i)}
		if _, err := journalgen.Generate(l.src, journalgen.Small(uint64(10+i))); err != nil {
			t.Fatal(err)
		}
		// A recording that the edit round replaces: 1 MiB of garbage per
		// laptop once the first snapshot is gone.
		os.WriteFile(filepath.Join(l.src, "recording.ogg"), journalgen.Random(randFor(uint64(i)), 1<<20), 0o644)
		if out, errOut, code := xo(t, l.state, "register", "--server", d.Addr, "--serial", l.serial); code != 0 {
			t.Fatalf("register: %s %s", out, errOut)
		}
		runBackup(t, l.state, l.src)
		laps = append(laps, l)
	}
	var first []map[string]any
	adminJSON(t, d.Data, &first, "snapshots", "LC02")
	pinned := first[0]["id"].(string)
	for i, l := range laps {
		journalgen.Mutate(l.src, uint64(10+i), 1)
		os.WriteFile(filepath.Join(l.src, "recording.ogg"), journalgen.Random(randFor(uint64(100+i)), 1<<20), 0o644)
		runBackup(t, l.state, l.src, "--force")
	}
	var pin map[string]any
	adminJSON(t, d.Data, &pin, "pin", "LC02", pinned, "--reason", "science fair")
	if pin["pinned"] != true {
		t.Fatalf("pin: %v", pin)
	}

	var dry struct {
		Kept, Deleted int
	}
	adminJSON(t, d.Data, &dry, "retention", "--at", "+45d", "--dry-run")
	if dry.Deleted != 2 || dry.Kept != 4 {
		t.Fatalf("retention dry run at +45d: %+v, want 2 deleted (the first snapshots but the pinned one), 4 kept", dry)
	}
	var rep struct{ Deleted int }
	adminJSON(t, d.Data, &rep, "retention", "--at", "+45d")
	if rep.Deleted != 2 {
		t.Fatalf("retention deleted %d, want 2", rep.Deleted)
	}
	for _, l := range laps {
		var sns []map[string]any
		adminJSON(t, d.Data, &sns, "snapshots", l.serial)
		if want := map[bool]int{true: 2, false: 1}[l.serial == "LC02"]; len(sns) != want {
			t.Fatalf("%s has %d snapshots after retention, want %d", l.serial, len(sns), want)
		}
	}

	before := packBytes(t, d.Data)
	var gc struct {
		BlobsDeleted   int64 `json:"blobs_deleted"`
		PacksRemoved   int   `json:"packs_removed"`
		BytesReclaimed int64 `json:"bytes_reclaimed"`
	}
	adminJSON(t, d.Data, &gc, "gc", "--compact-below", "1")
	after := packBytes(t, d.Data)
	t.Logf("gc: %+v; packs on disk %d -> %d bytes", gc, before, after)
	if gc.BytesReclaimed < 2<<20 || gc.PacksRemoved == 0 {
		t.Fatalf("gc reclaimed %d bytes, want at least the two replaced 1 MiB recordings", gc.BytesReclaimed)
	}
	if shrink := before - after; shrink > gc.BytesReclaimed || shrink < gc.BytesReclaimed-64 {
		t.Fatalf("packs shrank by %d bytes on disk, gc reports %d", shrink, gc.BytesReclaimed)
	}
	if out, errOut, code := admin(t, d.Data, "check", "--read-data"); code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check after gc: %d %s %s", code, out, errOut)
	}
	for _, l := range laps {
		out := t.TempDir()
		if o, e, code := xo(t, l.state, "restore", "--to", out); code != 0 {
			t.Fatalf("restore: %s %s", o, e)
		}
		if err := dircmp.Compare(l.src, out, backup.JournalExclude); err != nil {
			t.Fatal(err)
		}
	}
	// The pinned first snapshot still restores as it was.
	want := t.TempDir()
	journalgen.Generate(want, journalgen.Small(12))
	os.WriteFile(filepath.Join(want, "recording.ogg"), journalgen.Random(randFor(2), 1<<20), 0o644)
	out := t.TempDir()
	if o, e, code := xo(t, laps[2].state, "restore", "--snapshot", pinned, "--to", out); code != 0 {
		t.Fatalf("restore pinned: %s %s", o, e)
	}
	if err := dircmp.Compare(want, out, backup.JournalExclude); err != nil {
		t.Fatal(err)
	}

	// Quota: staff see usage and fair share; a laptop over its hard quota
	// is refused clearly and no snapshot appears.
	var quotas []struct {
		Serial    string `json:"serial"`
		Used      int64  `json:"used_bytes"`
		FairShare int64  `json:"fair_share_bytes"`
	}
	adminJSON(t, d.Data, &quotas, "quota")
	if len(quotas) != 3 || quotas[0].FairShare <= 0 || quotas[0].FairShare > quotas[0].Used {
		t.Fatalf("quota rows: %+v", quotas)
	}
	var set []map[string]any
	adminJSON(t, d.Data, &set, "quota", "LC00", "--hard", fmt.Sprint(quotas[0].Used+100<<10))
	os.WriteFile(filepath.Join(laps[0].src, "film.ogv"), journalgen.Random(randFor(7), 1<<20), 0o644)
	o, e, code := xo(t, laps[0].state, "run", "--source", laps[0].src, "--force")
	if code != 5 || !strings.Contains(e, "quota") {
		t.Fatalf("run over the hard quota: exit %d, %s %s; want exit 5 and a message about the quota", code, o, e)
	}
	var sns []map[string]any
	adminJSON(t, d.Data, &sns, "snapshots", "LC00")
	if len(sns) != 1 {
		t.Fatalf("%d snapshots after a refused run, want 1", len(sns))
	}
	var life map[string]any
	adminJSON(t, d.Data, &life, "lifecycle", "--dry-run")
	if life["dry_run"] != true || life["gc"] == nil {
		t.Fatalf("lifecycle --dry-run: %v", life)
	}
	// With the daemon stopped, xs-admin works on the store directly.
	d.Stop(t)
	adminJSON(t, d.Data, &quotas, "quota")
	if len(quotas) != 3 {
		t.Fatalf("quota (stopped): %+v", quotas)
	}
	adminJSON(t, d.Data, &life, "lifecycle")
	if out, errOut, code := admin(t, d.Data, "check", "--read-data"); code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check after a lifecycle on the stopped store: %d %s %s", code, out, errOut)
	}
}
