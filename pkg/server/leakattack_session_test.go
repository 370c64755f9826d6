package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
)

// TestLeakAttackBackupSessions: a school server runs for months, and every
// laptop's timer backs up its (mostly unchanged) Journal every day: a full
// session (connect, ask admission, scan, Need, commit, hang up) repeated
// hundreds of times. Afterwards the daemon holds what it held before: no
// goroutine, descriptor or heap that grows with the number of sessions
// (on a 1 GiB school server, a few per session is an outage in a term).
func TestLeakAttackBackupSessions(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "LEAKBK01", 401)
	for range 5 {
		l.run(t) // warm-up: first upload, caches, pools
	}
	base := laMeasure(t)
	const reps = 500
	took := laRepeat(t, reps, func(int) { l.run(t) })
	t.Logf("%d backup sessions in %v", reps, took.Round(time.Millisecond))
	laCheck(t, "backup session", reps, base, 5*time.Second)
}

// TestLeakAttackRestores: children restore a document, or a replaced laptop
// its whole Journal, over QUIC, again and again over a term. Each restore
// ends with nothing left behind in the daemon: goroutines, descriptors
// (pack files opened to read blobs) and heap come back to the baseline.
func TestLeakAttackRestores(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "LEAKRS01", 402)
	r := l.run(t)
	snap := r.Backup.Snapshot
	restore := func() {
		t.Helper()
		out := t.TempDir()
		if _, _, err := agent.Restore(context.Background(), l.st, agent.RestoreOptions{Snapshot: snap, Target: out}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		restore()
	}
	base := laMeasure(t)
	const reps = 120
	took := laRepeat(t, reps, func(int) { restore() })
	t.Logf("%d restores in %v", reps, took.Round(time.Millisecond))
	laCheck(t, "restore over QUIC", reps, base, 5*time.Second)
}
