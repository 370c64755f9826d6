package agent

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The kill attacks run the laptop's side (Run, or Restore of the whole
// Journal) in a child process - this test binary run again as
// TestKillAttackChild - and SIGKILL it, as an empty battery, a closed lid
// or Sugar's shutdown does, then check what the next uncut run does.

const (
	kaEnvMode   = "XS_KILLATTACK_CHILD"
	kaEnvState  = "XS_KILLATTACK_STATE"
	kaEnvSrc    = "XS_KILLATTACK_SRC"
	kaEnvNow    = "XS_KILLATTACK_NOW"
	kaEnvPSU    = "XS_KILLATTACK_PSU"
	kaEnvForce  = "XS_KILLATTACK_FORCE"
	kaEnvTarget = "XS_KILLATTACK_TARGET"
)

// TestKillAttackChild is the laptop process the kill attacks start and
// kill; run on its own it is skipped.
func TestKillAttackChild(t *testing.T) {
	mode := os.Getenv(kaEnvMode)
	if mode == "" {
		t.Skip("the laptop process of the TestKillAttack tests")
	}
	st := State{Dir: os.Getenv(kaEnvState)}
	ns, _ := strconv.ParseInt(os.Getenv(kaEnvNow), 10, 64)
	start := time.Now()
	clock := time.Now
	if ns != 0 {
		clock = func() time.Time { return time.Unix(0, ns).Add(time.Since(start)) }
	}
	ctx := context.Background()
	fmt.Println("ready")
	var err error
	switch mode {
	case "run":
		var res *RunResult
		res, err = Run(ctx, st, RunOptions{Source: os.Getenv(kaEnvSrc), Now: clock, PowerSupplyDir: os.Getenv(kaEnvPSU),
			Force: os.Getenv(kaEnvForce) == "1", MaxSlotWait: 5 * time.Second})
		if err == nil {
			fmt.Printf("end %s %s\n", res.Outcome, res.Skip)
			return
		}
	case "restore":
		_, _, err = Restore(ctx, st, RestoreOptions{All: true, Target: os.Getenv(kaEnvTarget), Overwrite: os.Getenv(kaEnvForce) == "1"})
		if err == nil {
			fmt.Println("end restored")
			return
		}
	}
	fmt.Printf("end error %v\n", err)
}

// kaDaemon starts a daemon for the test, like attackDaemonD, whose
// limit on one laptop's open connections is 64: a laptop killed several
// times within a minute holds a connection for each kill until the
// server's idle timeout (60 s) ends it, which the timer, firing every 5
// minutes, never meets.
func kaDaemon(t *testing.T) *server.Daemon {
	t.Helper()
	return clockDaemon(t, nil, func(c *server.Config) { c.Limits.ConnsPerKey, c.Limits.ConnsPerAddr = 64, 64 })
}

// kaChild is a running laptop process.
type kaChild struct {
	cmd   *exec.Cmd
	ready chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	lines []string
	start time.Time // when it said ready
}

// kaStart starts the laptop process in mode with the given environment.
func kaStart(t *testing.T, mode string, env ...string) *kaChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillAttackChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), kaEnvMode+"="+mode), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	c := &kaChild{cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if sc.Text() == "ready" {
				once.Do(func() { c.start = time.Now(); close(c.ready) })
				continue
			}
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
		}
		cmd.Wait()
		once.Do(func() { close(c.ready) })
	}()
	t.Cleanup(func() { cmd.Process.Kill(); <-c.done })
	return c
}

// killAfter kills the process d after it said ready (at once if it has
// ended) and reports whether it had finished on its own, and its end line.
func (c *kaChild) killAfter(d time.Duration) (finished bool, end string) {
	<-c.ready
	select {
	case <-c.done:
	case <-time.After(time.Until(c.start.Add(d))):
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
	}
	return c.end()
}

// wait waits for the process to end by itself.
func (c *kaChild) wait(t *testing.T) (finished bool, end string) {
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the laptop process did not end")
	}
	return c.end()
}

func (c *kaChild) end() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.HasPrefix(l, "end ") {
			return true, l
		}
	}
	return false, strings.Join(c.lines, " | ")
}

// kaRunEnv is the environment of a backup run of st over src at the fake
// time now.
func kaRunEnv(st State, src, psu string, now time.Time, force bool) []string {
	f := "0"
	if force {
		f = "1"
	}
	return []string{kaEnvState + "=" + st.Dir, kaEnvSrc + "=" + src, kaEnvPSU + "=" + psu,
		kaEnvNow + "=" + strconv.FormatInt(now.UnixNano(), 10), kaEnvForce + "=" + f}
}

// kaSnapshots lists the laptop's snapshots on the server, oldest first,
// read from the store (not through the laptop, whose state it would touch).
func kaSnapshots(t *testing.T, d *server.Daemon, serial string) []*store.Snapshot {
	t.Helper()
	u, err := d.Store.UserBySerial(serial)
	if err != nil {
		t.Fatal(err)
	}
	return d.Store.Snapshots(u.ID)
}

// kaHas reports whether the server holds the snapshot id.
func kaHas(sns []*store.Snapshot, id string) bool {
	for _, s := range sns {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// kaRestoreEquals restores snapshot id into a new directory and compares it
// with want.
func kaRestoreEquals(t *testing.T, st State, id, want, what string) {
	t.Helper()
	out := t.TempDir()
	if _, _, err := Restore(context.Background(), st, RestoreOptions{Snapshot: id, Target: out}); err != nil {
		t.Fatalf("%s: restore of %s: %v", what, id, err)
	}
	if err := dircmp.Compare(want, out, backup.JournalExclude); err != nil {
		t.Fatalf("%s: backup %s differs from the Journal it was taken of: %v", what, id, err)
	}
}

// kaCopy copies the directory src (a Journal as a run scans it) to a new
// directory.
func kaCopy(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// kaStateNames are the names a laptop's state directory may hold between
// runs.
var kaStateNames = map[string]bool{"key": true, "server.json": true, "last.json": true, "slot.json": true,
	"clock.json": true, sessionName: true, "cache": true, "lock": true, restorePending: true, restoreFrom: true,
	restoreProgress: true}

// kaStrays lists what the state directory holds beyond kaStateNames (the
// temporary files killed runs left, which must not pile up).
func kaStrays(t *testing.T, st State) []string {
	t.Helper()
	ents, err := os.ReadDir(st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		if !kaStateNames[e.Name()] {
			left = append(left, e.Name())
		}
	}
	return left
}

// kaLastWritten returns the state file written last (by modification
// time), leaving out the key and the registration, which runs never write.
func kaLastWritten(t *testing.T, st State) string {
	t.Helper()
	type f struct {
		name string
		mt   time.Time
	}
	var fs_ []f
	ents, err := os.ReadDir(st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == "key" || e.Name() == "server.json" || e.Name() == "lock" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		fs_ = append(fs_, f{e.Name(), fi.ModTime()})
	}
	sort.Slice(fs_, func(i, j int) bool { return fs_[i].mt.After(fs_[j].mt) })
	if len(fs_) == 0 {
		return ""
	}
	return fs_[0].name
}

// kaLoseWrite damages path as a lost page-cache write leaves it: how
// selects emptied, cut at half, cut by one byte, or a 512-byte sector in
// the middle zeroed.
func kaLoseWrite(t *testing.T, path string, how int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var what string
	switch how % 4 {
	case 0:
		b, what = nil, "emptied"
	case 1:
		b, what = b[:len(b)/2], "cut at half"
	case 2:
		b, what = b[:max(len(b)-1, 0)], "last byte lost"
	case 3:
		off := len(b) / 2 &^ 511
		for i := off; i < min(off+512, len(b)); i++ {
			b[i] = 0
		}
		what = "a sector zeroed"
	}
	fi, _ := os.Stat(path)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi != nil {
		os.Chtimes(path, fi.ModTime(), fi.ModTime())
	}
	return what
}

// kaEditInPlace rewrites the first data file of the Journal with other
// bytes of the same size and puts its modification time back: only its
// change time and content tell.
func kaEditInPlace(t *testing.T, src string, round int) {
	t.Helper()
	var data string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && data == "" && !d.IsDir() && d.Name() == "data" {
			data = p
		}
		return nil
	})
	if data == "" {
		t.Fatal("no data file in the Journal")
	}
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, fmt.Sprintf("edit %04d in place ", round))
	if err := os.WriteFile(data, b, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(data, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}
