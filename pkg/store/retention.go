package store

import (
	"fmt"
	"slices"
	"time"
)

// Policy says which of a user's snapshots retention keeps. A snapshot is kept
// if any rule keeps it; the user's latest snapshot and every pinned snapshot
// are always kept. The bucket rules (daily, weekly, monthly, yearly) keep the
// newest snapshot of each of the last N days, ISO weeks, calendar months or
// years that have snapshots (-1: every one), in the time zone of the time the
// policy is evaluated at — like restic's keep-daily and friends.
//
// The zero Policy keeps only the latest and pinned snapshots; stores and
// configurations use DefaultPolicy unless told otherwise.
type Policy struct {
	// KeepLast keeps the N newest snapshots.
	KeepLast int `json:"keep_last,omitempty" toml:"keep_last"`
	// KeepWithinDays keeps every snapshot younger than N days.
	KeepWithinDays int `json:"keep_within_days,omitempty" toml:"keep_within_days"`
	KeepDaily      int `json:"keep_daily,omitempty" toml:"keep_daily"`
	KeepWeekly     int `json:"keep_weekly,omitempty" toml:"keep_weekly"`
	KeepMonthly    int `json:"keep_monthly,omitempty" toml:"keep_monthly"`
	KeepYearly     int `json:"keep_yearly,omitempty" toml:"keep_yearly"`
}

// DefaultPolicy is the school default: every snapshot of the last 30 days,
// and beyond that the newest snapshot of each calendar month.
func DefaultPolicy() Policy { return Policy{KeepWithinDays: 30, KeepMonthly: -1} }

// Validate reports a policy with impossible values.
func (p Policy) Validate() error {
	for _, n := range []int{p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly} {
		if n < -1 {
			return fmt.Errorf("%w: retention counts must be -1 (all), 0 (none) or positive", ErrInvalid)
		}
	}
	if p.KeepLast < 0 || p.KeepWithinDays < 0 {
		return fmt.Errorf("%w: keep_last and keep_within_days cannot be negative", ErrInvalid)
	}
	if p.KeepWithinDays > maxKeepWithinDays {
		return fmt.Errorf("%w: keep_within_days above %d (about 2,700 years) cannot be counted back from today", ErrInvalid, maxKeepWithinDays)
	}
	return nil
}

// maxKeepWithinDays caps keep_within_days: a count of days far larger
// overflowed the date it is counted back from, into the future, and kept
// nothing.
const maxKeepWithinDays = 1_000_000

// Verdict is what the policy decided for one snapshot, and why.
type Verdict struct {
	ID      SnapshotID `json:"id"`
	Time    time.Time  `json:"time"`
	Keep    bool       `json:"keep"`
	Reasons []string   `json:"reasons,omitempty"`
}

// Apply decides, as if the time were now, which of snaps the policy keeps.
// The verdicts come in the order of snaps. On a mothership, where one
// school's snapshots of all its laptops belong to the school, the policy
// applies to each laptop's snapshots (each origin) on its own.
func (p Policy) Apply(snaps []*Snapshot, now time.Time) []Verdict {
	groups := map[uint64][]int{}
	for i, sn := range snaps {
		var k uint64
		if sn.Origin != nil && sn.Origin.User != uint64(sn.User) {
			// Another laptop's, on a mothership (a school server rebuilt
			// from one has its laptops' snapshots under their own IDs).
			k = sn.Origin.User + 1
		}
		groups[k] = append(groups[k], i)
	}
	if len(groups) <= 1 {
		return p.apply(snaps, now)
	}
	out := make([]Verdict, len(snaps))
	for _, idx := range groups {
		sub := make([]*Snapshot, len(idx))
		for j, i := range idx {
			sub[j] = snaps[i]
		}
		for j, v := range p.apply(sub, now) {
			out[idx[j]] = v
		}
	}
	return out
}

func (p Policy) apply(snaps []*Snapshot, now time.Time) []Verdict {
	out := make([]Verdict, len(snaps))
	order := make([]int, len(snaps)) // newest first
	for i, sn := range snaps {
		out[i] = Verdict{ID: sn.ID, Time: sn.Time}
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return CompareOrder(snaps[b], snaps[a]) })
	keep := func(i int, why string) {
		out[i].Keep = true
		out[i].Reasons = append(out[i].Reasons, why)
	}
	loc := now.Location()
	buckets := []struct {
		name string
		n    int
		key  func(t time.Time) string
	}{
		{"daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
	used := make([]int, len(buckets))
	last := make([]string, len(buckets))
	cutoff := now.AddDate(0, 0, -min(p.KeepWithinDays, maxKeepWithinDays)) // a policy saved before the cap
	for rank, i := range order {
		sn := snaps[i]
		t := sn.Time.In(loc)
		if rank == 0 {
			keep(i, "latest")
		}
		if sn.Pinned {
			keep(i, "pinned: "+sn.PinReason)
		}
		if rank < p.KeepLast {
			keep(i, fmt.Sprintf("last %d", p.KeepLast))
		}
		if p.KeepWithinDays > 0 && t.After(cutoff) {
			keep(i, fmt.Sprintf("within %d days", p.KeepWithinDays))
		}
		for b := range buckets {
			bk := &buckets[b]
			if bk.n == 0 {
				continue
			}
			k := bk.key(t)
			if k == last[b] || (bk.n > 0 && used[b] >= bk.n) {
				continue
			}
			last[b] = k
			used[b]++
			keep(i, bk.name+" "+k)
		}
	}
	return out
}
