package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// These tests run the built binary, as staff and scripts do.

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xs-admin-test")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "xs-admin")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// xsAdmin runs the binary with no configuration file unless args name
// one, and returns stdout, stderr and the exit code.
func xsAdmin(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "XS_BACKUP_CONFIG="), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// Every command's --help exits 0 and shows its own flags (not another
// command's) and an example.
func TestHelpPerCommand(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"users":        nil,
		"pending":      nil,
		"snapshots":    nil,
		"approve":      {"--key", "--new-history"},
		"claim-code":   {"--expires"},
		"revoke":       nil,
		"unrevoke":     nil,
		"register":     {"--nickname"},
		"alias":        nil,
		"status":       nil,
		"ls":           {"--files"},
		"restore":      {"--snapshot", "--entry", "--title", "--to", "--tar", "--xoj", "--raw", "--overwrite"},
		"restore-link": nil,
		"retention":    {"--at", "--dry-run"},
		"policy":       {"--keep-last", "--keep-within-days", "--keep-monthly", "--reset"},
		"quota":        {"--soft", "--hard", "--reset"},
		"pin":          {"--reason"},
		"unpin":        nil,
		"gc":           {"--dry-run", "--compact-below", "--expire-pending"},
		"lifecycle":    {"--at", "--dry-run"},
		"check":        {"--read-data", "--repair"},
		"damaged":      nil,
		"scrub":        {"--all"},
		"version":      nil,
	} {
		out, errOut, code := xsAdmin(t, nil, cmd, "--help")
		if code != 0 {
			t.Errorf("%s --help: exit %d: %s", cmd, code, errOut)
			continue
		}
		if !strings.Contains(out, "Examples:\n  xs-admin "+cmd) {
			t.Errorf("%s --help has no example of itself:\n%s", cmd, out)
		}
		own := out[:strings.Index(out, "Global Flags:")]
		for _, f := range flags {
			if !strings.Contains(own, f+" ") {
				t.Errorf("%s --help does not show %s:\n%s", cmd, f, out)
			}
		}
		for _, other := range []string{"--reason", "--compact-below", "--keep-last", "--overwrite", "--nickname"} {
			if strings.Contains(own, other+" ") && !contains(flags, other) {
				t.Errorf("%s --help shows another command's flag %s", cmd, other)
			}
		}
		for _, global := range []string{"--config", "--data", "--socket", "--json"} {
			if !strings.Contains(out[len(own):], global) {
				t.Errorf("%s --help does not show the global %s", cmd, global)
			}
		}
	}
	out, _, code := xsAdmin(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "Exit codes:") || strings.Contains(out, "gen-docs") {
		t.Errorf("xs-admin --help (exit %d): exit codes listed, gen-docs hidden:\n%s", code, out)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// A wrong command line exits 2 with a message that says what is wrong,
// before anything is opened.
func TestUsageErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "never-created")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"users", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"gc", "--reason", "x"}, "unknown flag: --reason"},
		{[]string{"users", "extra"}, "takes no arguments"},
		{[]string{"snapshots"}, "takes SERIAL"},
		{[]string{"snapshots", "A", "B"}, "takes SERIAL"},
		{[]string{"alias", "OLD"}, "takes OLD_SERIAL NEW_SERIAL"},
		{[]string{"gc", "--compact-below", "5"}, `"5" is not a fraction`},
		{[]string{"gc", "--compact-below", "0"}, `"0" is not a fraction`},
		{[]string{"gc", "--compact-below", "half"}, `"half" is not a fraction`},
		{[]string{"quota", "SHC1", "--soft", "12Q"}, `"12Q" is not a size`},
		{[]string{"quota", "--hard", "2GiB"}, "give the laptop's SERIAL"},
		{[]string{"claim-code", "SHC1", "--expires", "soon"}, `"soon" is not a duration`},
		{[]string{"claim-code", "SHC1", "--expires", "-3d"}, `is not a duration`},
		{[]string{"retention", "--at", "tomorrow"}, `"tomorrow" is not a time`},
		{[]string{"policy", "SHC1", "--keep-last", "-2"}, `"-2" is not a count`},
		{[]string{"policy", "SHC1", "--keep-within-days", "-1"}, `"-1" is not a count (a whole number, 0 for none)`},
		{[]string{"policy", "SHC1", "--keep-last", "3", "--reset"}, "exclude each other"},
		{[]string{"snapshots", "SHC 1"}, "may only contain"},
		{[]string{"snapshots", ""}, "1 to 64 characters"},
		{[]string{"ls", "SHC1", "last-tuesday"}, "is not a snapshot"},
		{[]string{"restore", "SHC1", "--snapshot", "yesterday", "--to", "x"}, "is not a snapshot"},
		{[]string{"pin", "SHC1", "latest"}, `"reason" not set`},
		{[]string{"restore", "SHC1"}, "to tar xoj raw"},
		{[]string{"restore", "SHC1", "--to", "a", "--tar", "b"}, "to tar xoj raw"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{nil, "no command given"},
	} {
		args := append([]string{"--data", data}, c.args...)
		_, errOut, code := xsAdmin(t, nil, args...)
		if code != 2 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "--help") {
			t.Errorf("xs-admin %q: exit %d, want 2 and %q:\n%s", c.args, code, c.want, errOut)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a usage error created the store: %v", err)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut, code := xsAdmin(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "xs-admin ") || !strings.Contains(out, "go1.") {
			t.Errorf("xs-admin %s: exit %d %q %s", args[0], code, out, errOut)
		}
	}
	out, _, _ := xsAdmin(t, nil, "version", "--json")
	var v map[string]string
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["program"] != "xs-admin" || v["version"] == "" {
		t.Errorf("version --json: %q %v", out, err)
	}
}

// xs-admin finds the store in the daemon's configuration: the README's
// own data directory needs no --data on every command. With the daemon
// stopped, the listings print their text (they printed nothing once).
func TestConfigReuse(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "library", "xs-backup")
	makeStore(t, data) // as xs-backupd's first start does
	if _, e, code := xsAdmin(t, nil, "--data", data, "register", "SHC0042", "--nickname", "ana"); code != 0 {
		t.Fatal(e)
	}
	conf := filepath.Join(dir, "xs-backup.toml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "data = %q\nregistration = \"approve\"\n", data), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string][]string{
		"--config":         {"--config", conf, "users"},
		"XS_BACKUP_CONFIG": {"users"},
	} {
		var env []string
		if name == "XS_BACKUP_CONFIG" {
			env = []string{"XS_BACKUP_CONFIG=" + conf}
		}
		out, errOut, code := xsAdmin(t, env, run...)
		if code != 0 || !strings.Contains(out, "SHC0042") || !strings.Contains(out, "ana") {
			t.Errorf("users with %s: exit %d\n%s%s", name, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"snapshots", "SHC0042"}, {"quota"}, {"pending"}, {"policy", "SHC0042"}} {
		out, errOut, code := xsAdmin(t, nil, append([]string{"--config", conf}, args...)...)
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("xs-admin %s with the daemon stopped: exit %d, printed %q %s", args, code, out, errOut)
		}
	}
	// --data wins over the file.
	other := filepath.Join(dir, "other")
	makeStore(t, other)
	if out, e, code := xsAdmin(t, nil, "--config", conf, "--data", other, "register", "SHC0043"); code != 0 || !strings.Contains(out, "SHC0043") {
		t.Fatal(out, e)
	}
	if out, _, _ := xsAdmin(t, nil, "--config", conf, "users"); strings.Contains(out, "SHC0043") {
		t.Errorf("--data did not override the config's data:\n%s", out)
	}
	// A configuration file named on the command line must exist; a bad one
	// is an error too.
	if _, errOut, code := xsAdmin(t, nil, "--config", filepath.Join(dir, "missing.toml"), "users"); code != 1 || !strings.Contains(errOut, "missing.toml") {
		t.Errorf("a missing --config: exit %d %s", code, errOut)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("dta = \"/x\"\n"), 0o644)
	if _, errOut, code := xsAdmin(t, nil, "--config", bad, "users"); code != 1 || !strings.Contains(errOut, `unknown setting "dta"`) {
		t.Errorf("a config with a typo: exit %d %s", code, errOut)
	}
	// The default file, when absent, is not an error: the defaults apply.
	if _, err := os.Stat(defaultConfig); os.IsNotExist(err) {
		if out, errOut, code := xsAdmin(t, nil, "--data", data, "users"); code != 0 || !strings.Contains(out, "SHC0042") {
			t.Errorf("without %s: exit %d %s", defaultConfig, code, errOut)
		}
	}
}

// With the daemon stopped, xs-admin opens the configured store with the
// daemon's settings: a retention run by hand keeps what the configured
// policy keeps (it applied the built-in default policy, and deleted
// snapshots the school had chosen to keep). Another store (--data) gets the
// defaults.
func TestStoppedDaemonKeepsTheConfiguredPolicy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	day := time.Date(2026, 1, 1, 10, 0, 0, 0, time.Local)
	s, err := store.Open(ctx, data, store.Options{Reserve: -1, Now: func() time.Time { return day }})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for i := 0; i < 4; i++ { // Jan 1, 3, 5, 7: one month, five months before --at
		os.WriteFile(filepath.Join(src, "diary.txt"), fmt.Appendf(nil, "day %d", i), 0o644)
		if _, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()}); err != nil {
			t.Fatal(err)
		}
		day = day.AddDate(0, 0, 2)
	}
	s.Close()
	conf := filepath.Join(dir, "xs-backup.toml")
	os.WriteFile(conf, fmt.Appendf(nil, "data = %q\nreserve = \"0\"\n[retention]\nkeep_within_days = 365\n", data), 0o644)
	deleted := func(args ...string) int {
		t.Helper()
		out, errOut, code := xsAdmin(t, nil, append(args, "--json", "retention", "--at", "2026-06-01")...)
		var rep store.RetentionReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("retention %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return rep.Deleted
	}
	// The defaults (30 days, then the newest of each month) would delete
	// three: the test tells the two policies apart.
	if n := deleted("--data", data, "--dry-run"); n != 3 {
		t.Fatalf("the default policy would delete %d of 4, want 3", n)
	}
	if n := deleted("--config", conf); n != 0 {
		t.Fatalf("retention with the configured keep_within_days = 365 deleted %d snapshots", n)
	}
	out, errOut, code := xsAdmin(t, nil, "--config", conf, "--json", "snapshots", "SHC1")
	if code != 0 || strings.Count(out, `"id"`) != 4 {
		t.Fatalf("after the configured retention: exit %d, want 4 snapshots\n%s%s", code, out, errOut)
	}
}

// The store open in another process (the daemon's, its socket not where
// xs-admin looked) is "in use", with exit code 6: never "damaged" and
// never advice to repair it.
func TestLockedStore(t *testing.T) {
	data := t.TempDir()
	s, err := store.Open(context.Background(), data, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wrong := filepath.Join(t.TempDir(), "admin.sock")
	conf := filepath.Join(t.TempDir(), "xs-backup.toml")
	os.WriteFile(conf, fmt.Appendf(nil, "data = %q\nadmin_socket = %q\n", data, wrong), 0o644)
	for _, args := range [][]string{{"users"}, {"gc"}, {"check"}, {"restore", "SHC1", "--to", t.TempDir()}, {"--config", conf, "users"}} {
		if args[0] != "--config" {
			args = append([]string{"--data", data, "--socket", wrong}, args...)
		}
		_, errOut, code := xsAdmin(t, nil, args...)
		if code != 6 {
			t.Errorf("%s on a store in use: exit %d, want 6:\n%s", args[0], code, errOut)
		}
		for _, want := range []string{"the store at " + data + " is in use by another process", "is xs-backupd running?", wrong, "--socket"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%s on a store in use does not say %q:\n%s", args[0], want, errOut)
			}
		}
		if strings.Contains(errOut, "damaged") || strings.Contains(errOut, "--repair") {
			t.Errorf("%s on a store in use says it is damaged:\n%s", args[0], errOut)
		}
	}
	// The configured socket belongs to the configured store: with --data
	// naming another store, xs-admin looks for that store's own socket.
	other := t.TempDir()
	s2, err := store.Open(context.Background(), other, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, errOut, code := xsAdmin(t, nil, "--config", conf, "--data", other, "users"); code != 6 || !strings.Contains(errOut, filepath.Join(other, "admin.sock")) {
		t.Errorf("--data with a config naming another store's socket: exit %d\n%s", code, errOut)
	}
}

// Through a real admin socket, the binary gets typed results, and errors
// keep their kind: not found (exit 1), already exists, in use (exit 6,
// with the advice to stop the daemon), invalid.
func TestThroughTheAdminSocket(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	s, err := store.Open(ctx, data, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sockDir, err := os.MkdirTemp("", "xsa")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "admin.sock")
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- admin.Serve(sctx, &admin.Service{S: s, Live: true}, sock) }()
	defer func() { stop(); <-served }()
	for i := 0; ; i++ {
		if _, err := admin.Dial(sock); err == nil {
			break
		} else if i == 200 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	x := func(args ...string) (string, string, int) {
		t.Helper()
		return xsAdmin(t, nil, append([]string{"--data", filepath.Join(data, "not-this-one"), "--socket", sock}, args...)...)
	}
	if out, errOut, code := x("register", "SHC7", "--nickname", "kofi"); code != 0 || !strings.Contains(out, "SHC7") {
		t.Fatalf("register through the socket: %d %s %s", code, out, errOut)
	}
	out, errOut, code := x("users", "--json")
	var users []admin.UserRow
	if code != 0 || json.Unmarshal([]byte(out), &users) != nil || len(users) != 1 || users[0].Nickname != "kofi" {
		t.Fatalf("users --json through the socket: %d %s %s", code, out, errOut)
	}
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"snapshots", "NOSUCH"}, 1, []string{"not found", "NOSUCH"}},
		{[]string{"register", "SHC7"}, 1, []string{"already exists", "xs-admin users and xs-admin pending"}},
		{[]string{"check", "--repair"}, 6, []string{"in use by another process", "systemctl stop xs-backupd"}},
		{[]string{"pin", "SHC7", "latest", "--reason", "fair"}, 1, []string{"not found"}},
	} {
		_, errOut, code := x(c.args...)
		if code != c.code {
			t.Errorf("%s through the socket: exit %d, want %d:\n%s", c.args, code, c.code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s through the socket does not say %q:\n%s", c.args, w, errOut)
			}
		}
	}
	if out, errOut, code := x("gc", "--dry-run", "--compact-below", "0.9"); code != 0 || !strings.Contains(out, "Would remove") {
		t.Errorf("gc --dry-run through the socket: %d %s %s", code, out, errOut)
	}
}

// gen-docs, in the build with the gendocs tag that make packages runs,
// writes the man pages and the three completion scripts the package
// installs; the program the package ships has no gen-docs; `completion`
// works as cobra's.
func TestGenDocs(t *testing.T) {
	if _, errOut, code := xsAdmin(t, nil, "gen-docs", t.TempDir()); code != cli.ExitUsage || !strings.Contains(errOut, "unknown command") {
		t.Errorf("xs-admin without the gendocs tag: gen-docs exits %d: %s", code, errOut)
	}
	docs := filepath.Join(t.TempDir(), "xs-admin")
	if out, err := exec.Command("go", "build", "-tags", "gendocs", "-o", docs, ".").CombinedOutput(); err != nil {
		t.Fatalf("build with -tags gendocs: %v\n%s", err, out)
	}
	dir := t.TempDir()
	gen := exec.Command(docs, "gen-docs", dir)
	gen.Env = append(os.Environ(), "XS_BACKUP_CONFIG=", "SOURCE_DATE_EPOCH=1767225600")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gen-docs: %v %s", err, out)
	}
	for _, name := range []string{"xs-admin.1", "xs-admin-gc.1", "xs-admin-restore.1", "xs-admin-policy.1"} {
		b, err := os.ReadFile(filepath.Join(dir, "man", "man1", name))
		if err != nil || !strings.HasPrefix(string(b), ".nh\n.TH") || !strings.Contains(string(b), "Jan 2026") {
			t.Errorf("man page %s: %v\n%.200s", name, err, b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "man", "man1", "xs-admin-gc.1")); !strings.Contains(string(b), `\fB--compact-below\fP`) {
		t.Errorf("the gc man page does not document --compact-below:\n%s", b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "man", "man1", "*gen-docs*")); len(m) > 0 {
		t.Errorf("the hidden gen-docs has a man page: %v", m)
	}
	for _, name := range []string{"bash/xs-admin", "zsh/_xs-admin", "fish/xs-admin.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, "completion", name))
		if err != nil || !strings.Contains(string(b), "xs-admin") {
			t.Errorf("completion %s: %v", name, err)
		}
	}
	if out, errOut, code := xsAdmin(t, nil, "completion", "bash"); code != 0 || !strings.Contains(out, "xs-admin") {
		t.Errorf("completion bash: exit %d %s", code, errOut)
	}
}
