package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestSummaryLines: the line each outcome prints (the e2e tests run the
// paths a test can reach with a real server; a reserved slot needs a busy one).
func TestSummaryLines(t *testing.T) {
	slot := time.Date(2026, 12, 2, 14, 35, 0, 0, time.Local)
	done := &agent.RunResult{Outcome: agent.Done, WireSent: 3 << 20, Backup: &backup.Result{Snapshot: "2026-12-02T10:00:00Z-ab12",
		Files: 12, BytesSent: 3 << 20, BytesScanned: 10 << 20, BytesRead: 4 << 20, ChunksNew: 5, ChunksTotal: 40,
		Duration: 1234 * time.Millisecond, Skipped: []string{"a/b"}}}
	done.Quota.Used, done.Quota.Hard = 10<<20, 1<<30
	done.RoundTrips = 3
	for _, c := range []struct {
		res     *agent.RunResult
		verbose bool
		want    string
	}{
		{&agent.RunResult{Outcome: agent.Later, Slot: slot}, false,
			"busy: come back at 14:35:00 (the school server reserved this laptop a place then; runs before it end at once)\n"},
		{&agent.RunResult{Outcome: agent.Skipped, Skip: agent.SkipBattery, Reason: "on battery below 20%"}, false,
			"skipped: on battery below 20%\n"},
		{&agent.RunResult{Outcome: agent.Skipped, Skip: agent.SkipLocked, Reason: "another backup run is in progress"}, false,
			"skipped: another backup run is in progress\n"},
		{done, false, "done: backup 2026-12-02T10:00:00Z-ab12, 12 files, 3.0 MiB sent, 1.2s; 1 file(s) left out (they vanished or could not be read; the next run tries again)\n"},
		{done, true, "done: backup 2026-12-02T10:00:00Z-ab12, 12 files, 3.0 MiB sent (5 of 40 chunks new), 10.0 MiB scanned, 4.0 MiB read, 3.0 MiB on the wire in 3 requests, 1.2s, quota 10.0 MiB of 1.0 GiB used; 1 file(s) left out (they vanished or could not be read; the next run tries again)\n  left out: a/b\n"},
	} {
		var b bytes.Buffer
		summary(&b, c.res, c.verbose)
		if b.String() != c.want {
			t.Errorf("got  %q\nwant %q", b.String(), c.want)
		}
		if !c.verbose && strings.Count(b.String(), "\n") != 1 {
			t.Errorf("not one line: %q", b.String())
		}
	}
}
