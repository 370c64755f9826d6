package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// These tests attack xs-admin's command-line contract (--help: exit codes
// 0, 1, 2, 6; --json for scripts; errors that say what to do next) with
// the built binary and a stopped store, as staff and their scripts use it.

// cliGoInternal are strings that mean nothing to staff: a message made only
// of them names no problem and no next step.
var cliGoInternal = []string{"*errors.errorString", "goroutine ", "panic:", "mkdir :", "open : ", "create : "}

func cliNoGoInternal(t *testing.T, what, msg string) {
	t.Helper()
	for _, s := range cliGoInternal {
		if strings.Contains(msg, s) {
			t.Errorf("%s: the message holds the Go-internal %q:\n%s", what, s, msg)
		}
	}
}

// TestCLIAttackStorageStatusJSON: "Every command takes --json for
// scripts" (xs-admin --help). A script asks where the packs live with
// storage status --json on an ordinary store whose packs are in the data
// directory. Expected: stdout is one JSON document. (It printed an English
// sentence.)
func TestCLIAttackStorageStatusJSON(t *testing.T) {
	data := t.TempDir()
	makeStore(t, data)
	out, errOut, code := xsAdmin(t, nil, "--data", data, "--json", "storage", "status")
	if code != 0 {
		t.Fatalf("storage status --json: exit %d\n%s%s", code, out, errOut)
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("storage status --json on a local store does not print JSON (%v):\n%s", err, out)
	}
}

// TestCLIAttackJSONListsAreNeverNull: a script reads check --json and
// iterates its problems (jq '.problems[]'), and lists the schools with
// schools --json (jq '.[]'). On a clean store, and on a school server with
// no schools, the lists are empty: [] — not null, which jq cannot iterate
// and which users --json, pending --json and damaged --json never print.
func TestCLIAttackJSONListsAreNeverNull(t *testing.T) {
	data := t.TempDir()
	makeStore(t, data)
	for _, c := range []struct {
		args []string
		list func(out string) (json.RawMessage, error)
	}{
		{[]string{"check"}, func(out string) (json.RawMessage, error) {
			var rep map[string]json.RawMessage
			err := json.Unmarshal([]byte(out), &rep)
			return rep["problems"], err
		}},
		{[]string{"schools"}, func(out string) (json.RawMessage, error) {
			return json.RawMessage(strings.TrimSpace(out)), nil
		}},
		{[]string{"users"}, func(out string) (json.RawMessage, error) {
			return json.RawMessage(strings.TrimSpace(out)), nil
		}},
		{[]string{"pending"}, func(out string) (json.RawMessage, error) {
			return json.RawMessage(strings.TrimSpace(out)), nil
		}},
		{[]string{"damaged"}, func(out string) (json.RawMessage, error) {
			return json.RawMessage(strings.TrimSpace(out)), nil
		}},
	} {
		out, errOut, code := xsAdmin(t, nil, append([]string{"--data", data, "--json"}, c.args...)...)
		if code != 0 {
			t.Errorf("%s --json on a clean store: exit %d\n%s%s", c.args, code, out, errOut)
			continue
		}
		l, err := c.list(out)
		if err != nil || !json.Valid(l) {
			t.Errorf("%s --json: not JSON (%v):\n%s", c.args, err, out)
			continue
		}
		if string(l) != "[]" {
			t.Errorf("%s --json: the empty list is %s, want []", c.args, l)
		}
	}
}

// TestCLIAttackDataIsAFileSaysCheckData: staff give the configuration
// file (or any file) as --data, the likeliest "wrong data directory"
// besides a misspelt one. Expected, as for a directory that does not exist
// (TestMistypedDataCreatesNoStore): exit 1 and a message that says there
// is no store there and to check --data. (It said "lock store: open
// .../lock: not a directory", and nothing to do.)
func TestCLIAttackDataIsAFileSaysCheckData(t *testing.T) {
	file := filepath.Join(t.TempDir(), "xs-backup.toml")
	if err := os.WriteFile(file, []byte("data = \"/var/lib/xs-backup\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"users"}, {"gc"}, {"snapshots", "SHC1"}} {
		out, errOut, code := xsAdmin(t, nil, append([]string{"--data", file}, args...)...)
		if code != 1 || out != "" {
			t.Errorf("%s with --data naming a file: exit %d, stdout %q; want 1 and nothing", args, code, out)
		}
		if !strings.Contains(errOut, file) || !strings.Contains(errOut, "--data") {
			t.Errorf("%s with --data naming a file: the message does not name it and say to check --data:\n%s", args, errOut)
		}
		cliNoGoInternal(t, "--data FILE", errOut)
	}
}

// TestCLIAttackUnreadableConfigSaysWhatToDo: a staff member who is not
// root runs xs-admin with the configuration readable only by root (as a
// school may keep it, with S3 credentials in it). Expected: exit 1, the
// file named, and what to do (run as root: sudo, as the advice for a
// store this user may not open says). (It said "read configuration: open
// FILE: permission denied" and no next step.)
func TestCLIAttackUnreadableConfigSaysWhatToDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run xs-admin as another user")
	}
	dir, err := os.MkdirTemp("", "cliattack")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	prog := filepath.Join(dir, "xs-admin")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	makeStore(t, data)
	conf := filepath.Join(dir, "xs-backup.toml")
	if err := os.WriteFile(conf, []byte("data = \""+data+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prog, "--config", conf, "users")
	cmd.Env = append(os.Environ(), "XS_BACKUP_CONFIG=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	msg := errb.String()
	if code != 1 || out.String() != "" || !strings.Contains(msg, conf) {
		t.Fatalf("an unreadable --config: exit %d, stdout %q; want 1 naming %s:\n%s", code, out.String(), conf, msg)
	}
	if !strings.Contains(msg, "root") && !strings.Contains(msg, "sudo") {
		t.Errorf("an unreadable configuration: the message says no next step (run as root, sudo):\n%s", msg)
	}
}

// TestCLIAttackSerialStartingWithADash: a serial is letters, digits, '-',
// '_' and '.', so "-x" (or "--help", which a laptop can register as its
// serial) passes the check; xs-admin then tells staff to run "xs-admin
// approve -x", which cobra reads as a flag (exit 2). Expected: either a
// serial that cannot be typed as an argument is refused (exit 2), or the
// command xs-admin prints as the next step is one xs-admin can read.
func TestCLIAttackSerialStartingWithADash(t *testing.T) {
	data := t.TempDir()
	makeStore(t, data)
	out, errOut, code := xsAdmin(t, nil, "--data", data, "register", "--", "-x")
	if code == 2 {
		return // refused: fine
	}
	if code != 0 {
		t.Fatalf("register -- -x: exit %d\n%s%s", code, out, errOut)
	}
	i := strings.Index(out, "xs-admin approve ")
	if i < 0 {
		t.Fatalf("register printed no next step:\n%s", out)
	}
	next := out[i+len("xs-admin "):]
	next = next[:strings.IndexAny(next, ")\n")]
	_, errOut, code = xsAdmin(t, nil, append([]string{"--data", data}, strings.Fields(next)...)...)
	// The laptop has not registered yet, so approve may fail (exit 1: no
	// key waits); it must not be a command line xs-admin cannot read.
	if code == 2 || strings.Contains(errOut, "unknown shorthand flag") {
		t.Errorf("xs-admin registered the serial -x and told staff to run %q, which is a usage error (exit %d):\n%s", "xs-admin "+next, code, errOut)
	}
}
