package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// clockDaemon starts a daemon whose clock the test sets, with mod applied
// to its configuration.
func clockDaemon(t *testing.T, now func() time.Time, mod func(*server.Config)) *server.Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve, cfg.RestorePage.Listen = "127.0.0.1:0", t.TempDir(), "", 0, ""
	cfg.Now = now
	if mod != nil {
		mod(&cfg)
	}
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	<-d.Ready
	return d
}

// TestClockAttackDeadRTCSessions: an XO with a dead RTC battery whose
// main battery runs flat every night boots each school day at 2000-01-01
// 00:00 (the school server's clock is right). The child works for two
// hours each day, writing new Journal entries; the timer runs every 5
// minutes from 5 minutes after boot. The first day is backed up; on every
// day after it, every run says "a backup already completed today" (a
// backup made on an earlier day, on the same wrong date), so nothing the
// child made after the first day is ever backed up. The laptop knows its
// clock is wrong: it is 26 years behind the server's time of its last
// backup (in the snapshot ID). Each school day is a new boot (BootID): within
// one boot the laptop knows its clock's offset from the server's.
func TestClockAttackDeadRTCSessions(t *testing.T) {
	var mu sync.Mutex
	var ahead time.Duration // the server's clock runs; the test moves it a day at a time
	// From 08:00 whatever the hour the test runs: two hours of a school
	// day must not cross the server's midnight (it failed after 22:00).
	start, morning := time.Now(), time.Now().Truncate(24*time.Hour).Add(8*time.Hour)
	d := clockDaemon(t, func() time.Time { mu.Lock(); defer mu.Unlock(); return morning.Add(time.Since(start)).Add(ahead) }, nil)
	st, src := attackLaptop(t, d.Addr.String(), t.TempDir(), "CLOCKRTC1")
	boot := time.Date(2000, 1, 1, 0, 0, 0, 0, time.Local)
	noBattery := t.TempDir()
	for day := range 3 {
		mu.Lock()
		ahead += 24 * time.Hour
		mu.Unlock()
		if err := journalgen.Mutate(src, 7, day+1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		done := 0
		var reasons []string
		for tick := 1; tick <= 24; tick++ { // 00:05 to 02:00, every 5 minutes
			laptopNow := boot.Add(time.Duration(tick) * 5 * time.Minute)
			res, err := Run(context.Background(), st, RunOptions{Source: src, PowerSupplyDir: noBattery,
				Now: func() time.Time { return laptopNow }, BootID: func() string { return fmt.Sprint("boot-", day) }})
			if err != nil {
				t.Fatalf("day %d, %s: %v", day, laptopNow.Format("15:04"), err)
			}
			if res.Outcome == Done {
				done++
			} else if len(reasons) == 0 {
				reasons = append(reasons, res.Reason)
			}
		}
		if done != 1 {
			t.Errorf("school day %d (laptop clock reset to 2000-01-01 at boot): %d backups in 24 timer runs, want 1; runs said: %v",
				day+1, done, reasons)
		}
	}
}

// TestClockAttackSlotAfterClockWentBack: a laptop whose clock ran 6 hours
// fast is told by a busy server to come back in a moment, and saves that
// slot on its own (fast) clock. Then its clock is corrected (NTP, or a
// teacher sets it): the slot, seconds away in real time, is now 6 hours
// ahead. The server never tells a laptop to come back more than a few
// minutes later (MaxComeBack, 2 minutes), so a slot hours away can only
// be a clock that went back; yet every timer run for the next 6 hours ends
// at once with "busy: come back at ..." without asking the server, which
// has long been idle and has dropped the reservation (Grace, 2 minutes).
func TestClockAttackSlotAfterClockWentBack(t *testing.T) {
	d := clockDaemon(t, time.Now, func(c *server.Config) { c.Admission.MaxSessions = 2 })
	ctx := context.Background()
	st, src := attackLaptop(t, d.Addr.String(), t.TempDir(), "CLOCKSLOT1")
	time.Sleep(30 * time.Millisecond)
	var busy []*proto.Client
	for i, serial := range []string{"CLOCKBUSY0", "CLOCKBUSY1"} {
		b, _ := attackLaptop(t, d.Addr.String(), t.TempDir(), serial)
		key, _ := b.Key()
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("busy laptop %d was not granted a place: %+v, %v", i, g, err)
		}
		busy = append(busy, c)
	}
	noBattery := t.TempDir()
	fast := func() time.Time { return time.Now().Add(6 * time.Hour) }
	first, err := Run(ctx, st, RunOptions{Source: src, PowerSupplyDir: noBattery, Now: fast, MaxSlotWait: time.Millisecond})
	if err != nil || first.Outcome != Later {
		t.Fatalf("busy server: %+v %v", first, err)
	}
	for _, c := range busy {
		c.Close()
	}
	// The clock is corrected; the timer runs.
	res, err := Run(ctx, st, RunOptions{Source: src, PowerSupplyDir: noBattery})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome == Later {
		t.Fatalf("after the laptop's clock went back 6 hours, the run waits for a slot %v away without asking the server (%s); the server only ever says a few minutes",
			time.Until(res.Slot).Round(time.Minute), res.Reason)
	}
	if res.Outcome != Done {
		t.Fatalf("the run after the clock was corrected: %s %s", res.Outcome, res.Reason)
	}
}

// TestClockAttackLockIsADirectory: the state directory's "lock" replaced
// by an empty directory (damage like that TestDamagedStateFiles gives the
// other state files) makes every run fail, forever: the lock holds nothing
// (a lock is only ever held through an open file), so it can be made
// afresh like the cache.
func TestClockAttackLockIsADirectory(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "CLOCKLOCKDIR")
	if err := os.Mkdir(st.path("lock"), 0o700); err != nil {
		t.Fatal(err)
	}
	o := RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}
	for i := range 2 {
		res, err := Run(context.Background(), st, o)
		if err != nil || res.Outcome != Done {
			t.Fatalf("run %d with a directory in the lock's place: %+v, %v", i, res, err)
		}
	}
}

// TestClockAttackLockHelper is the other process of
// TestClockAttackStaleLockAfterKill: it takes the run lock and sleeps.
func TestClockAttackLockHelper(t *testing.T) {
	dir := os.Getenv("XS_CLOCKATTACK_LOCK_DIR")
	if dir == "" {
		t.Skip("the helper process of TestClockAttackStaleLockAfterKill")
	}
	_, ok, err := State{Dir: dir}.lock()
	if err != nil || !ok {
		t.Fatalf("helper: lock %v %v", ok, err)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Minute)
}

// TestClockAttackStaleLockAfterKill: a run killed with SIGKILL (power cut,
// shutdown) while holding the lock blocks no later run: while it lives the
// next run is skipped as locked, once it is dead the next run backs up.
func TestClockAttackStaleLockAfterKill(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "CLOCKLOCKKILL")
	cmd := exec.Command(os.Args[0], "-test.run=^TestClockAttackLockHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XS_CLOCKATTACK_LOCK_DIR="+st.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.Contains(line, "locked") {
		t.Fatalf("helper said %q", line)
	}
	o := RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}
	if res, err := Run(context.Background(), st, o); err != nil || res.Outcome != Skipped || res.Skip != SkipLocked {
		t.Fatalf("a run while another process holds the lock: %+v %v", res, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(st.Dir, "lock")); err != nil {
		t.Fatalf("the lock file: %v", err)
	}
	if res, err := Run(context.Background(), st, o); err != nil || res.Outcome != Done {
		t.Fatalf("the run after the lock holder was killed: %+v %v", res, err)
	}
}
