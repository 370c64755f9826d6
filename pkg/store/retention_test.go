package store_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// daily makes two years of snapshots for one user: most days one (at a random
// hour), some days none, a few days two; a few are pinned.
func daily(r *rand.Rand, start time.Time, days int) []*store.Snapshot {
	var out []*store.Snapshot
	for d := 0; d < days; d++ {
		n := 1
		switch x := r.IntN(10); {
		case x < 2:
			n = 0
		case x == 9:
			n = 2
		}
		for k := 0; k < n; k++ {
			t := start.AddDate(0, 0, d).Add(time.Duration(r.IntN(86400)) * time.Second)
			sn := &store.Snapshot{ID: store.SnapshotID(fmt.Sprintf("%s-%06x", t.UTC().Format("20060102T150405Z"), r.IntN(1<<24))), Time: t}
			if r.IntN(60) == 0 {
				sn.Pinned, sn.PinReason = true, "science fair"
			}
			out = append(out, sn)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// modelKeep is the retention rule written independently of Policy.Apply:
// for each bucket rule, group snapshots by their bucket, keep the newest of
// each of the n most recent buckets.
func modelKeep(p store.Policy, snaps []*store.Snapshot, now time.Time) map[store.SnapshotID]bool {
	keep := map[store.SnapshotID]bool{}
	if len(snaps) == 0 {
		return keep
	}
	loc := now.Location()
	latest := snaps[0]
	for _, sn := range snaps {
		if sn.Time.After(latest.Time) {
			latest = sn
		}
		if sn.Pinned {
			keep[sn.ID] = true
		}
		if p.KeepWithinDays > 0 && now.Sub(sn.Time) < time.Duration(p.KeepWithinDays)*24*time.Hour {
			keep[sn.ID] = true
		}
	}
	keep[latest.ID] = true
	byTime := slices.Clone(snaps)
	sort.Slice(byTime, func(i, j int) bool { return byTime[i].Time.After(byTime[j].Time) })
	for i := 0; i < p.KeepLast && i < len(byTime); i++ {
		keep[byTime[i].ID] = true
	}
	rules := []struct {
		n   int
		key func(time.Time) string
	}{
		{p.KeepDaily, func(t time.Time) string { y, m, d := t.Date(); return fmt.Sprint(y, m, d) }},
		{p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, "w", w) }},
		{p.KeepMonthly, func(t time.Time) string { y, m, _ := t.Date(); return fmt.Sprint(y, m) }},
		{p.KeepYearly, func(t time.Time) string { return fmt.Sprint(t.Year()) }},
	}
	for _, rule := range rules {
		if rule.n == 0 {
			continue
		}
		newest := map[string]*store.Snapshot{}
		for _, sn := range snaps {
			k := rule.key(sn.Time.In(loc))
			if cur, ok := newest[k]; !ok || sn.Time.After(cur.Time) {
				newest[k] = sn
			}
		}
		var winners []*store.Snapshot
		for _, sn := range newest {
			winners = append(winners, sn)
		}
		sort.Slice(winners, func(i, j int) bool { return winners[i].Time.After(winners[j].Time) })
		for i, sn := range winners {
			if rule.n > 0 && i >= rule.n {
				break
			}
			keep[sn.ID] = true
		}
	}
	return keep
}

func TestRetentionPolicyMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	start := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	zones := []*time.Location{time.UTC, time.FixedZone("UTC-5", -5*3600), time.FixedZone("UTC+3", 3*3600)}
	policies := []store.Policy{
		store.DefaultPolicy(),
		{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12},
		{KeepLast: 3, KeepYearly: -1},
		{KeepWithinDays: 10, KeepWeekly: -1},
		{},
	}
	checked := 0
	for user := 0; user < 60; user++ {
		snaps := daily(r, start, 730)
		for _, p := range policies {
			// Evaluate at several times, including before the last snapshot.
			for _, off := range []int{730, 745, 800, 400} {
				now := start.AddDate(0, 0, off).Add(time.Duration(r.IntN(86400)) * time.Second).In(zones[r.IntN(len(zones))])
				got := p.Apply(snaps, now)
				want := modelKeep(p, snaps, now)
				if len(got) != len(snaps) {
					t.Fatalf("%d verdicts for %d snapshots", len(got), len(snaps))
				}
				for i, v := range got {
					if v.ID != snaps[i].ID {
						t.Fatalf("verdict %d is for %s, want %s", i, v.ID, snaps[i].ID)
					}
					if v.Keep != want[v.ID] {
						t.Fatalf("user %d policy %+v at %s: snapshot %s (%s) keep=%v, model says %v (reasons %v)",
							user, p, now, v.ID, v.Time.In(now.Location()), v.Keep, want[v.ID], v.Reasons)
					}
					if v.Keep && len(v.Reasons) == 0 {
						t.Fatalf("kept %s without a reason", v.ID)
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d verdicts checked against the model", checked)
}

func TestDefaultPolicyKeepsMonthsAfterThirtyDays(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var snaps []*store.Snapshot
	for d := 0; d < 120; d++ { // Jan 1 .. Apr 30
		tm := start.AddDate(0, 0, d)
		snaps = append(snaps, &store.Snapshot{ID: store.SnapshotID(tm.Format("20060102T150405Z") + "-000000"), Time: tm})
	}
	now := time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC)
	var kept []string
	for _, v := range store.DefaultPolicy().Apply(snaps, now) {
		if v.Keep {
			kept = append(kept, v.Time.Format("01-02"))
		}
	}
	// Nothing is younger than 30 days except Apr 16..30; months keep their last day.
	want := []string{"01-31", "02-28", "03-31", "04-15", "04-16", "04-17", "04-18", "04-19", "04-20", "04-21",
		"04-22", "04-23", "04-24", "04-25", "04-26", "04-27", "04-28", "04-29", "04-30"}
	if !slices.Equal(kept, want) {
		t.Fatalf("kept %v\nwant %v", kept, want)
	}
}
