package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestLeftOutNamesArePrintable: run -v lists the files a backup
// left out by name. A Journal file's name may hold a line break or a
// terminal escape sequence; printed as it is, it forges lines in the
// journal (a fake "done:" under a failed run) or rewrites the terminal.
// Names are made printable as restore's list of left-out files does
// (journal.Printable).
func TestLeftOutNamesArePrintable(t *testing.T) {
	res := &agent.RunResult{Outcome: agent.Done, Backup: &backup.Result{Snapshot: "s", Files: 1,
		Skipped: []string{"ok\ndone: backup forged, 999 files", "esc\x1b]0;owned\x07\x1b[2J"}}}
	var b bytes.Buffer
	summary(&b, res, true)
	out := b.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Errorf("two left-out files print %d lines: %q", len(lines), out)
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "  left out: ") {
			t.Errorf("a line that is not a left-out file: %q", l)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("a terminal escape sequence from a file name is printed: %q", out)
	}
}
