package server

import (
	"testing"
	"time"
)

// TestTrafficSchedule: the cap follows the time of day, the hard rate
// applies at any hour, the lower of the two wins, and a window may cross
// midnight.
func TestTrafficSchedule(t *testing.T) {
	var tr Traffic
	tr.Rate = 2500000
	tr.Schedule = append(tr.Schedule, struct {
		From string `toml:"from"`
		To   string `toml:"to"`
		Rate Rate   `toml:"rate"`
	}{"08:00", "16:00", 625000}, struct {
		From string `toml:"from"`
		To   string `toml:"to"`
		Rate Rate   `toml:"rate"`
	}{"22:00", "02:00", 5000000})
	p, err := tr.pacing()
	if err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) int64 { return p.Cap(time.Date(2026, 11, 23, h, m, 0, 0, time.Local)) }
	for _, c := range []struct {
		h, m int
		want int64
	}{{7, 59, 2500000}, {8, 0, 625000}, {15, 59, 625000}, {16, 0, 2500000}, {23, 0, 2500000}, {1, 0, 2500000}} {
		if got := at(c.h, c.m); got != c.want {
			t.Errorf("%02d:%02d: cap %d, want %d", c.h, c.m, got, c.want)
		}
	}
	if p.TargetDelay != -1 {
		t.Errorf("target_delay \"0s\" is pacing off (-1), got %v", p.TargetDelay)
	}
}
