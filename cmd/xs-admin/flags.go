package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/units"
	"github.com/xs-backup/xs-backup/pkg/admin"
)

// Flag values that check what staff type as the command line is parsed:
// a bad value is a usage error (exit 2) before anything runs.

// fractionValue is a fraction of live data: above 0, at most 1.
type fractionValue struct{ v *float64 }

func (f fractionValue) String() string {
	if f.v == nil || *f.v == 0 {
		return ""
	}
	return strconv.FormatFloat(*f.v, 'g', -1, 64)
}
func (f fractionValue) Type() string { return "fraction" }
func (f fractionValue) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0 && v <= 1) {
		return fmt.Errorf("%q is not a fraction above 0 and at most 1 (examples: 0.5, 1)", s)
	}
	*f.v = v
	return nil
}

// sizeValue is a byte size (500M, 2GiB, 0); nil until set.
type sizeValue struct{ v **int64 }

func (s sizeValue) String() string {
	if s.v == nil || *s.v == nil {
		return ""
	}
	return units.Bytes(**s.v)
}
func (s sizeValue) Type() string { return "size" }
func (s sizeValue) Set(text string) error {
	n, err := units.ParseSize(text)
	if err != nil {
		return err
	}
	*s.v = &n
	return nil
}

// durationValue is a positive duration in days or Go's units (7d, 12h).
type durationValue struct{ v *time.Duration }

func (d durationValue) String() string {
	if d.v == nil || *d.v == 0 {
		return ""
	}
	return d.v.String()
}
func (d durationValue) Type() string { return "duration" }
func (d durationValue) Set(s string) error {
	v, err := admin.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a duration (examples: 7d, 12h, 90m)", s)
	}
	*d.v = v
	return nil
}

// timeValue is a time as admin.ParseTime reads it, relative to now.
type timeValue struct {
	v    *time.Time
	text string
}

func (t *timeValue) String() string { return t.text }
func (t *timeValue) Type() string   { return "time" }
func (t *timeValue) Set(s string) error {
	v, err := admin.ParseTime(s, time.Now())
	if err != nil || v.IsZero() {
		return fmt.Errorf("%q is not a time (examples: 2026-12-31, 2026-12-31T08:00:00Z, +45d, -12h)", s)
	}
	*t.v, t.text = v, s
	return nil
}

// keepValue is a retention count: 0 or more, or -1 (every one) where all
// is set.
type keepValue struct {
	v   *int
	all bool
}

func (k keepValue) String() string { return strconv.Itoa(*k.v) }
func (k keepValue) Type() string   { return "count" }
func (k keepValue) Set(s string) error {
	v, err := strconv.Atoi(s)
	switch {
	case k.all && (err != nil || v < -1):
		return fmt.Errorf("%q is not a count (a whole number, or -1 for every one)", s)
	case !k.all && (err != nil || v < 0):
		return fmt.Errorf("%q is not a count (a whole number, 0 for none)", s)
	}
	*k.v = v
	return nil
}

// snapshotValue is a snapshot as admin.ResolveSnapshot reads it.
type snapshotValue struct{ v *string }

func (s snapshotValue) String() string { return *s.v }
func (s snapshotValue) Type() string   { return "snapshot" }
func (s snapshotValue) Set(text string) error {
	if err := admin.CheckSnapshotSpec(text); err != nil {
		return fmt.Errorf("%q is not a snapshot (an ID, latest, a date like 2026-10-31 or a time like 2026-10-31T18:00:00Z)", text)
	}
	*s.v = text
	return nil
}

// checkSerial checks that a laptop named on the command line (a serial, a
// former serial or a user ID) could be one: what the store accepts as a
// serial.
func checkSerial(what, s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%s must be 1 to 64 characters, not %q", what, s)
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%s %q may only contain letters, digits, '-', '_' and '.'", what, s)
		}
	}
	return nil
}

// args checks a command's positional arguments: at least len(required),
// at most len(required)+len(optional); each is checked by its name (SERIAL
// as a serial, SNAPSHOT as a snapshot).
func args(required []string, optional ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		n := len(required) + len(optional)
		names := append(append([]string{}, required...), optional...)
		switch {
		case len(got) < len(required) || len(got) > n:
			want := strings.Join(required, " ")
			if len(optional) > 0 {
				want = strings.TrimSpace(want + " [" + strings.Join(optional, " ") + "]")
			}
			if want == "" {
				return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), got)
			}
			return fmt.Errorf("%s takes %s, got %d argument(s) %q", cmd.CommandPath(), want, len(got), got)
		}
		for i, v := range got {
			switch name := names[i]; {
			case strings.HasSuffix(name, "SERIAL"):
				if err := checkSerial(name, v); err != nil {
					return err
				}
			case name == "SNAPSHOT":
				if err := admin.CheckSnapshotSpec(v); err != nil {
					return fmt.Errorf("%q is not a snapshot (an ID, latest, a date like 2026-10-31 or a time like 2026-10-31T18:00:00Z)", v)
				}
			}
		}
		return nil
	}
}
