// Package logging builds the daemon's log/slog handler for where its
// standard error goes: the systemd journal (one line per record with a
// syslog priority prefix and no timestamp, so that `journalctl -p err`
// filters and journald's own timestamp is not repeated), JSON for log
// collectors, or text with a timestamp for a terminal.
//
// Libraries never use this package: they log through the *slog.Logger they
// are given, and only the programs in cmd/ build one.
package logging

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Format is how records are written.
type Format string

// Formats.
const (
	// Auto is Journal when standard error is connected to the systemd
	// journal (see OnJournal), Text otherwise.
	Auto Format = "auto"
	// Journal writes slog's text form without the time and level, after a
	// syslog priority prefix as sd-daemon(3) describes: "<3>" error,
	// "<4>" warning, "<6>" info, "<7>" debug.
	Journal Format = "journal"
	// JSON writes one slog JSON object per line.
	JSON Format = "json"
	// Text writes slog's key=value text form with a timestamp.
	Text Format = "text"
)

// Formats lists the formats ParseFormat accepts, for help texts.
const Formats = "auto, journal, json or text"

// ParseFormat parses a --log-format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return Auto, nil
	case Auto, Journal, JSON, Text:
		return f, nil
	}
	return "", fmt.Errorf("log format %q: use %s", s, Formats)
}

// ParseLevel parses a --log-level value: debug, info, warn or error (slog's
// names, also with an offset such as "info+2").
func ParseLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("log level %q: use debug, info, warn or error", s)
	}
	return lv, nil
}

// Options configure New.
type Options struct {
	Format Format
	// Level is the least important level written (default info).
	Level slog.Leveler
}

// New returns a handler that writes to w, normally os.Stderr.
func New(w io.Writer, o Options) slog.Handler {
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	format := o.Format
	if format == Auto || format == "" {
		format = Text
		if f, ok := w.(*os.File); ok && OnJournal(f) {
			format = Journal
		}
	}
	switch format {
	case JSON:
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: o.Level})
	case Journal:
		return slog.NewTextHandler(journalWriter{w}, &slog.HandlerOptions{Level: o.Level, ReplaceAttr: journalAttr})
	}
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: o.Level})
}

// OnJournal reports whether f is connected to the systemd journal: systemd
// sets $JOURNAL_STREAM to "DEVICE:INODE" of the stream it connects standard
// output and error to (systemd.exec(5)), and comparing it with f's own
// tells a service's stderr from a redirection a child inherited the
// variable through.
func OnJournal(f *os.File) bool { return onJournal(os.Getenv("JOURNAL_STREAM"), f) }

func onJournal(stream string, f *os.File) bool {
	devText, inoText, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devText, 10, 64)
	ino, err2 := strconv.ParseUint(inoText, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}

// Priority is the syslog priority of a slog level: 3 (err) from
// slog.LevelError up, 4 (warning) from LevelWarn, 6 (info) from LevelInfo,
// 7 (debug) below.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// Prefix is the sd-daemon(3) line prefix of a slog level, "<6>" for info.
func Prefix(l slog.Level) string { return "<" + strconv.Itoa(Priority(l)) + ">" }

// journalAttr drops the time (journald records its own) and turns the
// level into its priority, which journalWriter moves to the front.
func journalAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.Attr{}
	case slog.LevelKey:
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.Int(slog.LevelKey, Priority(l))
		}
	}
	return a
}

var levelField = []byte(slog.LevelKey + "=")

// journalWriter rewrites the "level=N " that starts every record of the
// text handler (which calls Write once per record, the whole line) into
// the "<N>" prefix journald reads.
type journalWriter struct{ w io.Writer }

func (j journalWriter) Write(p []byte) (int, error) {
	rest, ok := bytes.CutPrefix(p, levelField)
	if !ok || len(rest) < 2 || rest[0] < '0' || rest[0] > '7' || rest[1] != ' ' {
		return j.w.Write(p)
	}
	line := make([]byte, 0, len(rest)+1)
	line = append(line, '<', rest[0], '>')
	line = append(line, rest[2:]...)
	if _, err := j.w.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}
