package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// kaWorld is a laptop registered with an in-process daemon whose timer runs
// are killed.
type kaWorld struct {
	d      *server.Daemon
	serial string
	st     State
	src    string
	psu    string
	noon   time.Time // noon today, local time
	// reported holds the stray files already reported.
	reported map[string]bool
}

func kaNewWorld(t *testing.T, serial string) *kaWorld {
	d := kaDaemon(t)
	st, src := attackLaptop(t, d.Addr.String(), t.TempDir(), serial)
	y, m, dd := time.Now().Date()
	return &kaWorld{d: d, serial: serial, st: st, src: src, psu: t.TempDir(), reported: map[string]bool{}, noon: time.Date(y, m, dd, 12, 0, 0, 0, time.Local)}
}

// day is the laptop's clock on day i from tomorrow: every round is a new
// day, so the timer's run backs up.
func (w *kaWorld) day(i int) time.Time { return w.noon.AddDate(0, 0, 1+i) }

// change changes the Journal as a day's work does, and one file in place
// with its size and modification time kept.
func (w *kaWorld) change(t *testing.T, seed int) {
	t.Helper()
	if err := journalgen.Mutate(w.src, 7, seed); err != nil {
		t.Fatal(err)
	}
	kaEditInPlace(t, w.src, seed)
}

// killedRun starts the timer's run of day i in a child process, kills it
// delay after it started, and checks what the kill left: a snapshot the
// killed run committed is the Journal it scanned, and last.json counts the
// day only for a snapshot the server holds. It returns whether the killed
// run committed a snapshot.
func (w *kaWorld) killedRun(t *testing.T, i int, delay time.Duration, what string) (committed bool) {
	t.Helper()
	before := kaCopy(t, w.src)
	snsBefore := kaSnapshots(t, w.d, w.serial)
	lastBefore := w.st.LastRun()
	c := kaStart(t, "run", kaRunEnv(w.st, w.src, w.psu, w.day(i), false)...)
	finished, end := c.killAfter(delay)
	sns := kaSnapshots(t, w.d, w.serial)
	committed = len(sns) > len(snsBefore)
	t.Logf("%s: killed after %v: finished=%v %q, committed=%v", what, delay, finished, end, committed)
	if committed {
		kaRestoreEquals(t, w.st, string(sns[len(sns)-1].ID), before, what+": the snapshot the killed run committed")
	}
	last := w.st.LastRun()
	if last.Snapshot != lastBefore.Snapshot || !last.Time.Equal(lastBefore.Time) {
		if !committed || !kaHas(sns, last.Snapshot) {
			t.Fatalf("%s: last.json counts the day (%v, backup %q) though the server holds no such new backup (committed=%v)", what, last.Time, last.Snapshot, committed)
		}
	}
	return committed
}

// nextRun is the timer's next run, 2 minutes later the same day, with
// the Journal changed since the kill: it must back up (or, only when the
// killed run committed its backup and counted the day, be skipped as done
// today; then a forced run follows), its snapshot must be the Journal, and
// the state directory must hold no temporary file a killed run left.
func (w *kaWorld) nextRun(t *testing.T, i int, committed bool, what string) {
	t.Helper()
	now := w.day(i).Add(2 * time.Minute)
	o := RunOptions{Source: w.src, Now: func() time.Time { return now }, PowerSupplyDir: w.psu}
	res, err := Run(context.Background(), w.st, o)
	if err != nil {
		t.Fatalf("%s: the timer's next run failed: %v", what, err)
	}
	if res.Outcome == Skipped {
		if res.Skip != SkipDoneToday || !committed {
			t.Fatalf("%s: the timer's next run was skipped (%s: %s) though the killed run committed nothing", what, res.Skip, res.Reason)
		}
		o.Force = true
		if res, err = Run(context.Background(), w.st, o); err != nil {
			t.Fatalf("%s: the forced run after the kill: %v", what, err)
		}
	}
	if res.Outcome != Done {
		t.Fatalf("%s: the run after the kill: %+v", what, res)
	}
	kaRestoreEquals(t, w.st, res.Backup.Snapshot, w.src, what+": the run after the kill")
	if got := w.st.LastRun().Snapshot; got != res.Backup.Snapshot {
		t.Fatalf("%s: last.json names %q, the run committed %q", what, got, res.Backup.Snapshot)
	}
	for _, name := range kaStrays(t, w.st) {
		if !w.reported[name] {
			w.reported[name] = true
			t.Errorf("%s: after the next uncut run the state directory still holds %q, which a killed run left", what, name)
		}
	}
}

// TestKillAttackRunKilledAtAnyMoment: the timer's backup run (a real
// process) is SIGKILLed at 10 moments spread from 1 ms to the whole run,
// on a Journal that changes before every run and again after every kill
// (one file in place, size and modification time kept); after every
// other kill the state file written last also loses its last write (emptied,
// cut at half, its last byte lost, a sector zeroed). After each: a snapshot
// the killed run committed is the Journal as it scanned it, last.json
// counts the day only for a snapshot the server holds, the next timer run
// backs up (skipped only if the killed run's backup counted), its snapshot
// restores byte for byte to the changed Journal, and no temporary file is
// left in the state directory.
func TestKillAttackRunKilledAtAnyMoment(t *testing.T) {
	w := kaNewWorld(t, "KILL-ANY")
	// Calibration: an uncut first run (everything sent) and an uncut
	// second one (a day's change), to know how long a run takes.
	for i := range 2 {
		if i > 0 {
			w.change(t, 500)
		}
		c := kaStart(t, "run", kaRunEnv(w.st, w.src, w.psu, w.day(i), false)...)
		if finished, end := c.wait(t); !finished || end != "end done " {
			t.Fatalf("the uncut run %d: %q", i, end)
		}
	}
	c := kaStart(t, "run", kaRunEnv(w.st, w.src, w.psu, w.day(2), false)...)
	w.change(t, 501)
	<-c.ready
	c.wait(t)
	full := time.Since(c.start)
	t.Logf("an uncut run takes %v", full)
	// 1 and 5 ms, then evenly to 1.2 times the whole run.
	delays := []time.Duration{time.Millisecond, 5 * time.Millisecond}
	for k := 1; k <= 8; k++ {
		delays = append(delays, 5*time.Millisecond+time.Duration(k)*(full*12/10)/8)
	}
	for r, delay := range delays {
		i := 3 + r
		what := "round " + delay.Round(time.Microsecond).String()
		w.change(t, 10*r)
		committed := w.killedRun(t, i, delay, what)
		if r%2 == 1 {
			if name := kaLastWritten(t, w.st); name != "" {
				how := kaLoseWrite(t, filepath.Join(w.st.Dir, name), r/2)
				t.Logf("%s: %s %s after the kill", what, name, how)
				what += ", " + name + " " + how
				if name == "last.json" {
					// A last.json that lost its write may no longer count
					// the day: the next run backs up again, which is right.
					committed = true
				}
			}
		}
		w.change(t, 10*r+1)
		w.nextRun(t, i, committed, what)
	}
}

// TestKillAttackCacheSectorLost: the file cache, the laptop's largest
// state file, with one 512-byte sector zeroed (a write the disk lost),
// in turn at 8 sectors spread over the file: the next run, on a Journal changed
// in place (size and time kept) and by a day's work, backs up, and the
// backup restores byte for byte: a damaged cache never gives a file the
// chunks of another content, nor makes a changed file look unchanged.
func TestKillAttackCacheSectorLost(t *testing.T) {
	w := kaNewWorld(t, "KILL-SECTOR")
	o := RunOptions{Source: w.src, Force: true, PowerSupplyDir: w.psu}
	if res, err := Run(context.Background(), w.st, o); err != nil || res.Outcome != Done {
		t.Fatalf("first run: %+v %v", res, err)
	}
	fi, err := os.Stat(w.st.cachePath())
	if err != nil {
		t.Fatal(err)
	}
	sectors := int(fi.Size()+511) / 512
	step := max(1, sectors/8)
	t.Logf("the cache is %d bytes, %d sectors", fi.Size(), sectors)
	for s := 0; s < sectors; s += step {
		b, err := os.ReadFile(w.st.cachePath())
		if err != nil {
			t.Fatal(err)
		}
		if s*512 >= len(b) {
			break
		}
		for j := s * 512; j < min(len(b), s*512+512); j++ {
			b[j] = 0
		}
		if err := os.WriteFile(w.st.cachePath(), b, 0o600); err != nil {
			t.Fatal(err)
		}
		w.change(t, 2000+s)
		res, err := Run(context.Background(), w.st, o)
		if err != nil || res.Outcome != Done {
			t.Fatalf("sector %d zeroed: the next run: %+v %v", s, res, err)
		}
		kaRestoreEquals(t, w.st, res.Backup.Snapshot, w.src, "cache sector zeroed")
	}
}
