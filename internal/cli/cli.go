// Package cli holds what the three programs share: output as text or JSON,
// a progress line on terminals only, and the exit-code convention.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Exit codes shared by the programs.
const (
	ExitOK      = 0 // done
	ExitFailed  = 1 // failed: the message says why and what to do
	ExitUsage   = 2 // bad command line
	ExitSkipped = 3 // nothing done now, by design (already done today, battery, not registered, unreachable, locked, restore pending)
	ExitLater   = 4 // the server gave a slot: the next timer run comes back
	// ExitOverQuota: the laptop's hard quota is full; staff must raise it
	// or delete old backups (xs-admin quota, retention).
	ExitOverQuota = 5
	// ExitLocked: the store is in use by another process (xs-admin: the
	// daemon has it open but its admin socket was not reached).
	ExitLocked = 6
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// JSON writes v as indented JSON.
func JSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Progress draws a one-line progress bar on a terminal and nothing elsewhere.
type Progress struct {
	W    *os.File
	on   bool
	last time.Time
}

// NewProgress returns a progress line on w if it is a terminal.
func NewProgress(w *os.File) *Progress { return &Progress{W: w, on: IsTerminal(w)} }

// Update redraws the line (at most 10 times a second).
func (p *Progress) Update(done, total int64, label string) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	width := 30
	fill := 0
	if total > 0 {
		fill = int(int64(width) * min(done, total) / total)
	}
	// A file name may hold line breaks, escapes and bytes that are not
	// UTF-8: never sent to the terminal as they are.
	label = strings.ToValidUTF8(label, "?")
	label = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, label)
	if r := []rune(label); len(r) > 40 {
		label = "…" + string(r[len(r)-39:])
	}
	fmt.Fprintf(p.W, "\r[%s%s] %s / %s %-40s", strings.Repeat("#", fill), strings.Repeat(".", width-fill), Bytes(done), Bytes(total), label)
}

// Done ends the progress line.
func (p *Progress) Done() {
	if p.on {
		fmt.Fprintln(p.W)
	}
}
