package atomicfile_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// everyCut calls check for every state the disk may be in after a power
// cut at every point of what c recorded; returned is the number of
// operations after which the caller's write had returned.
func everyCut(t *testing.T, c *crashFS, check func(n int, st diskState)) int {
	t.Helper()
	states, total := 0, c.ops()
	for n := 0; n <= total; n++ {
		for _, st := range c.afterCut(n) {
			check(n, st)
			states++
		}
	}
	return states
}

func TestWriteFileSurvivesPowerCut(t *testing.T) {
	for _, existed := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.json")
		if existed {
			if err := os.WriteFile(path, []byte("old content"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c := newCrashFS()
		if err := atomicfile.WriteFileFS(c, path, []byte("new content"), 0o640); err != nil {
			t.Fatal(err)
		}
		done := c.ops()
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
			t.Fatalf("after WriteFile: %v %v", fi, err)
		}
		n := everyCut(t, c, func(n int, st diskState) {
			got, ok := st[path]
			switch {
			case n == done && (!ok || string(got) != "new content"):
				t.Errorf("existed=%v: cut after WriteFile returned: %q (present %v)", existed, got, ok)
			case existed && !ok:
				t.Errorf("existed=%v: cut after %d ops: the old file is gone", existed, n)
			case ok && string(got) != "new content" && string(got) != "old content":
				t.Errorf("existed=%v: cut after %d ops: torn file %q", existed, n, got)
			}
		})
		t.Logf("existed=%v: %d operations, %d possible disks after a cut checked", existed, done, n)
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("temporary files left: %v", ents)
		}
	}
}

// TestPowerCutModelCatchesMissingFsync shows that the model bites: the way
// the server key used to be written (write, rename, no fsync) can leave an
// empty file after a cut.
func TestPowerCutModelCatchesMissingFsync(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.key")
	c := newCrashFS()
	f, err := c.CreateTemp(dir, "key-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("0123456789abcdef\n"))
	f.Close()
	if err := c.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
	empty := false
	everyCut(t, c, func(n int, st diskState) {
		if b, ok := st[path]; ok && len(b) == 0 {
			empty = true
		}
	})
	if !empty {
		t.Fatal("the model never lost unsynced data: it proves nothing")
	}
}

// failFS fails one named step of WriteFile.
type failFS struct {
	atomicfile.FS
	step string
}

var errInjected = errors.New("injected")

type failFile struct {
	atomicfile.File
	step string
}

func (f failFS) CreateTemp(dir, pattern string) (atomicfile.File, error) {
	if f.step == "create" {
		return nil, errInjected
	}
	tf, err := f.FS.CreateTemp(dir, pattern)
	return failFile{tf, f.step}, err
}

func (f failFS) Rename(o, n string) error {
	if f.step == "rename" {
		return errInjected
	}
	return f.FS.Rename(o, n)
}

func (f failFS) SyncDir(d string) error {
	if f.step == "syncdir" {
		return errInjected
	}
	return f.FS.SyncDir(d)
}

func (f failFile) Write(p []byte) (int, error) {
	if f.step == "write" {
		f.File.Write(p[:len(p)/2])
		return len(p) / 2, errInjected
	}
	if f.step == "short" {
		return f.File.Write(p[:len(p)/2])
	}
	return f.File.Write(p)
}

func (f failFile) Sync() error {
	if f.step == "sync" {
		return errInjected
	}
	return f.File.Sync()
}

func (f failFile) Close() error {
	err := f.File.Close()
	if f.step == "close" {
		return errInjected
	}
	return err
}

func TestWriteFileFailuresLeaveOldFileAndNoTemp(t *testing.T) {
	for _, step := range []string{"create", "write", "short", "sync", "close", "rename", "syncdir"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "slot.json")
		os.WriteFile(path, []byte("old"), 0o600)
		err := atomicfile.WriteFileFS(failFS{atomicfile.OS, step}, path, []byte("new content"), 0o600)
		if err == nil {
			t.Fatalf("%s: no error", step)
		}
		got, _ := os.ReadFile(path)
		want := "old"
		if step == "syncdir" {
			want = "new content" // renamed; only its durability is in doubt
		}
		if string(got) != want {
			t.Fatalf("%s: file holds %q, want %q", step, got, want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("%s: temporary file left: %v", step, ents)
		}
	}
}

// TestServerKeySurvivesPowerCut: a power cut at any point of the daemon's
// first start leaves either no key (the next start makes one; no laptop
// has pinned it yet) or the whole key, and once LoadOrCreateKey returned,
// the very key it returned.
func TestServerKeySurvivesPowerCut(t *testing.T) {
	c := newCrashFS()
	restore := atomicfile.SetDefaultFS(c)
	dir := t.TempDir()
	key, err := server.LoadOrCreateKey(filepath.Join(dir, "server.key"))
	restore() // the restarts below write for real
	if err != nil {
		t.Fatal(err)
	}
	done := c.ops()
	if !c.owns(filepath.Join(dir, "server.key")) {
		t.Fatal("server.key was not written through atomicfile.WriteFile")
	}
	states := everyCut(t, c, func(n int, st diskState) {
		fresh := t.TempDir()
		if err := c.restartDir(dir, fresh, st); err != nil {
			t.Fatal(err)
		}
		_, had := st[filepath.Join(dir, "server.key")]
		got, err := server.LoadOrCreateKey(filepath.Join(fresh, "server.key"))
		if err != nil {
			t.Fatalf("restart after a cut at op %d of %d: %v", n, done, err)
		}
		if (n == done || had) && !got.Equal(key) {
			t.Fatalf("restart after a cut at op %d of %d: a different key", n, done)
		}
	})
	t.Logf("server key: %d operations, %d possible disks after a cut checked", done, states)
}

// TestLaptopStateSurvivesPowerCut registers a laptop with a real daemon and
// backs up twice; a power cut at any point leaves every state file (key,
// server.json, cache, last.json) either absent or whole, and everything a
// call had written before it returned is there after the restart.
func TestLaptopStateSurvivesPowerCut(t *testing.T) {
	c := newCrashFS()
	restore := atomicfile.SetDefaultFS(c)
	defer restore()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfg.RestorePage.Listen = ""
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Error(err)
		}
	}()
	<-d.Ready

	stateDir, src := t.TempDir(), t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(1)); err != nil {
		t.Fatal(err)
	}
	st := agent.State{Dir: stateDir}
	reg, err := agent.Register(ctx, st, agent.RegisterOptions{Server: d.Addr.String(), Serial: "SHC0001"})
	if err != nil {
		t.Fatal(err)
	}
	registered := c.ops()
	var ran []int
	for i := 0; i < 2; i++ {
		res, err := agent.Run(ctx, st, agent.RunOptions{Source: src, Force: true, MaxSlotWait: time.Minute})
		if err != nil || res.Outcome != agent.Done {
			t.Fatalf("run: %+v %v", res, err)
		}
		ran = append(ran, c.ops())
		journalgen.Mutate(src, uint64(i), 1)
	}
	restore() // the restarts below write for real
	states := everyCut(t, c, func(n int, s diskState) {
		fresh := t.TempDir()
		if err := c.restartDir(stateDir, fresh, s); err != nil {
			t.Fatal(err)
		}
		after := agent.State{Dir: fresh}
		key, err := after.Key()
		if err != nil {
			t.Fatalf("cut at op %d: key: %v", n, err)
		}
		r, err := after.Registration()
		switch {
		case errors.Is(err, agent.ErrNotRegistered) && n < registered:
		case err != nil:
			t.Fatalf("cut at op %d (registered at %d): registration: %v", n, registered, err)
		case r.Key != reg.Key || r.Key != proto.Fingerprint(key.Public().(ed25519.PublicKey)):
			t.Fatalf("cut at op %d: the registration does not match the laptop's key", n)
		}
		if _, err := backup.LoadCache(filepath.Join(fresh, "cache")); err != nil {
			t.Fatalf("cut at op %d: %v", n, err)
		}
		b, err := os.ReadFile(filepath.Join(fresh, "last.json"))
		var last agent.LastRun
		switch {
		case errors.Is(err, fs.ErrNotExist) && n < ran[0]:
		case err != nil:
			t.Fatalf("cut at op %d (first run done at %d): last.json: %v", n, ran[0], err)
		case json.Unmarshal(b, &last) != nil || last.Snapshot == "":
			t.Fatalf("cut at op %d: last.json is torn: %q", n, b)
		}
		for _, p := range []string{"key", "server.json", "cache", "last.json"} {
			if b, ok := s[filepath.Join(stateDir, p)]; ok && len(b) == 0 {
				t.Fatalf("cut at op %d: %s is empty", n, p)
			}
		}
	})
	for _, p := range []string{"key", "server.json", "cache", "last.json"} {
		if !c.owns(filepath.Join(stateDir, p)) {
			t.Fatalf("%s was not written through atomicfile.WriteFile", p)
		}
	}
	t.Logf("laptop state: %d operations, %d possible disks after a cut checked", c.ops(), states)
}
