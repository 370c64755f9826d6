package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests attack the command-line contract of the three real programs
// (--help: documented exit codes, --json for scripts, quiet under a timer,
// errors that say what to do next) as staff, script authors and laptops
// use them.

// cliWorld is a running daemon with one laptop that has backed up src.
type cliWorld struct {
	d                  *Daemon
	state, src, serial string
}

func cliNewWorld(t *testing.T, serial string, files map[string]string, extra ...string) *cliWorld {
	t.Helper()
	w := &cliWorld{d: StartDaemon(t, t.TempDir(), extra...), state: t.TempDir(), src: t.TempDir(), serial: serial}
	for name, body := range files {
		p := filepath.Join(w.src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, errOut, code := xo(t, w.state, "register", "--server", w.d.Addr, "--serial", serial); code != 0 {
		t.Fatalf("register: exit %d %s %s", code, out, errOut)
	}
	runBackup(t, w.state, w.src)
	return w
}

// cliEntries lists dir's names (the store's top level).
func cliEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCLIAttackRestoreIntoTheStoreIsRefused: staff restore a laptop's
// backup with --to (or --tar, --raw) naming the store's own data
// directory, or a directory in it (a slip of the tab key: /var/lib/xs-backup
// instead of /var/lib/xs-backup-restored). A laptop chooses its file names:
// this one backed up "server.key" and "xs-store.json". With --overwrite
// the restore replaced the daemon's key (the daemon then refuses to start,
// and every laptop's pinned key is lost); without it, it scattered a child's
// files among the packs. Expected: refused before anything is written
// (exit 1 or 2), naming the store, and the store's files untouched.
func TestCLIAttackRestoreIntoTheStoreIsRefused(t *testing.T) {
	w := cliNewWorld(t, "EVIL1", map[string]string{
		"server.key":    `{"not":"a key"}`,
		"xs-store.json": `{}`,
		"notes.txt":     "hello",
	})
	data := w.d.Data
	key, err := os.ReadFile(filepath.Join(data, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	before := cliEntries(t, data)
	packsBefore := cliEntries(t, filepath.Join(data, "packs"))
	for _, args := range [][]string{
		{"--to", data, "--overwrite"},
		{"--to", data},
		{"--to", filepath.Join(data, "packs")},
		{"--tar", filepath.Join(data, "evil.tar")},
		{"--raw", filepath.Join(data, "snapshots")},
	} {
		out, errOut, code := admin(t, data, append([]string{"restore", w.serial}, args...)...)
		if code != 1 && code != 2 {
			t.Errorf("restore %s: exit %d, want a refusal (1 or 2):\n%s%s", args, code, out, errOut)
		} else if !strings.Contains(errOut, data) {
			t.Errorf("restore %s: refused without naming the store %s:\n%s", args, data, errOut)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(data, "server.key")); !bytes.Equal(got, key) {
		t.Errorf("a restore replaced the daemon's server.key with a laptop's file %q", got)
	}
	if after := cliEntries(t, data); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("restores wrote into the store's directory: %v, was %v", after, before)
	}
	if after := cliEntries(t, filepath.Join(data, "packs")); strings.Join(after, " ") != strings.Join(packsBefore, " ") {
		t.Errorf("a restore wrote a laptop's files among the packs: %v, was %v", after, packsBefore)
	}
}

// TestCLIAttackApproveWithEmptyKeyIsRefused: a script approves reflashed
// laptops with `xs-admin approve "$SERIAL" --key "$KEY"`, and $KEY came
// out empty. --key is there to make sure the key approved is the one the
// laptop showed, and since a short prefix matched any key the tool wants at
// least 12 characters. Expected: --key "" is a usage error (exit 2) and
// the key change still waits. (It approved whatever key was waiting, as if
// --key had not been given: one empty variable moves a child's history to
// any device.)
func TestCLIAttackApproveWithEmptyKeyIsRefused(t *testing.T) {
	w := cliNewWorld(t, "KEY1", map[string]string{"a.txt": "a"})
	other := t.TempDir() // a device registering the same serial with another key
	if out, errOut, code := xo(t, other, "register", "--server", w.d.Addr, "--serial", w.serial); code != 0 {
		t.Fatalf("second register: exit %d %s %s", code, out, errOut)
	}
	out, errOut, code := admin(t, w.d.Data, "approve", w.serial, "--key", "")
	if code != 2 {
		t.Errorf("approve %s --key \"\": exit %d, want 2 (usage error):\n%s%s", w.serial, code, out, errOut)
	}
	var pending []map[string]any
	adminJSON(t, w.d.Data, &pending, "pending")
	if len(pending) != 1 {
		t.Errorf("after approve --key \"\", %d key change(s) wait, want the one still waiting: %v", len(pending), pending)
	}
}

// TestCLIAttackRestoreToEmptyTargetIsUsageError: a script runs
// `xs-admin restore "$SERIAL" --to "$DEST"` with $DEST empty (or --tar,
// --xoj, --raw). Expected: a usage error (exit 2) naming the option, before
// anything runs. (It ran the restore and failed with exit 1 and
// "create : mkdir : no such file or directory".)
func TestCLIAttackRestoreToEmptyTargetIsUsageError(t *testing.T) {
	w := cliNewWorld(t, "EMPTY1", map[string]string{"a.txt": "a"})
	for _, opt := range []string{"--to", "--tar", "--xoj", "--raw"} {
		out, errOut, code := admin(t, w.d.Data, "restore", w.serial, opt+"=")
		if code != 2 || out != "" || !strings.Contains(errOut, opt) {
			t.Errorf("restore %s %s=: exit %d, stdout %q; want 2 and a message naming %s:\n%s", w.serial, opt, code, out, opt, errOut)
		}
		if strings.Contains(errOut, "mkdir :") || strings.Contains(errOut, "create :") {
			t.Errorf("restore %s=: a Go-internal message:\n%s", opt, errOut)
		}
	}
}

// TestCLIAttackXoRestoreOverAFileSaysForce: a teacher restores a laptop's
// backup into a folder that already holds one of its files. Expected: exit
// 1; the message names the file and the option of xo-backup that replaces
// it (--force), not "the overwrite option", which xo-backup does not have
// (xo-backup restore --overwrite is an unknown flag); and no "Restored 0
// files" success line on stdout (text) nor a result without an error
// (--json) for a restore that stopped.
func TestCLIAttackXoRestoreOverAFileSaysForce(t *testing.T) {
	w := cliNewWorld(t, "FORCE1", map[string]string{"poem.txt": "roses", "song.txt": "la la"})
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "poem.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := xo(t, w.state, "restore", "--to", target)
	if code != 1 || !strings.Contains(errOut, "poem.txt") {
		t.Fatalf("restore over a file: exit %d, stderr %q; want 1 naming poem.txt", code, errOut)
	}
	if !strings.Contains(errOut, "--force") || strings.Contains(errOut, "overwrite option") {
		t.Errorf("restore over a file does not name xo-backup's option (--force):\n%s", errOut)
	}
	if strings.Contains(out, "Restored") {
		t.Errorf("a restore that failed printed a success line on stdout: %q", out)
	}
	out, errOut, code = xo(t, w.state, "restore", "--to", target, "--json")
	if code != 1 {
		t.Fatalf("restore --json over a file: exit %d %s", code, errOut)
	}
	if strings.TrimSpace(out) != "" {
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("restore --json over a file: stdout is not JSON: %q", out)
		} else if v["error"] == nil {
			t.Errorf("restore --json over a file (exit 1) printed a result with no error, like a success: %s", out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(target, "poem.txt")); string(b) != "mine" {
		t.Errorf("the teacher's file was replaced: %q", b)
	}
}

// TestCLIAttackUnreachableLineHasNoGoInternals: the school server is down;
// under the timer `xo-backup run` skips (exit 3) with one line for the
// journal, which is what staff read when a laptop did not back up.
// Expected: the line names the server and says why in words; never Go's
// "context deadline exceeded". (The line was "skipped: server unreachable
// (ADDR): context deadline exceeded" for a laptop that resumes its TLS
// session, i.e. every laptop after its first backup; one without a ticket
// gets "the server did not answer (the network is down or the server is not
// running)". list and restore say the same, exit 1.)
func TestCLIAttackUnreachableLineHasNoGoInternals(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	state, src := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644)
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "DOWN1"); code != 0 {
		t.Fatalf("register: exit %d %s %s", code, out, errOut)
	}
	// A laptop that has backed up holds a TLS session ticket: its next
	// run resumes the session, and that is the path that leaked Go's words.
	runBackup(t, state, src)
	d.Stop(t)
	// The handshake gives up after its fixed 10 s.
	out, errOut, code := xo(t, state, "run", "--force", "--idle-timeout", "2s", "--source", src)
	if code != 3 || !strings.HasPrefix(out, "skipped: server unreachable") || errOut != "" {
		t.Fatalf("run with the server down: exit %d, %q %q", code, out, errOut)
	}
	if !strings.Contains(out, d.Addr) {
		t.Errorf("the line does not name the server: %q", out)
	}
	if strings.Contains(out, "context deadline exceeded") || strings.Contains(out, "context canceled") {
		t.Errorf("the journal line carries a Go-internal string: %q", out)
	}
}

// TestCLIAttackDaemonBadFlagValueIsUsageError: xs-backupd --help says
// "2 usage error", and --log-level loud is one. A negative or zero
// --max-sessions is a bad value typed on the command line too. Expected:
// exit 2, the message naming --max-sessions (the flag typed), not only
// the configuration's admission.max_sessions. (It exited 1, "cannot start".)
func TestCLIAttackDaemonBadFlagValueIsUsageError(t *testing.T) {
	for _, v := range []string{"-5", "0"} {
		data := t.TempDir()
		out, errOut, code := program(t, nil, "xs-backupd", "--config", "", "--listen", "127.0.0.1:0", "--metrics", "", "--page", "",
			"--data", data, "--max-sessions", v)
		if code != 2 || !strings.Contains(errOut, "--max-sessions") {
			t.Errorf("xs-backupd --max-sessions %s: exit %d, want 2 naming --max-sessions:\n%s%s", v, code, out, errOut)
		}
	}
}

// TestCLIAttackSyncWithoutMothershipSaysWhy: staff run `xs-admin sync` on
// a school server whose daemon runs but has no [mothership] configured.
// Expected: a message that says no mothership is configured (naming
// [mothership] in the configuration), exit 1. (It said "replication runs in
// the daemon, and this store is not served by one" — false: the daemon
// answered — and exited 2, a usage error, for a correct command line.)
func TestCLIAttackSyncWithoutMothershipSaysWhy(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	out, errOut, code := admin(t, d.Data, "sync")
	if code != 1 {
		t.Errorf("sync with no mothership configured: exit %d, want 1:\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "not served by") || !strings.Contains(errOut, "[mothership]") {
		t.Errorf("sync with the daemon running and no mothership: the message does not say what is missing:\n%s", errOut)
	}
}

// TestCLIAttackQuietUnderATimerProgressOnATerminal: restores by both
// programs, with output captured to files as a timer or a script does:
// no progress bar and no carriage return anywhere, and --json's stdout is
// one JSON document. On a terminal (util-linux script gives a pty) the
// progress bar appears.
func TestCLIAttackQuietUnderATimerProgressOnATerminal(t *testing.T) {
	big := strings.Repeat("journal entry data ", 200000) // ~3.8 MB
	w := cliNewWorld(t, "TTY1", map[string]string{"big.bin": big, "small.txt": "s"})
	for _, c := range []struct {
		prog string
		args []string
	}{
		{"xo-backup", []string{"--state", w.state, "restore", "--to", filepath.Join(t.TempDir(), "r"), "--json"}},
		{"xs-admin", []string{"--data", w.d.Data, "--json", "restore", w.serial, "--to", filepath.Join(t.TempDir(), "r")}},
		{"xs-admin", []string{"--data", w.d.Data, "restore", w.serial, "--tar", filepath.Join(t.TempDir(), "r.tar")}},
		{"xo-backup", []string{"--state", w.state, "run", "--force", "--source", w.src}},
	} {
		out, errOut, code := program(t, nil, c.prog, c.args...)
		if code != 0 {
			t.Fatalf("%s %s: exit %d %s %s", c.prog, c.args, code, out, errOut)
		}
		if strings.ContainsAny(out+errOut, "\r") || strings.Contains(errOut, "[#") {
			t.Errorf("%s %s under a timer printed progress: stdout %q stderr %q", c.prog, c.args, out, errOut)
		}
		if strings.Contains(strings.Join(c.args, " "), "--json") {
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Errorf("%s %s: stdout is not one JSON document: %v %q", c.prog, c.args, err, out)
			}
		}
	}
	script, err := exec.LookPath("script")
	if err != nil {
		t.Log("no util-linux script: the terminal half is not run")
		return
	}
	cmdline := filepath.Join(bin, "xo-backup") + " --state " + w.state + " restore --to " + filepath.Join(t.TempDir(), "tty")
	cmd := exec.Command(script, "-qec", cmdline, "/dev/null")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xo-backup restore on a pty: %v %q", err, b)
	}
	if !bytes.Contains(b, []byte("\r[")) || !bytes.Contains(b, []byte("Restored 2 files")) {
		t.Errorf("xo-backup restore on a terminal shows no progress: %q", b)
	}
}
