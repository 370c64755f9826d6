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

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/journalgen"
)

// program runs a built program with env added to this process's and
// returns stdout, stderr and the exit code.
func program(t testing.TB, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Env = append(os.Environ(), env...)
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

// TestHelpOfEveryCommand: CMD --help exits 0 and shows the command's own
// flags and an example, and no flag of another command.
func TestHelpOfEveryCommand(t *testing.T) {
	for _, c := range []struct {
		prog, cmd string
		flags     []string
		not       []string
	}{
		{"xo-backup", "", []string{"--state", "--verbose", "--quiet", "--version"}, []string{"--source", "--server"}},
		{"xo-backup", "register", []string{"--server", "--serial", "--nickname", "--claim", "--json", "--state"}, []string{"--source", "--force"}},
		{"xo-backup", "run", []string{"--source", "--force", "--jitter", "--idle-timeout", "--json", "--quiet"}, []string{"--server", "--to"}},
		{"xo-backup", "list", []string{"--json"}, []string{"--server", "--source"}},
		{"xo-backup", "restore", []string{"--snapshot", "--to", "--all", "--force", "--journal", "--json"}, []string{"--server", "--jitter"}},
		{"xo-backup", "restore-link", []string{"--no-open", "--json"}, []string{"--server", "--to"}},
		{"xo-backup", "version", nil, []string{"--json", "--server"}},
		{"xs-backupd", "", []string{"--config", "--data", "--listen", "--metrics", "--page", "--registration", "--max-sessions", "--log-level", "--log-format", "--version"}, []string{"--capacity", "--state"}},
		{"xs-backupd", "version", nil, []string{"--data", "--listen"}},
	} {
		args := []string{"--help"}
		if c.cmd != "" {
			args = []string{c.cmd, "--help"}
		}
		out, errOut, code := program(t, nil, c.prog, args...)
		name := strings.TrimSpace(c.prog + " " + c.cmd)
		if code != 0 || errOut != "" {
			t.Errorf("%s --help: exit %d, stderr %q", name, code, errOut)
			continue
		}
		_, examples, _ := strings.Cut(out, "\nExamples:\n")
		examples, _, _ = strings.Cut(examples, "\n\n")
		if !strings.Contains(examples, "  "+name) {
			t.Errorf("%s --help has no example:\n%s", name, out)
		}
		_, flags, _ := strings.Cut(out, "\nFlags:\n")
		for _, f := range c.flags {
			if !strings.Contains(flags, f+" ") {
				t.Errorf("%s --help does not explain %s:\n%s", name, f, out)
			}
		}
		for _, f := range c.not {
			if strings.Contains(flags, f+" ") {
				t.Errorf("%s --help shows another command's flag %s:\n%s", name, f, out)
			}
		}
	}
	// The exit codes are in the help, as in the README.
	out, _, _ := program(t, nil, "xo-backup", "--help")
	for _, want := range []string{"3  skipped by design", "4  server busy", "5  over quota"} {
		if !strings.Contains(out, want) {
			t.Errorf("xo-backup --help does not document %q", want)
		}
	}
}

// TestUsageErrors: a wrong command line exits 2 and says where help is;
// nothing runs.
func TestUsageErrors(t *testing.T) {
	state := t.TempDir()
	for _, c := range []struct {
		prog string
		args []string
		want string
	}{
		{"xo-backup", []string{"--state", state, "run", "--nope"}, "unknown flag: --nope"},
		{"xo-backup", []string{"--state", state, "run", "extra"}, `takes no arguments, got "extra"`},
		{"xo-backup", []string{"--state", state, "list", "--to", "x"}, "unknown flag: --to"},
		{"xo-backup", []string{"--state", state, "rn"}, `unknown command "rn"`},
		{"xo-backup", []string{"--state", state, "register"}, `"server" not set`},
		{"xo-backup", []string{"--state", state, "register", "--server", "h", "--serial", "a b"}, "--serial"},
		{"xo-backup", []string{"--state", state, "run", "--jitter", "soon"}, "--jitter"},
		{"xo-backup", []string{"--state", state, "-v", "-q", "run"}, "contradict"},
		{"xo-backup", []string{"--state", state, "restore"}, "--to DIR, or --all"},
		{"xo-backup", []string{"--state", state, "restore", "--all", "some/path"}, "--all restores the whole Journal"},
		{"xo-backup", []string{"--state", state}, "Usage:"},
		{"xo-backup", []string{"version", "now"}, "takes no arguments"},
		{"xs-backupd", []string{"--data", state, "--registration", "maybe"}, "use open or approve"},
		{"xs-backupd", []string{"--data", state, "--log-level", "loud"}, "use debug, info, warn or error"},
		{"xs-backupd", []string{"--data", state, "--log-format", "syslog"}, "--log-format"},
		{"xs-backupd", []string{"--data", state, "serve"}, `unknown command "serve"`},
		{"xs-backupd", []string{"--data", state, "--capacity", "8"}, "--capacity is gone"},
		{"xs-backupd", []string{"version", "--data", state}, "unknown flag: --data"},
	} {
		out, errOut, code := program(t, nil, c.prog, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s %q: exit %d, stderr %q; want exit 2 and %q", c.prog, c.args, code, errOut, c.want)
		}
		if out != "" {
			t.Errorf("%s %q printed on stdout: %q", c.prog, c.args, out)
		}
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("usage errors wrote into %s: %v", state, ents)
	}
}

// TestVersion: version and --version print one line and exit 0;
// xs-backupd version starts no server and creates no directory.
func TestVersion(t *testing.T) {
	home := t.TempDir()
	_, statErr := os.Stat("/var/lib/xs-backup")
	varLibExisted := statErr == nil
	re := regexp.MustCompile(`^(xo-backup|xs-backupd) \S+ \(go\S+, linux/\S+\)\n$`)
	for _, prog := range []string{"xo-backup", "xs-backupd"} {
		for _, args := range [][]string{{"version"}, {"--version"}} {
			start := time.Now()
			out, errOut, code := program(t, []string{"HOME=" + home}, prog, args...)
			if code != 0 || !re.MatchString(out) || !strings.HasPrefix(out, prog+" ") || errOut != "" {
				t.Errorf("%s %s: exit %d, %q %q", prog, args[0], code, out, errOut)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s %s took %v", prog, args[0], d)
			}
		}
	}
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("version wrote into HOME: %v", ents)
	}
	if _, err := os.Stat("/var/lib/xs-backup"); err == nil && !varLibExisted {
		t.Error("xs-backupd version created /var/lib/xs-backup")
	}
}

// TestGenDocs: the hidden gen-docs command of the build make packages runs
// (-tags gendocs) writes the man pages and the completions the packages
// install; the programs the packages ship do not carry it.
func TestGenDocs(t *testing.T) {
	docsBin := t.TempDir()
	if out, err := exec.Command("go", "build", "-tags", "gendocs", "-o", docsBin, "../cmd/xs-backupd", "../cmd/xo-backup").CombinedOutput(); err != nil {
		t.Fatalf("build with -tags gendocs: %v\n%s", err, out)
	}
	dir := t.TempDir()
	for _, prog := range []string{"xo-backup", "xs-backupd"} {
		if out, err := exec.Command(filepath.Join(docsBin, prog), "gen-docs", dir).CombinedOutput(); err != nil {
			t.Fatalf("%s gen-docs: %v %s", prog, err, out)
		}
		if out, _ := exec.Command(filepath.Join(docsBin, prog), "--help").Output(); strings.Contains(string(out), "gen-docs") {
			t.Errorf("%s --help lists the hidden gen-docs", prog)
		}
		if _, errOut, code := program(t, nil, prog, "gen-docs", t.TempDir()); code != cli.ExitUsage || !strings.Contains(errOut, "unknown command") {
			t.Errorf("the shipped %s has gen-docs (exit %d: %s)", prog, code, errOut)
		}
	}
	for _, f := range []string{
		"man/man1/xo-backup.1", "man/man1/xo-backup-run.1", "man/man1/xo-backup-register.1", "man/man1/xo-backup-restore.1",
		"man/man1/xo-backup-list.1", "man/man1/xo-backup-restore-link.1", "man/man1/xo-backup-version.1",
		"man/man1/xs-backupd.1", "man/man1/xs-backupd-version.1",
		"completion/bash/xo-backup", "completion/zsh/_xo-backup", "completion/fish/xo-backup.fish",
		"completion/bash/xs-backupd", "completion/zsh/_xs-backupd", "completion/fish/xs-backupd.fish",
	} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
		if strings.HasPrefix(f, "man/") && !strings.Contains(string(b), ".TH ") {
			t.Errorf("%s is not a man page", f)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "man/man1/xo-backup-run.1")); !strings.Contains(string(b), "idle-timeout") ||
		strings.Contains(string(b), os.Getenv("HOME")+"/.sugar") {
		t.Errorf("xo-backup-run.1 lacks a flag or names the builder's home:\n%s", b)
	}
	// Man pages are rendered from the help as markdown: "<3>" outside a
	// code block would be taken for HTML and dropped.
	if b, _ := os.ReadFile(filepath.Join(dir, "man/man1/xs-backupd.1")); !strings.Contains(string(b), "<3> error") {
		t.Errorf("xs-backupd.1 lost the priority prefixes:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "completion/bash/xo-backup")); !strings.Contains(string(b), "xo-backup") {
		t.Error("the bash completion does not complete xo-backup")
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "man/man1/*gen-docs*")); len(matches) > 0 {
		t.Errorf("gen-docs has a man page: %v", matches)
	}
}

// TestRunSummaryLine: under a timer (stdout a pipe) every run says on one
// line what it did; -q keeps only errors; -v says more.
func TestRunSummaryLine(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	state, src := t.TempDir(), t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(7)); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "SUM1"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	oneLine := func(out string) string {
		t.Helper()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Fatalf("want one line, got %q", out)
		}
		return strings.TrimSuffix(out, "\n")
	}
	out, errOut, code := xo(t, state, "run", "--source", src)
	done := regexp.MustCompile(`^done: backup \S+, \d+ files, [0-9.]+ [KMG]?i?B sent, [0-9.]+m?s$`)
	if line := oneLine(out); code != 0 || !done.MatchString(line) || errOut != "" {
		t.Fatalf("first run: exit %d, %q, stderr %q", code, line, errOut)
	}
	out, _, code = xo(t, state, "run", "--source", src)
	if line := oneLine(out); code != 3 || !strings.HasPrefix(line, "skipped: a backup already completed today (at ") {
		t.Fatalf("second run: exit %d, %q", code, line)
	}
	if out, errOut, code = xo(t, state, "-q", "run", "--source", src); code != 3 || out != "" || errOut != "" {
		t.Fatalf("-q skipped run: exit %d, %q %q", code, out, errOut)
	}
	out, _, code = xo(t, state, "run", "-v", "--force", "--source", src)
	if line := oneLine(out); code != 0 || !strings.Contains(line, "chunks new") || !strings.Contains(line, "scanned") {
		t.Fatalf("-v run: exit %d, %q", code, line)
	}
	// Never registered.
	out, _, code = xo(t, t.TempDir(), "run", "--source", src)
	if line := oneLine(out); code != 3 || line != "skipped: this laptop is not registered with a school server; register this laptop once with: xo-backup register --server HOST" {
		t.Fatalf("unregistered run: exit %d, %q", code, line)
	}
	// A failure is one line on stderr, also with -q; on the journal it is
	// an error for journalctl -p err.
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	fi, _ := errFile.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	cmd := exec.Command(filepath.Join(bin, "xo-backup"), "--state", state, "-q", "run", "--force", "--source", filepath.Join(src, "gone"))
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stderr = errFile
	stdout, err := cmd.Output()
	b, _ := os.ReadFile(errFile.Name())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(stdout) != 0 ||
		!regexp.MustCompile(`^<3>xo-backup: failed: backup source: .*gone.*\n$`).Match(b) {
		t.Fatalf("failed run on the journal: %v, stdout %q, stderr %q", err, stdout, b)
	}
	// The server is gone: skipped, unreachable.
	d.Stop(t)
	out, errOut, code = xo(t, state, "run", "--force", "--idle-timeout", "2s", "--source", src)
	if line := oneLine(out); code != 3 || !strings.HasPrefix(line, "skipped: server unreachable") || errOut != "" {
		t.Fatalf("run with the server stopped: exit %d, %q %q", code, line, errOut)
	}
}

// TestDaemonLogFormats: the journal form has priority prefixes and no
// timestamp (chosen by itself when $JOURNAL_STREAM names stderr), the JSON
// form parses.
func TestDaemonLogFormats(t *testing.T) {
	// --log-format journal, and an error at priority 3: the data
	// directory is a file.
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	_, errOut, code := program(t, nil, "xs-backupd", "--config", "", "--listen", "127.0.0.1:0", "--metrics", "", "--page", "", "--data", notDir, "--log-format", "journal")
	if code != 1 || !regexp.MustCompile(`(?m)^<6>msg="xs-backupd starting" version=\S+`).MatchString(errOut) ||
		!regexp.MustCompile(`(?m)^<3>msg="cannot start" err=`).MatchString(errOut) || strings.Contains(errOut, "time=") {
		t.Fatalf("journal form: exit %d:\n%s", code, errOut)
	}
	// JSON.
	_, errOut, _ = program(t, nil, "xs-backupd", "--config", "", "--listen", "127.0.0.1:0", "--metrics", "", "--page", "", "--data", notDir, "--log-format", "json")
	sc := bufio.NewScanner(strings.NewReader(errOut))
	n := 0
	for ; sc.Scan(); n++ {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil || rec["time"] == nil {
			t.Fatalf("JSON line %q: %v", sc.Text(), err)
		}
	}
	if n < 2 {
		t.Fatalf("JSON form: %q", errOut)
	}
	// Auto: under systemd, stderr is the stream $JOURNAL_STREAM names. The
	// daemon starts and its ready line still carries listen= for tools.
	logFile := filepath.Join(t.TempDir(), "journal")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	cmd := exec.Command(filepath.Join(bin, "xs-backupd"), "--config", "", "--listen", "127.0.0.1:0", "--metrics", "", "--page", "", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := regexp.MustCompile(`(?m)^<6>msg="xs-backupd ready" listen=127\.0\.0\.1:\d+ `)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if ready.Match(b) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no ready line in the journal form:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("xs-backupd after SIGTERM: %v", err)
	}
	b, _ := os.ReadFile(logFile)
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if !regexp.MustCompile(`^<[3467]>msg=`).MatchString(line) {
			t.Errorf("not a journal line: %q", line)
		}
	}
}

// TestRunOverQuotaLine: a laptop over its hard quota gets one line on
// stderr that says nothing was lost and whom to ask, and exit code 5.
func TestRunOverQuotaLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "xs.toml")
	os.WriteFile(cfg, []byte("[quota]\nhard = \"64KiB\"\n"), 0o644)
	d := StartDaemon(t, t.TempDir(), "--config", cfg)
	state, src := t.TempDir(), t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(8)); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "QUOTA1"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	out, errOut, code := xo(t, state, "-q", "run", "--source", src)
	if code != 5 || out != "" || strings.Count(errOut, "\n") != 1 ||
		!regexp.MustCompile(`^xo-backup: over quota: .*; nothing was lost: .*xs-admin quota`).MatchString(errOut) {
		t.Fatalf("over quota: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestXoBackupKeepsDeadCodeElimination: nothing in xo-backup runs a
// text/template (cobra's templates, a version template): reflect's
// MethodByName would then keep every exported method of every package in
// the binary, megabytes on an XO-1 (cobra tests its own code the same way).
func TestXoBackupKeepsDeadCodeElimination(t *testing.T) {
	out, err := exec.Command("go", "tool", "nm", filepath.Join(bin, "xo-backup")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "reflect.Value.MethodByName") {
		t.Fatal("xo-backup links reflect.Value.MethodByName: something runs a text/template")
	}
}

// TestRestoreAllRefusesANonEmptyJournal: the library says what it found,
// the program says what to do.
func TestRestoreAllRefusesANonEmptyJournal(t *testing.T) {
	journal := t.TempDir()
	os.WriteFile(filepath.Join(journal, "entry"), []byte("x"), 0o644)
	out, errOut, code := xo(t, t.TempDir(), "restore", "--all", "--journal", journal)
	if code != 1 || out != "" || !strings.Contains(errOut, "the restore target is not empty: "+journal) ||
		!strings.Contains(errOut, "move it away first, or give --force") {
		t.Fatalf("restore --all over a Journal: exit %d, %q %q", code, out, errOut)
	}
}
