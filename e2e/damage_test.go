package e2e

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// flipRecord flips one byte in the middle of the data of the largest pack
// record under data, and returns which pack it damaged.
func flipRecord(t *testing.T, data string) string {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(data, "packs", "*", "*.pack"))
	sort.Strings(packs)
	best, bestOff, bestLen := "", 0, 0
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for off := 16; off+52 <= len(b); {
			n := int(binary.LittleEndian.Uint32(b[off+8:]))
			if n > bestLen {
				best, bestOff, bestLen = p, off, n
			}
			off += 52 + n
		}
	}
	if best == "" {
		t.Fatal("no pack record to damage")
	}
	b, _ := os.ReadFile(best)
	b[bestOff+52+bestLen/2] ^= 0x40
	if err := os.WriteFile(best, b, 0o640); err != nil {
		t.Fatal(err)
	}
	return best
}

// TestBitRotHealsEndToEnd: real processes. Bytes rot in a pack while the
// daemon runs; staff run check --read-data (it names the damage and says
// that backups heal it, not --repair), xs-admin damaged names the laptops;
// each laptop's next run sends the damaged data again although its Journal
// is unchanged; then check is clean and every laptop restores byte for byte.
func TestBitRotHealsEndToEnd(t *testing.T) {
	d := StartDaemon(t, t.TempDir())
	srcs := map[string]string{}
	states := map[string]string{}
	for i, serial := range []string{"SHC201", "SHC202"} {
		states[serial] = t.TempDir()
		srcs[serial] = newJournal(t, uint64(10+i))
		if _, e, code := register(t, d, states[serial], serial); code != 0 {
			t.Fatalf("register %s: %s", serial, e)
		}
		runBackup(t, states[serial], srcs[serial])
	}
	flipRecord(t, d.Data)

	out, errOut, code := admin(t, d.Data, "check", "--read-data")
	if code != 1 || !strings.Contains(out, "damaged on disk") || !strings.Contains(out, "Do not run --repair") {
		t.Fatalf("check --read-data after bit rot: exit %d\n%s%s", code, out, errOut)
	}
	var dmg []struct {
		Ref     string   `json:"ref"`
		Laptops []string `json:"laptops"`
	}
	adminJSON(t, d.Data, &dmg, "damaged")
	if len(dmg) != 1 || len(dmg[0].Laptops) == 0 {
		t.Fatalf("xs-admin damaged: %+v", dmg)
	}
	for _, serial := range dmg[0].Laptops {
		s := runBackup(t, states[serial], srcs[serial], "--force")
		if s.ChunksNew == 0 {
			t.Errorf("%s's healing run sent nothing: %+v", serial, s)
		}
	}
	adminJSON(t, d.Data, &dmg, "damaged")
	if len(dmg) != 0 {
		t.Fatalf("still damaged after the laptops' next backups: %+v", dmg)
	}
	if out, errOut, code := admin(t, d.Data, "check", "--read-data"); code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check after healing: exit %d\n%s%s", code, out, errOut)
	}
	for serial, state := range states {
		restoreAll(t, state, srcs[serial])
	}
}

// TestRepairOfAnIndexThatWillNotOpen: the documented sequence when the
// index itself is damaged, with real processes: xs-admin check says to
// rebuild it, check --repair does (moving the damaged index aside), and the
// daemon and laptops carry on with nothing lost.
func TestRepairOfAnIndexThatWillNotOpen(t *testing.T) {
	data := t.TempDir()
	d := StartDaemon(t, data)
	state, src := backedUp(t, d, "SHC301", 21)
	d.Stop(t)
	if err := os.WriteFile(filepath.Join(data, "index", "MANIFEST"), []byte("garbage, not a manifest"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := admin(t, data, "check")
	if code != 1 || !strings.Contains(errOut, "xs-admin check --repair") {
		t.Fatalf("check of a store whose index will not open: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = admin(t, data, "check", "--repair")
	if code != 0 || !strings.Contains(out, "moved it aside") {
		t.Fatalf("check --repair: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := admin(t, data, "check", "--read-data"); code != 0 {
		t.Fatalf("check after repair: exit %d\n%s%s", code, out, errOut)
	}
	StartDaemon(t, data, "--listen", d.Addr) // where the laptop knows it
	runBackup(t, state, src, "--force")
	restoreAll(t, state, src)
}

// TestCheckAfterUncleanStop: the daemon is killed (power cut, OOM); with it
// stopped, staff's xs-admin check works on the store as it was left (it
// used to fail with Badger's "Log truncate required" and advise --repair).
func TestCheckAfterUncleanStop(t *testing.T) {
	data := t.TempDir()
	d := StartDaemon(t, data)
	state, src := backedUp(t, d, "SHC401", 31)
	d.Cmd.Process.Kill()
	d.Cmd.Wait()
	out, errOut, code := admin(t, data, "check", "--read-data")
	if code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check after an unclean stop: exit %d\n%s%s", code, out, errOut)
	}
	StartDaemon(t, data, "--listen", d.Addr)
	runBackup(t, state, src, "--force")
	restoreAll(t, state, src)
}

// TestAdminTextWithDaemonStopped: with xs-backupd stopped, xs-admin opens the
// store itself and its text output is the same as through the daemon (it
// printed nothing for users, snapshots and quota).
func TestAdminTextWithDaemonStopped(t *testing.T) {
	data := t.TempDir()
	d := StartDaemon(t, data)
	backedUp(t, d, "SHC601", 41)
	live := map[string]string{}
	cmds := [][]string{{"users"}, {"snapshots", "SHC601"}, {"quota"}}
	for _, c := range cmds {
		out, _, _ := admin(t, data, c...)
		live[c[0]] = out
	}
	d.Stop(t)
	for _, c := range cmds {
		out, errOut, code := admin(t, data, c...)
		if code != 0 || !strings.Contains(out, "SHC601") && c[0] != "snapshots" || strings.Count(out, "\n") < 2 {
			t.Errorf("xs-admin %s with the daemon stopped: exit %d\n%s%s", strings.Join(c, " "), code, out, errOut)
		}
		if out != live[c[0]] {
			t.Errorf("xs-admin %s differs with the daemon stopped:\n%s\nwith it running:\n%s", c[0], out, live[c[0]])
		}
	}
}

// backedUp registers a laptop with a fresh Journal and backs it up once; it
// returns the laptop's state directory and Journal.
func backedUp(t *testing.T, d *Daemon, serial string, seed uint64) (state, src string) {
	t.Helper()
	state, src = t.TempDir(), newJournal(t, seed)
	if _, e, code := register(t, d, state, serial); code != 0 {
		t.Fatalf("register %s: %s", serial, e)
	}
	runBackup(t, state, src)
	return state, src
}
