package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"
)

// A laptop upgraded from the first releases keeps the state files they
// wrote: server.json without key, key_change, continued and snapshots (and
// with a field from a newer release, as after a downgrade), last.json
// without server_time, slot.json without Saved. The next runs read them
// as before: done today is done, a slot still ahead is waited for, and a
// day later the laptop backs up with its old registration and writes the
// new fields.
func TestOpsAttackUpgradeKeepsOldLaptopState(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "OPS0UPGR")
	ctx := context.Background()
	opts := RunOptions{Source: src, PowerSupplyDir: t.TempDir(), BootID: func() string { return "boot-1" }}
	if res, err := Run(ctx, st, opts); err != nil || res.Outcome != Done {
		t.Fatalf("first run: %+v %v", res, err)
	}
	reg, err := st.Registration()
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf(`{
  "server": %q,
  "server_key": %q,
  "serial": %q,
  "approved": true,
  "registered": "2026-01-05T08:00:00Z",
  "school_name": "from a newer release"
}`, reg.Server, reg.ServerKey, reg.Serial)
	if err := os.WriteFile(st.path("server.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	last := st.LastRun()
	writeOld := func(name string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if err := os.WriteFile(st.path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	type oldLast struct {
		Time     time.Time `json:"time"`
		Snapshot string    `json:"snapshot"`
	}
	writeOld("last.json", oldLast{time.Now().UTC(), last.Snapshot})
	if res, err := Run(ctx, st, opts); err != nil || res.Outcome != Skipped || res.Skip != SkipDoneToday {
		t.Errorf("old last.json of today: %+v %v, want skipped as done today", res, err)
	}
	writeOld("last.json", oldLast{time.Now().Add(-26 * time.Hour).UTC(), last.Snapshot})
	slot := time.Now().Add(30 * time.Minute)
	writeOld("slot.json", struct{ Slot time.Time }{slot})
	if res, err := Run(ctx, st, opts); err != nil || res.Outcome != Later || !res.Slot.Equal(slot) {
		t.Errorf("old slot.json 30 minutes ahead: %+v %v, want later at %s", res, err, slot)
	}
	os.Remove(st.path("slot.json"))
	os.WriteFile(src+"/new-entry.txt", []byte("written after the upgrade"), 0o644)
	res, err := Run(ctx, st, opts)
	if err != nil || res.Outcome != Done {
		t.Fatalf("run a day later with the old state: %+v %v", res, err)
	}
	if l := st.LastRun(); l.ServerTime.IsZero() || l.Snapshot == last.Snapshot {
		t.Errorf("last.json after the run: %+v", l)
	}
	if n := snapshotCount(t, st); n != 2 {
		t.Errorf("%d snapshots, want 2", n)
	}
	restoreEquals(t, st, src, "after the upgrade")
}
