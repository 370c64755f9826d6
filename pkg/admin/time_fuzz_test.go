package admin

import (
	"testing"
	"time"
)

// FuzzParseTime: what staff type after --at, --before and the like. No
// panic; an offset goes the way its sign says ("+-5h" was five hours in
// the past); a non-empty text never reads as the zero time ("not given").
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"+45d", "-12h", "2026-12-31", "0001-01-01", "0001-01-01T00:00:00Z", "2026-12-31T08:00:00Z", "2026-12-31 08:00", "+-5h", "-+5h", "+", "", "+9999999999d", "+1h30m"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, text string) {
		got, err := ParseTime(text, now)
		if err != nil {
			return
		}
		if text != "" && got.IsZero() {
			t.Fatalf("ParseTime(%q) is the zero time", text)
		}
		switch {
		case text != "" && text[0] == '+' && got.Before(now):
			t.Fatalf("ParseTime(%q) = %v, before now", text, got)
		case text != "" && text[0] == '-' && got.After(now):
			t.Fatalf("ParseTime(%q) = %v, after now", text, got)
		}
		if d, err := ParseDuration(text); err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v", text, d)
		}
	})
}
