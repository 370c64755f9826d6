package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A mothership approves schools by hand unless its staff chose otherwise.
func TestMothershipRegistrationDefault(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(p, []byte("role = \"mothership\"\n"), 0o644)
	c, err := LoadConfig(p)
	if err != nil || c.Registration != "approve" {
		t.Fatalf("mothership registration %q %v, want approve", c.Registration, err)
	}
	os.WriteFile(p, []byte("role = \"mothership\"\nregistration = \"open\"\n"), 0o644)
	if c, err = LoadConfig(p); err != nil || c.Registration != "open" {
		t.Fatalf("explicit open: %q %v", c.Registration, err)
	}
	os.WriteFile(p, []byte("[mothership]\naddress = \"m:7457\"\n"), 0o644)
	if _, err = LoadConfig(p); err == nil {
		t.Fatal("[mothership] without the school's name was accepted")
	}
}

func TestMothershipWindows(t *testing.T) {
	var m MothershipConfig
	day := func(h, min int) time.Time { return time.Date(2026, 12, 7, h, min, 0, 0, time.UTC) }
	if in, end := m.window(day(12, 0)); !in || !end.IsZero() {
		t.Fatalf("no windows: %v %v, want any time", in, end)
	}
	m.Windows = append(m.Windows, struct {
		From string `toml:"from"`
		To   string `toml:"to"`
	}{"18:00", "06:00"}, struct {
		From string `toml:"from"`
		To   string `toml:"to"`
	}{"12:00", "13:00"})
	for _, c := range []struct {
		at  time.Time
		in  bool
		end time.Time
	}{
		{day(19, 30), true, day(6, 0).AddDate(0, 0, 1)},
		{day(3, 0), true, day(6, 0)},
		{day(6, 0), false, time.Time{}},
		{day(12, 30), true, day(13, 0)},
		{day(13, 0), false, time.Time{}},
		{day(17, 59), false, time.Time{}},
	} {
		in, end := m.window(c.at)
		if in != c.in || !end.Equal(c.end) {
			t.Errorf("at %s: %v until %s, want %v until %s", c.at.Format("15:04"), in, end, c.in, c.end)
		}
	}
	m.Address, m.School = "x:1", "s"
	m.Windows[0].To = "25:00"
	if err := m.validate("school"); err == nil {
		t.Error("a window ending at 25:00 was accepted")
	}
	m.Windows = nil
	if err := m.validate("mothership"); err == nil {
		t.Error("a mothership replicating to a mothership was accepted")
	}
	m.Key = "zz"
	if err := m.validate("school"); err == nil {
		t.Error("a key that is not hex was accepted")
	}
}
