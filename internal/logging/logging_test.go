package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestJournalPriorities(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(&buf, Options{Format: Journal, Level: slog.LevelDebug}))
	log.Debug("looking", "n", 1)
	log.Info("xs-backupd ready", "listen", "127.0.0.1:7457")
	log.Warn("slow disk")
	log.Error("cannot start", "err", "no space\nleft")
	log.With("serial", "SHC1").WithGroup("g").Info("grouped", "level", "not a level")
	want := []string{
		`<7>msg=looking n=1`,
		`<6>msg="xs-backupd ready" listen=127.0.0.1:7457`,
		`<4>msg="slow disk"`,
		`<3>msg="cannot start" err="no space\nleft"`,
		`<6>msg=grouped serial=SHC1 g.level="not a level"`,
	}
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[slog.Level]string{slog.LevelDebug: "<7>", slog.LevelDebug + 2: "<7>", slog.LevelInfo: "<6>",
		slog.LevelInfo + 2: "<6>", slog.LevelWarn: "<4>", slog.LevelError: "<3>", slog.LevelError + 4: "<3>"} {
		if got := Prefix(l); got != want {
			t.Errorf("Prefix(%v) = %s, want %s", l, got, want)
		}
	}
}

func TestLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(&buf, Options{Format: Journal, Level: slog.LevelWarn}))
	log.Info("hidden")
	log.Warn("shown")
	if buf.String() != "<4>msg=shown\n" {
		t.Fatalf("got %q", buf.String())
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	slog.New(New(&buf, Options{Format: JSON})).Error("cannot start", "err", "disk full", "n", 3)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if rec["level"] != "ERROR" || rec["msg"] != "cannot start" || rec["err"] != "disk full" || rec["n"] != 3.0 || rec["time"] == nil {
		t.Fatalf("record %v", rec)
	}
}

func TestTextHasTime(t *testing.T) {
	var buf bytes.Buffer
	slog.New(New(&buf, Options{Format: Text})).Info("hello")
	if !strings.HasPrefix(buf.String(), "time=") || !strings.Contains(buf.String(), "level=INFO msg=hello") {
		t.Fatalf("got %q", buf.String())
	}
}

// TestAutoDetectsJournal: Auto writes the journal form only when
// $JOURNAL_STREAM names the very file logs go to.
func TestAutoDetectsJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	same := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	other := fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)
	for _, c := range []struct {
		stream  string
		journal bool
	}{{same, true}, {other, false}, {"", false}, {"garbage", false}} {
		t.Setenv("JOURNAL_STREAM", c.stream)
		if got := OnJournal(f); got != c.journal {
			t.Errorf("JOURNAL_STREAM=%q: OnJournal %v, want %v", c.stream, got, c.journal)
		}
		f.Truncate(0)
		f.Seek(0, 0)
		slog.New(New(f, Options{Format: Auto})).Info("hello")
		b, _ := os.ReadFile(f.Name())
		if isJournal := strings.HasPrefix(string(b), "<6>msg=hello"); isJournal != c.journal {
			t.Errorf("JOURNAL_STREAM=%q: Auto wrote %q", c.stream, b)
		}
	}
	// A writer that is not a file is never the journal.
	t.Setenv("JOURNAL_STREAM", same)
	var buf bytes.Buffer
	slog.New(New(&buf, Options{})).Info("hello")
	if strings.HasPrefix(buf.String(), "<") {
		t.Errorf("a buffer got the journal form: %q", buf.String())
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Format{"": Auto, "auto": Auto, "JSON": JSON, "journal": Journal, " text ": Text} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("syslog"); err == nil || !strings.Contains(err.Error(), Formats) {
		t.Errorf("ParseFormat(syslog): %v", err)
	}
	if l, err := ParseLevel("warn"); err != nil || l != slog.LevelWarn {
		t.Errorf("ParseLevel(warn) = %v, %v", l, err)
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) accepted")
	}
}
