package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/server"
)

// writeConf writes body as a configuration file and returns its path.
func opsWriteConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xs-backup.toml")
	if err := os.WriteFile(p, []byte(body+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A number of days too large for a time.Duration wrapped around silently:
// "213504d" read as 25 minutes, "999999d" (an admin's "never") as a
// negative duration that the daemon then replaced by the default. The
// same class of bug as TestConfigSizeOverflow (sizes) and the capped
// keep_within_days: it must be refused (or at least not become shorter).
func TestOpsAttackDurationDaysOverflow(t *testing.T) {
	for _, text := range []string{"213504d", "999999d", "106752d"} {
		v, err := server.ParseDuration(text)
		if err == nil && v < 100*365*24*time.Hour {
			t.Errorf("ParseDuration(%q) = %v, no error (wrapped around past the largest duration)", text, v)
		}
	}
	// In the configuration: uploads of unfinished backups kept "for ever"
	// must not expire after 25 minutes.
	p := opsWriteConf(t, "[lifecycle]\npending_expiry = \"213504d\"")
	if c, err := server.LoadConfig(p); err == nil && time.Duration(c.Lifecycle.PendingExpiry) < 100*365*24*time.Hour {
		t.Errorf("pending_expiry = \"213504d\" accepted as %v", time.Duration(c.Lifecycle.PendingExpiry))
	}
}

// Negative durations and counts are nonsense an admin can type (a stray
// minus, "-1" for "never" or "none"); LoadConfig refuses a negative
// max_pending and [mothership] every, but these were accepted and the
// daemon silently replaced each by its default (a session deadline of
// "-1h" became 1 hour, max_connections = -1 became 512, a negative
// target_delay turned pacing off). Each must be refused, naming the key.
func TestOpsAttackNegativeSettingsRefused(t *testing.T) {
	for key, body := range map[string]string{
		"session_deadline": `session_deadline = "-1h"`,
		"hold":             "[admission]\nhold = \"-30s\"",
		"pending_expiry":   "[lifecycle]\npending_expiry = \"-1h\"",
		"max_connections":  "max_connections = -1",
		"target_delay":     "[traffic]\ntarget_delay = \"-25ms\"",
	} {
		_, err := server.LoadConfig(opsWriteConf(t, body))
		if err == nil {
			t.Errorf("%s accepted (the daemon silently replaces it: a default, or pacing off)", strings.ReplaceAll(body, "\n", " "))
			continue
		}
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%s refused without naming %s: %v", body, key, err)
		}
	}
}

// listen = "7457" (the port alone, an easy slip) fails, but the daemon
// says another process has the port: the wrong advice, sending the admin
// to look for a second xs-backupd. The mistake is in the address, and it
// is found only after the store was opened (and created).
func TestOpsAttackListenWithoutColonIsNotABusyPort(t *testing.T) {
	p := opsWriteConf(t, "listen = \"7457\"")
	cfg, err := server.LoadConfig(p)
	if err == nil {
		data := filepath.Join(t.TempDir(), "data")
		cfg.Data, cfg.Metrics, cfg.RestorePage.Listen, cfg.Reserve = data, "", "", 0
		d, nerr := server.NewDaemon(context.Background(), cfg, nil)
		if nerr != nil {
			err = nerr
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = d.Run(ctx)
			cancel()
		}
		if err == nil {
			t.Fatal("the daemon ran with listen = \"7457\"")
		}
	}
	if strings.Contains(err.Error(), "another process") || strings.Contains(err.Error(), "has that port") {
		t.Errorf("listen = \"7457\" is blamed on another process having the port: %v", err)
	}
	if !strings.Contains(err.Error(), "listen") {
		t.Errorf("the error does not name the listen setting: %v", err)
	}
}

// What already works, kept working: sizes and durations with the units
// the example shows, and mistakes refused with the key named.
func TestOpsAttackConfigValuesAndMistakes(t *testing.T) {
	for body, check := range map[string]func(server.Config) bool{
		`reserve = "1 GB"`:         func(c server.Config) bool { return c.Reserve == 1e9 },
		`reserve = "1GiB"`:         func(c server.Config) bool { return c.Reserve == 1<<30 },
		`reserve = "1.5 GiB"`:      func(c server.Config) bool { return c.Reserve == 3<<29 },
		`reserve = 1048576`:        func(c server.Config) bool { return c.Reserve == 1<<20 },
		`reserve = "0"`:            func(c server.Config) bool { return c.Reserve == 0 },
		`session_deadline = "10m"`: func(c server.Config) bool { return time.Duration(c.SessionDeadline) == 10*time.Minute },
		"[lifecycle]\nat = \"\"":   func(c server.Config) bool { return c.Lifecycle.At == "" },
		"[lifecycle]\npending_expiry = \"3d\"": func(c server.Config) bool {
			return time.Duration(c.Lifecycle.PendingExpiry) == 72*time.Hour
		},
	} {
		c, err := server.LoadConfig(opsWriteConf(t, body))
		if err != nil || !check(c) {
			t.Errorf("%q: %v (%+v)", body, err, c)
		}
	}
	for body, want := range map[string]string{
		`reserve = "-5MiB"`:                  "reserve",
		`reserve = "12Q"`:                    "reserve",
		`session_deadline = "1d12h"`:         "session_deadline",
		`session_deadline = 3600`:            "session_deadline",
		`max_connections = "10"`:             "max_connections",
		"[admision]\nmax_sessions = 3":       "admision",
		"dta = \"/x\"":                       "dta",
		"data = \"/a\"\ndata = \"/b\"":       "data",
		`registration = "aprove"`:            "registration",
		"[lifecycle]\nat = \"2:30am\"":       "lifecycle.at",
		`data = ""`:                          "data",
		"[restore_page]\nstaff_link = \"0\"": "staff_link",
	} {
		_, err := server.LoadConfig(opsWriteConf(t, body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want an error naming %q, got %v", body, want, err)
		}
	}
	if _, err := server.LoadConfig(t.TempDir()); err == nil {
		t.Error("a directory given as the configuration file was accepted")
	}
	if _, err := server.LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("a missing configuration file (not the default path) was accepted")
	}
}

// An IPv6 listen address and port 0 work.
func TestOpsAttackIPv6AndPortZero(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "[::1]:0", t.TempDir(), "[::1]:0", 0
	cfg.RestorePage.Listen = ""
	d, err := server.NewDaemon(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready:
	case err := <-done:
		cancel()
		t.Skipf("no IPv6 loopback here: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	if !strings.HasPrefix(d.Addr.String(), "[::1]:") || strings.HasSuffix(d.Addr.String(), ":0") {
		t.Errorf("listening on %s", d.Addr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
