package store

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// raKillFS kills the process (SIGKILL) at a chosen moment of the first
// write of a pack record: no hook point exists inside healTreesFromCopies,
// so the pack file's own writes and syncs are the points.
type raKillFS struct {
	FS
	mode  string
	delay time.Duration
}

type raKillFile struct {
	File
	k *raKillFS
}

var raWrites atomic.Int64

func raDie() { syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }

func (k *raKillFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := k.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasPrefix(name, "packs/") || !strings.HasSuffix(name, ".pack") || flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return f, err
	}
	return &raKillFile{f, k}, nil
}

func (f *raKillFile) Write(b []byte) (int, error) {
	switch f.k.mode {
	case "before-write":
		raDie()
	case "mid-write": // half a record on disk
		n, _ := f.File.Write(b[:len(b)/2])
		f.File.Sync()
		_ = n
		raDie()
	}
	raWrites.Add(1)
	return f.File.Write(b)
}

func (f *raKillFile) Sync() error {
	if f.k.mode == "before-sync" {
		raDie()
	}
	err := f.File.Sync()
	switch f.k.mode {
	case "after-sync": // written and synced, index not yet pointed at it
		raDie()
	case "late":
		go func() { time.Sleep(f.k.delay); raDie() }()
	}
	return err
}

// The child: open the prepared store with the killing FS and run check
// --read-data, which writes the damaged trees back from their copies.
func TestRaceAttackHealCrashChild(t *testing.T) {
	dir, mode := os.Getenv("XS_RA_HEAL_DIR"), os.Getenv("XS_RA_HEAL_MODE")
	if dir == "" {
		t.Skip("child of TestRaceAttackCrashDuringTreeHeal")
	}
	ms, _ := strconv.Atoi(os.Getenv("XS_RA_HEAL_DELAY"))
	opts := Options{Reserve: -1, PackSize: 64 << 10, FS: &raKillFS{FS: DirFS(dir), mode: mode, delay: time.Duration(ms) * time.Millisecond}}
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Check(context.Background(), CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	t.Logf("child ran to the end: %d trees restored", rep.TreesRestored)
}

func raDebts(s *Store) int {
	n := 0
	s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDebt}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n
}

// Trees only the first night's snapshots use are damaged and marked lost,
// and one laptop's first snapshot is deleted while they are (so the walk
// owes descents). check --read-data then writes them back from their copies
// and is SIGKILLed at each point of that write (before the record, half a
// record, before and after the fsync, while the index is being pointed at
// the new records and the owed walks run). After each crash the store
// reopens, check --read-data is clean, every snapshot restores whole, and
// it stays so after a lifecycle (GC, compaction) and a reopen.
func TestRaceAttackCrashDuringTreeHeal(t *testing.T) {
	ctx := context.Background()
	a := newA3(t)
	old := a.oldOnlyTrees()
	if len(old) == 0 {
		t.Fatal("no tree only the first night uses")
	}
	for _, r := range old {
		a.flip(r)
		a.s.markLost(r, a.obj(r), "test: flipped")
	}
	if err := a.s.DeleteSnapshot(ctx, a.users[0], a.s.Snapshots(a.users[0])[0].ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d trees damaged and marked lost, %d descents owed", len(old), raDebts(a.s))
	a.close()
	tmpl := a.dir

	type point struct {
		mode  string
		delay int
	}
	points := []point{{"none", 0}, {"before-write", 0}, {"mid-write", 0}, {"before-sync", 0}, {"after-sync", 0},
		{"late", 0}, {"late", 1}, {"late", 3}, {"late", 10}}
	deadline := time.Now().Add(25 * time.Second)
	for _, p := range points {
		if time.Now().After(deadline) {
			t.Logf("time is up before %v", p)
			break
		}
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
			t.Fatal(err)
		}
		os.Remove(dir + "/lock")
		cmd := exec.Command(os.Args[0], "-test.run=^TestRaceAttackHealCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), "XS_RA_HEAL_DIR="+dir, "XS_RA_HEAL_MODE="+p.mode, "XS_RA_HEAL_DELAY="+strconv.Itoa(p.delay))
		out, err := cmd.CombinedOutput()
		killed := false
		if ee, ok := err.(*exec.ExitError); ok {
			ws := ee.Sys().(syscall.WaitStatus)
			killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
			if !killed {
				t.Fatalf("child at %v failed: %v\n%s", p, err, out)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("crash at %s+%dms: killed=%v", p.mode, p.delay, killed)

		b := &a3{itStore: &itStore{t: t, dir: dir, opts: a.opts}, users: a.users, srcs: a.srcs, caches: a.caches}
		b.open()
		rep, err := b.s.Check(ctx, CheckOptions{ReadData: true})
		if err != nil {
			t.Fatalf("%v: check after the crash: %v", p, err)
		}
		if !rep.OK() {
			t.Errorf("%v: check after the crash is not clean (%d trees restored): %+v", p, rep.TreesRestored, rep.Problems)
		}
		if left := b.restoreAll(t); left > 0 {
			t.Errorf("%v: %d file(s) do not restore after the crash and a check", p, left)
		}
		if n := raDebts(b.s); n > 0 {
			t.Errorf("%v: %d descents still owed after every tree was healed", p, n)
		}
		if bad := b.unreadableOf(b.refs()); len(bad) > 0 {
			t.Errorf("%v: %d blobs of the snapshots do not read", p, len(bad))
		}
		if _, err := b.s.Lifecycle(ctx, LifecycleOptions{ScrubDays: 1}); err != nil {
			t.Errorf("%v: lifecycle after the crash and a clean check: %v", p, err)
		}
		if gc, err := b.s.GC(ctx, GCOptions{CompactBelow: 1}); err != nil {
			t.Errorf("%v: GC after the crash and a clean check: %v", p, err)
		} else {
			for _, k := range gc.PacksKept {
				if strings.Contains(k, "index damaged") {
					t.Errorf("%v: GC after the crash and a clean check: %s", p, k)
				}
			}
		}
		b.close()
		b.open()
		rep, err = b.s.Check(ctx, CheckOptions{ReadData: true})
		if err != nil || !rep.OK() {
			t.Errorf("%v: check after a night and a reopen: %v %+v", p, err, rep)
		}
		if left := b.restoreAll(t); left > 0 {
			t.Errorf("%v: %d file(s) do not restore after a night", p, left)
		}
		dmg, _ := b.s.Damaged(ctx)
		for _, d := range dmg {
			if d.Ref.Type == blob.Tree {
				t.Errorf("%v: tree %s still damaged: %s", p, d.Ref, d.Reason)
			}
		}
		b.close()
	}
}
