package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestCrashLoop kills a real xs-backupd with SIGKILL while several laptops
// back up at once: at every injected point of the store (pack write, fsync,
// index commit, snapshot commit, reference counting, deletion, GC sweep,
// compaction) and at random moments. After each restart the store checks
// clean with --read-data (reference counts and usage equal a recount), every
// snapshot a laptop was told about is there, and at the end every laptop
// finishes and restores byte for byte.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop skipped in -short mode")
	}
	data := t.TempDir()
	const laptops = 5
	type lap struct {
		state, src, serial string
		seed               uint64
		day                int
	}
	laps := make([]*lap, laptops)
	d := StartDaemon(t, data)
	for i := range laps {
		l := &lap{state: t.TempDir(), src: t.TempDir(), serial: fmt.Sprintf("CR%02d", i), seed: uint64(60 + i)}
		journalgen.Generate(l.src, journalgen.Small(l.seed))
		if _, e, code := xo(t, l.state, "register", "--server", d.Addr, "--serial", l.serial); code != 0 {
			t.Fatal(e)
		}
		// Keep only the latest snapshot, so that retention and GC have work.
		if _, e, code := admin(t, data, "policy", l.serial, "--keep-last", "1", "--keep-within-days", "0", "--keep-monthly", "0"); code != 0 {
			t.Fatal(e)
		}
		laps[i] = l
	}
	d.Stop(t)

	type ack struct {
		serial string
		round  int
	}
	acked := map[string]ack{} // snapshot -> who, when
	lastLifecycle := -1
	resumed, restartErrors := 0, 0
	// runAll runs every laptop at once; a laptop whose run fails (the
	// daemon died under it) runs again, as its next scheduled try would,
	// and must then finish.
	runAll := func(round int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, l := range laps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var last string
				for try := 0; try < 8; try++ {
					out, errOut, _ := xo(t, l.state, "run", "--source", l.src, "--force", "--json", "--idle-timeout", "4s")
					var s runSummary
					if json.Unmarshal([]byte(out), &s) == nil && s.Outcome == "done" {
						mu.Lock()
						acked[s.Snapshot] = ack{l.serial, round}
						if try > 0 {
							resumed++
						}
						mu.Unlock()
						return
					}
					last = out + errOut
					if strings.Contains(last, "server restarted") {
						mu.Lock()
						restartErrors++
						mu.Unlock()
					}
					time.Sleep(300 * time.Millisecond)
				}
				t.Errorf("round %d: %s did not finish after the daemon restarted: %s", round, l.serial, last)
			}()
		}
		wg.Wait()
	}
	r := rand.New(rand.NewPCG(9, 9))
	var rounds []string
	for _, p := range store.HookPoints {
		if !strings.HasPrefix(p, "remote:") { // reached only with packs on S3
			rounds = append(rounds, p)
		}
	}
	points := len(rounds)
	randomKills := 4
	if v := os.Getenv("XS_CRASH_RANDOM"); v != "" { // make soak: many more
		if _, err := fmt.Sscan(v, &randomKills); err != nil {
			t.Fatalf("XS_CRASH_RANDOM=%q: want a number of random kills", v)
		}
	}
	for range randomKills {
		rounds = append(rounds, "random")
	}
	kills := 0
	args := []string{"--listen", d.Addr, "--max-sessions", "8"}
	for i, point := range rounds {
		var env []string
		if point != "random" {
			env = []string{fmt.Sprintf("XS_TEST_CRASH=%s:%d", point, 1+i%2)}
		}
		cd := startDaemonEnv(t, data, env, args...)
		// Like systemd's Restart=on-failure: a killed daemon is started
		// again at once on the same address.
		var stopping atomic.Bool
		replaced := make(chan *Daemon, 1)
		go func() {
			cd.Cmd.Wait()
			if stopping.Load() {
				replaced <- nil
				return
			}
			// xs-admin may hold the store for a moment when it found
			// no daemon; systemd would try again, and so does this.
			for try := 0; ; try++ {
				nd, err := tryStartDaemon(t, data, nil, args...)
				if err == nil || try == 20 {
					if err != nil {
						t.Error(err)
					}
					replaced <- nd
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		}()
		if point == "random" {
			go func() {
				time.Sleep(time.Duration(50+r.IntN(400)) * time.Millisecond)
				cd.Cmd.Process.Signal(syscall.SIGKILL)
			}()
		}
		runAll(i)
		if strings.HasPrefix(point, "gc:") || strings.HasPrefix(point, "compact:") || strings.HasPrefix(point, "delete:") || point == "refs:after-batch" {
			lastLifecycle = i
			admin(t, data, "lifecycle")
			admin(t, data, "gc", "--compact-below", "1")
		}
		var cur *Daemon
		select {
		case cur = <-replaced:
			if cur == nil {
				t.FailNow()
			}
			kills++
		case <-time.After(500 * time.Millisecond):
			stopping.Store(true)
			cd.Cmd.Process.Signal(syscall.SIGTERM)
			if <-replaced == nil {
				cur = StartDaemon(t, data, args...)
			} else {
				t.Fatal("unreachable: the watcher restarted a daemon that was being stopped")
			}
		}
		if out, errOut, code := admin(t, data, "check", "--read-data"); code != 0 {
			t.Fatalf("after a kill at %s: check: %s %s", point, out, errOut)
		}
		have := map[string]string{} // snapshot -> serial
		for _, l := range laps {
			var snaps []struct{ ID string }
			adminJSON(t, data, &snaps, "snapshots", l.serial)
			for _, s := range snaps {
				have[s.ID] = l.serial
			}
		}
		newest := map[string]int{} // serial -> latest round with a snapshot present
		for id, a := range acked {
			if have[id] != "" {
				newest[a.serial] = max(newest[a.serial], a.round)
			}
		}
		for id, a := range acked {
			if have[id] != "" {
				continue
			}
			// Only retention (keep-last 1) may remove an acknowledged
			// snapshot, and only once a newer one is there.
			if a.round <= lastLifecycle && newest[a.serial] > a.round {
				delete(acked, id)
				continue
			}
			t.Fatalf("after a kill at %s: acknowledged snapshot %s of %s is missing", point, id, a.serial)
		}
		t.Logf("round %d (%s): %d acknowledged snapshots present", i, point, len(acked))
		cur.Stop(t)
		for _, l := range laps {
			l.day++
			journalgen.Mutate(l.src, l.seed, l.day)
		}
	}
	t.Logf("%d rounds, daemon killed %d times; %d runs resumed after a restart (%d told the server restarted)", len(rounds), kills, resumed, restartErrors)
	if restartErrors == 0 {
		t.Fatal("no laptop was told the server restarted: the restarted daemon sends no stateless resets")
	}
	if kills < points/2 {
		t.Fatalf("the daemon died in only %d of %d rounds: the crash points are not reached", kills, len(rounds))
	}
	// Finally every laptop backs up and restores what it has now.
	StartDaemon(t, data, args...)
	for _, l := range laps {
		runBackup(t, l.state, l.src, "--force")
		out := t.TempDir()
		if o, e, code := xo(t, l.state, "restore", "--to", out); code != 0 {
			t.Fatalf("restore %s: %s %s", l.serial, o, e)
		}
		if err := dircmp.Compare(l.src, out, backup.JournalExclude); err != nil {
			t.Fatalf("%s after the crash loop: %v", l.serial, err)
		}
	}
	if out, errOut, code := admin(t, data, "check", "--read-data"); code != 0 {
		t.Fatalf("final check: %s %s", out, errOut)
	}
}
