package server

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigUnits: the sizes, rates, durations and times of day an admin
// types in xs-backup.toml. Whatever the text, no panic; a value accepted
// is one the daemon can use: never negative (a rate of "NaNgbit" or
// "1e300gbit" was read as -9223372036854775808 bytes/s), a time of day
// within the day.
func FuzzConfigUnits(f *testing.F) {
	for _, s := range []string{"512MiB", "2GB", "1.5 GiB", "5Mbit", "512kbit/s", "90s", "1h30m", "3d", "08:00", "-1h", "NaNgbit", "1e300gbit", "Infmbit", "", " 3d "} {
		f.Add(s, "16:30")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if v, err := ParseSize(a); err == nil && v < 0 {
			t.Fatalf("ParseSize(%q) = %d", a, v)
		}
		if v, err := ParseRate(a); err == nil && v < 0 {
			t.Fatalf("ParseRate(%q) = %d", a, v)
		}
		if v, err := ParseDuration(a); err == nil && v < 0 {
			t.Fatalf("ParseDuration(%q) = %v", a, v)
		}
		if w, err := parseDayWindow(a, b); err == nil && (w.from < 0 || w.from >= 24*60 || w.to < 0 || w.to >= 24*60) {
			t.Fatalf("parseDayWindow(%q, %q) = %+v", a, b, w)
		}
	})
}

// FuzzLoadConfig: any file at the configuration's path is read (at most
// maxConfigBytes) and refused with an error or accepted as a configuration
// that validates; never a panic.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("data = \"/var/lib/xs-backup\"\nlisten = \":7457\"\n[quota]\nsoft = \"1GiB\"\nhard = \"2GiB\"\n"))
	f.Add([]byte("[traffic]\nrate = \"5Mbit\"\n[[traffic.schedule]]\nfrom = \"08:00\"\nto = \"16:00\"\nrate = \"2Mbit\"\n"))
	f.Add([]byte("role = \"mothership\"\n[retention]\nkeep_daily = 30\n"))
	f.Add([]byte("x = [[[[[[[[[[[[[[[[[[[[[[[[[[[[["))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "xs-backup.toml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("LoadConfig accepted a configuration that does not validate: %v", err)
		}
	})
}
