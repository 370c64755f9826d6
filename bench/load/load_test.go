package load

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
)

// TestSmallSchool runs the load test's code at the scale of a class: 30
// laptops whose timers first fire within 100 ms, against a real xs-backupd
// that runs at most 2 sessions at once. The clock is shrunk further than
// the default (MaxSlotWait 0.5 s, a timer every 0.25 s plus up to 0.125 s:
// firings still come closer together than MaxSlotWait, as the shipped ones
// do) so that the class needs several times MaxSlotWait to drain even
// without the race detector (30 first backups of ~0.1 s, two at a time):
// the laptops at the back must be told when to come back, keep that time,
// end the runs before it offline, and be there when it comes.
// Every backup must complete, admission must have handed out slots (not
// granted everyone at once), and every laptop's snapshot must be on the
// server.
func TestSmallSchool(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real xs-backupd and 30 laptops")
	}
	small := journalgen.Small(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{
		Laptops:     30,
		Capacity:    2,
		Spread:      100 * time.Millisecond,
		MaxSlotWait: 500 * time.Millisecond,
		TimerPeriod: 250 * time.Millisecond,
		TimerDelay:  125 * time.Millisecond,
		Comeback:    ComebackTimer,
		Deadline:    time.Minute,
		Journal:     &small,
		WorkDir:     t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wall %v, sessions %v, slots %v, runs %d, Later %d (%d offline), server RSS %d MiB, CPU %.1f s",
		r.Wall(), r.Session, r.Metrics["xs_slots_issued_total"], r.Runs, r.Laters, r.LatersOffline, r.ServerPeakRSS>>20, r.ServerCPU)
	if r.Completed != 30 || r.Failed != 0 {
		t.Fatalf("%d completed, %d failed: %v %v", r.Completed, r.Failed, r.FailedBy, r.FailedExamples)
	}
	if r.Metrics["xs_slots_issued_total"] == 0 {
		t.Fatal("the server issued no slots: every laptop was granted at once")
	}
	// Measured admission tells a laptop to come back from the drain rate
	// (seconds here), so runs that end Later and those kept offline
	// until the time comes are few or none: not asserted any more.
	t.Logf("%d runs ended Later, %d of them offline", r.Laters, r.LatersOffline)
	if r.Samples.Sessions > 2 {
		t.Fatalf("%d sessions ran at once with capacity 2", r.Samples.Sessions)
	}
	if r.VerifiedCount != 30 || len(r.VerifyErrors) > 0 {
		t.Fatalf("%d of 30 snapshots found on the server: %v", r.VerifiedCount, r.VerifyErrors)
	}
	if got := r.Metrics["xs_commits_total"]; got != 30 {
		t.Fatalf("the server counted %v commits, want 30", got)
	}
	if !r.Met() {
		t.Fatalf("targets missed: %+v", r.Targets())
	}
	if md := r.Markdown(); !strings.Contains(md, "| every backup completes | 0 failed | 0 of 30 failed | yes |") {
		t.Fatalf("the report does not say every backup completed:\n%s", md)
	}
}

// TestUpdateReadme replaces the section between the markers, and appends
// the markers to a README that has none.
func TestUpdateReadme(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(path, []byte("# Benchmarks\n\nintro\n"), 0o644)
	if err := UpdateReadme(path, "first"); err != nil {
		t.Fatal(err)
	}
	if err := UpdateReadme(path, "second\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := "# Benchmarks\n\nintro\n\n" + ReadmeBegin + "\nsecond\n" + ReadmeEnd + "\n"
	if string(b) != want {
		t.Fatalf("README:\n%q\nwant\n%q", b, want)
	}
	os.WriteFile(path, []byte(ReadmeEnd+"\n"+ReadmeBegin+"\n"), 0o644)
	if err := UpdateReadme(path, "x"); err == nil {
		t.Fatal("markers in the wrong order were accepted")
	}
}
