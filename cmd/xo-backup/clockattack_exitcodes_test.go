package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/agent"
)

// captureStdout runs f with os.Stdout going to a pipe and returns what it wrote.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	f()
	os.Stdout = old
	w.Close()
	return <-done
}

// TestClockAttackRunExitCodes: the skips a test reaches without a server
// (low battery, another run holding the lock, a slot reserved further
// ahead than the run waits) end with the documented exit codes (3, 3, 4)
// and --json's skip field; the e2e tests cover done today, not registered
// and unreachable.
func TestClockAttackRunExitCodes(t *testing.T) {
	registered := func(t *testing.T) string {
		dir := t.TempDir()
		reg := agent.Registration{Server: "127.0.0.1:1", ServerKey: strings.Repeat("00", 32), Serial: "EXIT1", Approved: true}
		b, _ := json.Marshal(reg)
		if err := os.WriteFile(filepath.Join(dir, "server.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	lowBattery := func(t *testing.T) string {
		dir := t.TempDir()
		bat := filepath.Join(dir, "olpc-battery")
		os.Mkdir(bat, 0o755)
		for k, v := range map[string]string{"type": "Battery", "status": "Discharging", "capacity": "7"} {
			os.WriteFile(filepath.Join(bat, k), []byte(v+"\n"), 0o644)
		}
		return dir
	}
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, state string, o *runOptions)
		code  int
		skip  string
		line  string
	}{
		{"low battery", func(t *testing.T, _ string, o *runOptions) { o.PowerSupplyDir = lowBattery(t) }, cli.ExitSkipped, "battery", "skipped: on battery below 20%"},
		{"locked", func(t *testing.T, state string, o *runOptions) {
			f, err := os.OpenFile(filepath.Join(state, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
				t.Fatal(err)
			}
		}, cli.ExitSkipped, "locked", "skipped: another backup run is in progress"},
		{"slot an hour ahead", func(t *testing.T, state string, _ *runOptions) {
			b, _ := json.Marshal(struct{ Slot time.Time }{time.Now().Add(time.Hour)})
			os.WriteFile(filepath.Join(state, "slot.json"), b, 0o600)
		}, cli.ExitLater, "", "busy: come back at "},
	} {
		for _, jsonOut := range []bool{false, true} {
			state := registered(t)
			o := runOptions{jsonOut: jsonOut}
			o.Source, o.PowerSupplyDir = t.TempDir(), t.TempDir()
			c.setup(t, state, &o)
			var code int
			out := captureStdout(t, func() { code = runRun(context.Background(), &globals{state: state}, o) })
			if code != c.code {
				t.Errorf("%s (json %v): exit %d, want %d; printed %q", c.name, jsonOut, code, c.code, out)
				continue
			}
			if !jsonOut {
				if !strings.HasPrefix(out, c.line) {
					t.Errorf("%s: printed %q, want %q...", c.name, out, c.line)
				}
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%s: --json printed %q: %v", c.name, out, err)
			}
			if skip, _ := v["skip"].(string); skip != c.skip {
				t.Errorf("%s: --json skip %q, want %q (%s)", c.name, skip, c.skip, out)
			}
		}
	}
}
