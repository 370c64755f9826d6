package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestTrafficConfig: the [traffic] section reads rates in bits or bytes,
// a schedule must be well formed, and the settings admission no longer
// has are refused with what replaced them.
func TestTrafficConfig(t *testing.T) {
	for in, want := range map[string]int64{"5Mbit": 625000, "20Mbit/s": 2500000, "512kbit": 64000, "2MB": 2000000, "1MiB": 1 << 20, "": 0, "1000": 1000} {
		if got, err := server.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	path := filepath.Join(t.TempDir(), "xs.toml")
	good := "[traffic]\ntarget_delay = \"50ms\"\nrate = \"20Mbit\"\n[[traffic.schedule]]\nfrom = \"08:00\"\nto = \"16:00\"\nrate = \"5Mbit\"\n"
	os.WriteFile(path, []byte(good), 0o644)
	c, err := server.LoadConfig(path)
	if err != nil || c.Traffic.Rate != 2500000 || len(c.Traffic.Schedule) != 1 {
		t.Fatalf("%+v %v", c.Traffic, err)
	}
	for bad, says := range map[string]string{
		"capacity = 4\n":                  "measured",
		"slot_length = \"2m\"\n":          "come back",
		"[traffic]\nrate = \"fast\"\n":    "not a rate",
		"[admission]\nmax_sessions = 1\n": "at least 2",
		"[[traffic.schedule]]\nfrom = \"8\"\nto = \"16:00\"\nrate = \"1Mbit\"\n": "times of day",
		"[[traffic.schedule]]\nfrom = \"08:00\"\nto = \"16:00\"\n":               "give the rate",
	} {
		os.WriteFile(path, []byte(bad), 0o644)
		_, err := server.LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("config %q: %v, want an error saying %q", bad, err, says)
		}
	}
}
