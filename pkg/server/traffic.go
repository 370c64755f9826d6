package server

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/proto"
)

// replacedKeys are settings that no longer mean anything, and what
// replaced them.
var replacedKeys = map[string]string{
	"capacity":    "how many laptops back up at once is now measured (it grows while throughput grows and shrinks when round trips inflate); remove it, or bound it with max_sessions in [admission]",
	"slot_length": "laptops are now told when to come back from the measured drain rate and their place in the queue, not in fixed windows; remove it",
}

// Traffic is the [traffic] section: how much of the school's network
// backups may take.
type Traffic struct {
	// TargetDelay is the most queueing delay backups may add on the
	// school's network (LEDBAT, RFC 6817): uploads slow down when round
	// trips grow above their base by more than half the base round trip,
	// at least 15 ms and at most this. "0s" turns it off.
	TargetDelay Duration `toml:"target_delay"`
	// Rate is a hard cap on all uploads together, at any hour ("" or
	// "0": none), e.g. "20Mbit", "2.5MB" (bytes per second).
	Rate Rate `toml:"rate"`
	// Schedule caps uploads at given hours, e.g. 5Mbit from 08:00 to
	// 16:00; outside every window only Rate applies.
	Schedule []struct {
		From string `toml:"from"`
		To   string `toml:"to"`
		Rate Rate   `toml:"rate"`
	} `toml:"schedule"`
}

// Rate is bytes per second, read as "5Mbit", "20Mbit/s", "512kbit",
// "2MB" or "1.5MiB" (per second) or a plain number of bytes per second.
type Rate int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	*r = Rate(v)
	return err
}

// ParseRate parses a rate (see Rate) into bytes per second.
func ParseRate(text string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(text), "/s")
	if t == "" {
		return 0, nil
	}
	lower := strings.ToLower(t)
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8}} {
		if n, ok := strings.CutSuffix(lower, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err != nil || !(f >= 0) || f*u.mult >= math.MaxInt64 {
				break // NaN, infinities and rates past int64 are no rates
			}
			return int64(f * u.mult), nil
		}
	}
	v, err := ParseSize(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a rate (examples: 5Mbit, 512kbit, 2MB)", text)
	}
	return v, nil
}

// pacing turns the section into the protocol's pacing configuration.
func (t Traffic) pacing() (proto.PacingConfig, error) {
	p := proto.PacingConfig{TargetDelay: time.Duration(t.TargetDelay)}
	if p.TargetDelay == 0 {
		p.TargetDelay = -1
	}
	type window struct {
		dayWindow
		rate int64
	}
	var ws []window
	for i, s := range t.Schedule {
		dw, err := parseDayWindow(s.From, s.To)
		if err != nil {
			return p, fmt.Errorf("schedule %d: %w", i+1, err)
		}
		if s.Rate <= 0 {
			return p, fmt.Errorf("schedule %d: give the rate for %s–%s, like \"5Mbit\"", i+1, s.From, s.To)
		}
		ws = append(ws, window{dw, int64(s.Rate)})
	}
	if len(ws) == 0 && t.Rate == 0 {
		return p, nil
	}
	always := int64(t.Rate)
	p.Cap = func(now time.Time) int64 {
		lt := now.Local()
		rate := always
		for _, w := range ws {
			if w.contains(lt) && (rate == 0 || w.rate < rate) {
				rate = w.rate
			}
		}
		return rate
	}
	return p, nil
}

// dayWindow is a span of the day, in minutes after midnight, from "HH:MM"
// to "HH:MM"; one that ends before it starts runs across midnight. The
// traffic schedule and the replication windows are made of them.
type dayWindow struct{ from, to int }

func parseDayWindow(from, to string) (dayWindow, error) {
	f, err1 := time.Parse("15:04", from)
	e, err2 := time.Parse("15:04", to)
	if err1 != nil || err2 != nil {
		return dayWindow{}, fmt.Errorf("from and to are times of day like \"08:00\", not %q and %q", from, to)
	}
	return dayWindow{f.Hour()*60 + f.Minute(), e.Hour()*60 + e.Minute()}, nil
}

// contains reports whether t's time of day (in t's location) is inside w.
func (w dayWindow) contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	if w.from > w.to {
		return m >= w.from || m < w.to
	}
	return m >= w.from && m < w.to
}

// end returns when the window that contains t ends.
func (w dayWindow) end(t time.Time) time.Time {
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
	if w.from > w.to && t.Hour()*60+t.Minute() >= w.from {
		midnight = midnight.AddDate(0, 0, 1)
	}
	return midnight.Add(time.Duration(w.to) * time.Minute)
}
