package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// attackDaemon starts a daemon for the test and returns its address.
func attackDaemon(t *testing.T) string { return attackDaemonD(t).Addr.String() }

// attackDaemonD starts a daemon for the test.
func attackDaemonD(t *testing.T) *server.Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve, cfg.RestorePage.Listen = "127.0.0.1:0", t.TempDir(), "", 0, ""
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

// attackLaptop registers a laptop with state in stateDir and a small
// generated Journal.
func attackLaptop(t *testing.T, addr, stateDir, serial string) (State, string) {
	t.Helper()
	st := State{Dir: stateDir}
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(7)); err != nil {
		t.Fatal(err)
	}
	if _, err := Register(context.Background(), st, RegisterOptions{Server: addr, Serial: serial}); err != nil {
		t.Fatal(err)
	}
	return st, src
}

func snapshotCount(t *testing.T, st State) int {
	t.Helper()
	sns, err := Snapshots(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return len(sns)
}

func restoreEquals(t *testing.T, st State, src, what string) {
	t.Helper()
	out := t.TempDir()
	if _, _, err := Restore(context.Background(), st, RestoreOptions{Target: out}); err != nil {
		t.Fatalf("%s: restore: %v", what, err)
	}
	if err := dircmp.Compare(src, out, backup.JournalExclude); err != nil {
		t.Fatalf("%s: the latest backup differs from the Journal: %v", what, err)
	}
}

// TestDirectoryInPlaceOfTheCache: a directory where the file cache should
// be (it could never be saved there) is removed like a damaged cache: the
// run backs up, saves its cache, and the timer's runs after it that day
// end at once. Where the cache cannot be saved at all (a full disk, the
// next test), the day's backup is still recorded.
func TestDirectoryInPlaceOfTheCache(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "ATK2CACHE")
	if err := os.MkdirAll(filepath.Join(st.cachePath(), "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	day := time.Now()
	o := RunOptions{Source: src, Now: func() time.Time { return day }, PowerSupplyDir: t.TempDir()}
	res, err := Run(context.Background(), st, o)
	if err != nil || res.Outcome != Done {
		t.Fatalf("the run with a directory in the cache's place: %+v %v", res, err)
	}
	if fi, err := os.Lstat(st.cachePath()); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the cache was not saved in place of the directory: %v %v", fi, err)
	}
	n := snapshotCount(t, st)
	for tick := 1; tick <= 3; tick++ { // the timer, every 5 minutes
		day = day.Add(5 * time.Minute)
		res, err := Run(context.Background(), st, o)
		if err != nil || res.Outcome != Skipped || res.Skip != SkipDoneToday {
			t.Fatalf("timer run %d, 5 minutes after a committed backup: %+v %v", tick, res, err)
		}
	}
	if got := snapshotCount(t, st); got != n {
		t.Fatalf("%d snapshots after the timer's runs, %d before", got, n)
	}
}

// TestFullLaptopDiskRepeatsTheBackup is the same on a real full
// disk: the state directory on a small tmpfs filled to its last pages
// (the Journal filled the XO's flash). The backup goes through (the server
// has room), the cache does not fit, and the run after it must not back up
// the same day again.
func TestFullLaptopDiskRepeatsTheBackup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, filepath.Join(mnt, "xs-backup"), "ATK2FULL")
	// Fill the disk but for a few pages: last.json fits, the cache not.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	free := int64(sfs.Bavail) * int64(sfs.Bsize)
	if _, err := filler.Write(make([]byte, free-4*int64(sfs.Bsize))); err != nil {
		t.Fatal(err)
	}
	filler.Close()
	day := time.Now()
	o := RunOptions{Source: src, Now: func() time.Time { return day }, PowerSupplyDir: t.TempDir()}
	res, err := Run(context.Background(), st, o)
	t.Logf("first run: %v", err)
	if res == nil || res.Backup == nil || res.Backup.Snapshot == "" {
		t.Fatalf("the first run committed nothing: %v", err)
	}
	if err == nil {
		t.Skip("the cache fitted: the test did not fill the disk enough")
	}
	n := snapshotCount(t, st)
	day = day.Add(5 * time.Minute)
	res, err = Run(context.Background(), st, o)
	if err == nil && res.Outcome == Skipped && res.Skip == SkipDoneToday {
		return
	}
	if got := snapshotCount(t, st); got > n {
		t.Fatalf("the timer run 5 minutes after a committed backup on a full laptop disk backed up again (%d snapshots, %d before): %v, %v", got, n, res, err)
	}
}

// TestDamagedStateFiles: each state file that is a cache or a
// record (last.json, slot.json, tls-session, the file cache) emptied,
// holding garbage or replaced by an empty directory must not stop
// backups: the run after the damage backs up, and so does the one after
// it, and the backup is the Journal.
func TestDamagedStateFiles(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "ATK2STATE")
	o := RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}
	if _, err := Run(context.Background(), st, o); err != nil {
		t.Fatal(err)
	}
	damages := map[string]func(path string) error{
		"emptied":   func(p string) error { return os.WriteFile(p, nil, 0o600) },
		"garbage":   func(p string) error { return os.WriteFile(p, []byte("{\"time\": \"not a time\x00\xff"), 0o600) },
		"empty dir": func(p string) error { os.RemoveAll(p); return os.Mkdir(p, 0o700) },
	}
	for _, name := range []string{"last.json", "slot.json", sessionName, "cache"} {
		for _, what := range []string{"emptied", "garbage", "empty dir"} {
			t.Run(name+" "+what, func(t *testing.T) {
				path := st.path(name)
				defer os.RemoveAll(path) // the next case starts from a sound state
				if err := damages[what](path); err != nil {
					t.Fatal(err)
				}
				// A change, so that each backup has something to send.
				os.WriteFile(filepath.Join(src, "note-"+strings.ReplaceAll(name, ".", "-")), []byte(what), 0o644)
				for i := range 2 {
					res, err := Run(context.Background(), st, o)
					if err != nil || res.Outcome != Done {
						t.Fatalf("run %d after the damage: %+v, %v", i, res, err)
					}
				}
				restoreEquals(t, st, src, name+" "+what)
			})
		}
	}
}

// TestDamagedRegistrationSaysRegister: a server.json that is
// emptied (or holds garbage) makes the run fail with a message naming the
// file and telling what brings backups back; it must not be taken for "not
// registered" in silence nor for an unreachable server.
func TestDamagedRegistrationSaysRegister(t *testing.T) {
	st := State{Dir: t.TempDir()}
	for what, b := range map[string][]byte{"emptied": nil, "garbage": []byte("\x00\x00\x00"), "truncated": []byte(`{"server": "10.0.0.1:7457", "server_ke`)} {
		if err := os.WriteFile(st.path("server.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), st, RunOptions{Source: t.TempDir(), Force: true})
		if err == nil {
			t.Fatalf("%s server.json: run %+v without an error", what, res)
		}
		if !strings.Contains(err.Error(), "server.json") {
			t.Errorf("%s server.json: the error does not name the file: %v", what, err)
		}
		if !strings.Contains(err.Error(), "register") {
			t.Errorf("%s server.json: the error does not say to register again (removing the file alone leaves the laptop unregistered): %v", what, err)
		}
	}
}

// TestConcurrentRunIsSkipped: a second run while one holds the
// state directory's lock ends at once as Skipped (locked), touching
// nothing; once the lock is free, a run backs up.
func TestConcurrentRunIsSkipped(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "ATK2LOCK")
	release, ok, err := st.lock()
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	o := RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}
	res, err := Run(context.Background(), st, o)
	if err != nil || res.Outcome != Skipped || res.Skip != SkipLocked {
		t.Fatalf("a run while another holds the lock: %+v, %v", res, err)
	}
	if _, err := os.Stat(st.cachePath()); !os.IsNotExist(err) {
		t.Fatalf("the locked-out run wrote the cache (%v)", err)
	}
	release()
	if res, err := Run(context.Background(), st, o); err != nil || res.Outcome != Done {
		t.Fatalf("the run after the lock was released: %+v, %v", res, err)
	}
}

// TestClockJumps: a laptop whose clock was a year ahead at its
// last backup (last.json a year in the future) and one whose clock went
// back a year both back up the next day they run; a slot a year ahead is
// not waited for.
func TestClockJumps(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "ATK2CLOCK")
	now := time.Now()
	for what, last := range map[string]time.Time{"a year ahead": now.AddDate(1, 0, 0), "a year behind": now.AddDate(-1, 0, 0)} {
		if err := writeJSON(st.path("last.json"), LastRun{Time: last.UTC(), Snapshot: "x"}); err != nil {
			t.Fatal(err)
		}
		if err := st.saveSlot(now.AddDate(1, 0, 0), now); err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), st, RunOptions{Source: src, PowerSupplyDir: t.TempDir()})
		if err != nil || res.Outcome != Done {
			t.Fatalf("last backup %s: %+v, %v", what, res, err)
		}
		if l := st.LastRun(); !sameDay(l.Time, now) {
			t.Fatalf("last backup %s: last.json says %v after the run", what, l.Time)
		}
	}
}

// TestTimerRunBetweenReflashAndRestoreAll: a reflashed laptop that
// registers with a claim code is told "get the Journal back with: xo-backup
// restore --all". Its timer keeps running every 5 minutes meanwhile, and
// the reflashed Journal is empty. The documented restore --all, run after
// such a timer run, must still bring the student's Journal back - not the
// empty Journal the timer just backed up as the latest snapshot.
func TestTimerRunBetweenReflashAndRestoreAll(t *testing.T) {
	ctx := context.Background()
	d := attackDaemonD(t)
	old, src := attackLaptop(t, d.Addr.String(), t.TempDir(), "ATK2FLASH")
	if res, err := Run(ctx, old, RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}); err != nil || res.Outcome != Done {
		t.Fatalf("the backup before the reflash: %+v %v", res, err)
	}
	u, err := d.Store.UserBySerial("ATK2FLASH")
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := d.Store.IssueClaim(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fresh := State{Dir: t.TempDir()}
	reg, err := Register(ctx, fresh, RegisterOptions{Server: d.Addr.String(), Serial: "ATK2FLASH", Claim: code})
	if err != nil || !reg.Continued {
		t.Fatalf("register --claim: %+v %v", reg, err)
	}
	// The reflashed, empty Journal (what Sugar writes at its first start:
	// a version file, its index and flags), and the timer's run.
	journal := t.TempDir()
	for name, content := range map[string]string{"version": "6", "index_updated": "", "index/record.DB": "x", "ds_clean": "", "checksums/queue/.keep": ""} {
		os.MkdirAll(filepath.Dir(filepath.Join(journal, name)), 0o755)
		if err := os.WriteFile(filepath.Join(journal, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Run(ctx, fresh, RunOptions{Source: journal, PowerSupplyDir: t.TempDir()})
	if err != nil || res.Outcome != Skipped || res.Skip != SkipRestorePending {
		t.Fatalf("the timer's run on the empty Journal before restore --all: %+v %v", res, err)
	}
	if _, _, err := Restore(ctx, fresh, RestoreOptions{All: true, Target: journal}); err != nil {
		t.Fatalf("restore --all: %v", err)
	}
	for _, own := range []string{"index", "index_updated", "ds_clean", "checksums"} { // Sugar's, never backed up
		os.RemoveAll(filepath.Join(journal, own))
	}
	// The layout's version file is gone: Sugar rebuilds its index from
	// the restored entries at its next start, and writes it again.
	if _, err := os.Lstat(filepath.Join(journal, "version")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("restore --all into Sugar's Journal left its version file (%v): Sugar would not list the entries", err)
	}
	if err := dircmp.Compare(src, journal, func(rel string, isDir bool) bool {
		return rel == "version" || backup.JournalExclude(rel, isDir)
	}); err != nil {
		t.Fatalf("restore --all after the timer's run did not bring the Journal back: %v", err)
	}
	if fresh.RestorePending() {
		t.Fatal("restore --all did not clear the pending restore")
	}
	// A Journal with entries is not empty: restoring the whole Journal
	// over it would mix two Journals.
	if _, _, err := Restore(ctx, fresh, RestoreOptions{All: true, Target: journal}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore --all into a Journal with entries: %v", err)
	}
	// Backups go on as before: the restored Journal is the next one.
	if res, err := Run(ctx, fresh, RunOptions{Source: journal, PowerSupplyDir: t.TempDir()}); err != nil || res.Outcome != Done {
		t.Fatalf("the run after restore --all: %+v %v", res, err)
	}
}

// TestEmptyJournalOfANewLaptopIsBackedUp: the pending restore is only for
// a serial with backups: a new laptop's empty Journal is backed up, and so
// is a reflashed laptop's Journal once it holds an entry (the student
// started over without restoring), which ends the wait.
func TestEmptyJournalOfANewLaptopIsBackedUp(t *testing.T) {
	ctx := context.Background()
	d := attackDaemonD(t)
	st := State{Dir: t.TempDir()}
	if _, err := Register(ctx, st, RegisterOptions{Server: d.Addr.String(), Serial: "ATK2NEW"}); err != nil {
		t.Fatal(err)
	}
	if st.RestorePending() {
		t.Fatal("a new laptop waits for a restore")
	}
	if res, err := Run(ctx, st, RunOptions{Source: t.TempDir(), PowerSupplyDir: t.TempDir()}); err != nil || res.Outcome != Done {
		t.Fatalf("a new laptop's empty Journal: %+v %v", res, err)
	}
	os.WriteFile(st.path(restorePending), nil, 0o600) // as after a reflash
	journal := t.TempDir()
	entry := filepath.Join(journal, "ab", "ab12cd34-0000-4000-8000-000000000001")
	os.MkdirAll(entry, 0o755)
	os.WriteFile(filepath.Join(journal, "version"), []byte("6"), 0o644)
	os.WriteFile(filepath.Join(entry, "data"), []byte("started over"), 0o644)
	if res, err := Run(ctx, st, RunOptions{Source: journal, Force: true, PowerSupplyDir: t.TempDir()}); err != nil || res.Outcome != Done {
		t.Fatalf("a reflashed laptop's Journal with files: %+v %v", res, err)
	}
	if st.RestorePending() {
		t.Fatal("a backup of a Journal with files did not end the wait for a restore")
	}
}

// TestHostileNamesRoundTrip: Journal names with a line break, a
// carriage return, invalid UTF-8, a terminal escape, a leading dash and
// the longest name Linux allows (255 bytes), and a symlink whose target
// holds such bytes, go over the network, come back from a restore byte
// for byte, and a second night with one of them changed in place is
// backed up as it is.
func TestHostileNamesRoundTrip(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "ATK2NAMES")
	names := []string{"line\nbreak", "cr\rname", "latin1-\xe9t\xe9", "\xff\xfe", "esc\x1b[2J", "-rf", strings.Repeat("n", 255),
		strings.Repeat("\xc3\xa9", 127) + "x"} // 255 bytes of é
	dir := filepath.Join(src, "hostile\ndir")
	for i, n := range names {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("tar\nget\xff", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	o := RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}
	for night := range 2 {
		res, err := Run(context.Background(), st, o)
		if err != nil || res.Outcome != Done {
			t.Fatalf("night %d: %+v %v", night, res, err)
		}
		if len(res.Backup.Skipped) > 0 {
			t.Fatalf("night %d left out %q", night, res.Backup.Skipped)
		}
		restoreEquals(t, st, src, "hostile names")
		// Rewritten in place, same size: the directory's lstat does not change.
		if err := os.WriteFile(filepath.Join(dir, names[3]), []byte(fmt.Sprintf("y%03d", night)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeftoverTempFilesAreRemoved: a run killed (power cut, the
// battery empty, systemd's SIGKILL at shutdown) while it wrote the file
// cache - megabytes, written and fsynced on the XO's slow flash - or the
// TLS session leaves the temporary file behind under a random name. The
// next runs, which hold the state directory's lock, must not leave those
// there for ever: on a 1 GB XO each is a cache-sized leak.
func TestLeftoverTempFilesAreRemoved(t *testing.T) {
	addr := attackDaemon(t)
	st, src := attackLaptop(t, addr, t.TempDir(), "ATK2TMP")
	o := RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}
	if _, err := Run(context.Background(), st, o); err != nil {
		t.Fatal(err)
	}
	cache, err := os.ReadFile(st.cachePath())
	if err != nil {
		t.Fatal(err)
	}
	left := []string{".cache.tmp-2193847561", sessionName + ".tmp3748291", ".last.json.tmp-99182733"}
	for _, name := range left {
		if err := os.WriteFile(st.path(name), cache[:len(cache)/2], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		os.WriteFile(filepath.Join(src, "new"), []byte(time.Now().String()), 0o644)
		if res, err := Run(context.Background(), st, o); err != nil || res.Outcome != Done {
			t.Fatalf("%+v %v", res, err)
		}
	}
	for _, name := range left {
		if _, err := os.Stat(st.path(name)); err == nil {
			t.Errorf("the temporary file %s a killed run left is still there after two runs", name)
		}
	}
}
