package store

import (
	"testing"
	"time"
)

// On a mothership one school's snapshots of all its laptops belong to the
// school: retention keeps each laptop's history by the policy, not the
// school's as one.
func TestRetentionPerOrigin(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var snaps []*Snapshot
	for lap := uint64(1); lap <= 2; lap++ {
		for d := 0; d < 3; d++ {
			tm := now.AddDate(0, 0, -d).Add(time.Duration(lap) * time.Minute)
			snaps = append(snaps, &Snapshot{ID: newSnapshotID(tm), Time: tm,
				Origin: &Origin{User: lap, Snapshot: string(newSnapshotID(tm)), Time: tm}})
		}
	}
	kept := map[uint64]int{}
	for i, v := range (Policy{KeepLast: 1}).Apply(snaps, now) {
		if v.Keep {
			kept[snaps[i].Origin.User]++
		}
	}
	if kept[1] != 1 || kept[2] != 1 {
		t.Fatalf("kept per laptop %v, want the latest of each", kept)
	}
	// Without origins (a school server) the policy sees one history.
	for _, sn := range snaps {
		sn.Origin = nil
	}
	n := 0
	for _, v := range (Policy{KeepLast: 1}).Apply(snaps, now) {
		if v.Keep {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("kept %d of one history, want 1", n)
	}
}

func TestValidOrigin(t *testing.T) {
	good := &Origin{User: 3, Snapshot: string(newSnapshotID(time.Now())), Time: time.Now()}
	if err := validOrigin(good); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*Origin{
		{User: 3, Snapshot: "../../etc/passwd", Time: time.Now()},
		{User: 3, Snapshot: good.Snapshot},
		{User: 3, Snapshot: good.Snapshot, Time: time.Now(), Serial: string(make([]byte, 65))},
	} {
		if err := validOrigin(o); err == nil {
			t.Errorf("origin %+v accepted", o)
		}
	}
}
