package e2e

// Helpers of the TestRecAttack tests: a small school (laptops backed up on
// two days, the daemon restarted in between so that each day has its own
// pack), the staff sequence that follows what the tools advise, and the
// loss count (every snapshot of every laptop restored and compared with the
// Journal as it was backed up).

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

type raSnap struct {
	id   string
	copy string // the Journal as it was backed up
}

type raLaptop struct {
	serial, state, src string
	snaps              []raSnap
}

type raWorld struct {
	data, addr string
	d          *Daemon // nil or exited when stopped
	laps       []*raLaptop
	// env is added to every xs-admin and xs-backupd run (a config file).
	env []string
	// daemonArgs are extra arguments of every xs-backupd start.
	daemonArgs []string
	// cred, if set, runs xs-backupd as that user (as the package does).
	cred *syscall.Credential
	// binDir holds the programs (bin, or a copy others may run).
	binDir string
	log    []string // what staff did and were told
}

// raNewWorld backs two laptops up on two days in data. The daemon is
// restarted between the days (each Open starts a new pack), and is left
// running.
func raNewWorld(t *testing.T, data string, opts ...func(*raWorld)) *raWorld {
	t.Helper()
	w := &raWorld{data: data, addr: "127.0.0.1:0", binDir: bin}
	for _, o := range opts {
		o(w)
	}
	w.start(t)
	shared := journalgen.Random(randFor(777), 300<<10) // a book every laptop has
	for i := 0; i < 2; i++ {
		l := &raLaptop{serial: fmt.Sprintf("RA%02d", i), state: t.TempDir(), src: newJournal(t, uint64(900+i))}
		os.WriteFile(filepath.Join(l.src, "book.pdf"), shared, 0o644)
		os.WriteFile(filepath.Join(l.src, "own.ogg"), journalgen.Random(randFor(uint64(800+i)), 200<<10), 0o644)
		if out, e, code := xo(t, l.state, "register", "--server", w.addr, "--serial", l.serial); code != 0 {
			t.Fatalf("register %s: %s %s", l.serial, out, e)
		}
		w.laps = append(w.laps, l)
	}
	for day := 1; day <= 2; day++ {
		if day == 2 {
			w.stop(t)
			w.start(t)
			for i, l := range w.laps {
				journalgen.Mutate(l.src, uint64(900+i), day)
				os.WriteFile(filepath.Join(l.src, "own.ogg"), journalgen.Random(randFor(uint64(850+i)), 200<<10), 0o644)
			}
		}
		for _, l := range w.laps {
			s := runBackup(t, l.state, l.src, "--force")
			cp := t.TempDir()
			copyTree(t, l.src, cp)
			l.snaps = append(l.snaps, raSnap{id: s.Snapshot, copy: cp})
		}
	}
	return w
}

func (w *raWorld) note(format string, a ...any) {
	w.log = append(w.log, fmt.Sprintf(format, a...))
}

func (w *raWorld) running() bool {
	return w.d != nil && w.d.Cmd.ProcessState == nil
}

// tryStart starts xs-backupd on the world's address; it returns the error
// (with the daemon's last log line) when it does not come up.
func (w *raWorld) tryStart(t *testing.T) error {
	t.Helper()
	args := append([]string{"--config", "", "--listen", w.addr, "--data", w.data, "--metrics", "", "--page", "127.0.0.1:0"}, w.daemonArgs...)
	cmd := exec.Command(filepath.Join(w.binDir, "xs-backupd"), args...)
	cmd.Env = append(os.Environ(), w.env...)
	if w.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: w.cred}
	}
	d, err := launchDaemon(t, cmd, w.data, "")
	if err != nil {
		return err
	}
	w.d, w.addr = d, d.Addr
	return nil
}

func (w *raWorld) start(t *testing.T) {
	t.Helper()
	if err := w.tryStart(t); err != nil {
		t.Fatal(err)
	}
}

func (w *raWorld) stop(t *testing.T) {
	t.Helper()
	if w.running() {
		w.d.Stop(t)
	}
}

// admin runs xs-admin on the world's store with its environment.
func (w *raWorld) admin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return program(t, w.env, "xs-admin", append([]string{"--data", w.data}, args...)...)
}

// advisesRepair: the text tells staff to run check --repair (and not "do
// not run --repair").
func advisesRepair(text string) bool {
	return strings.Contains(text, "xs-admin check --repair") || strings.Contains(text, "run the repair again")
}

// staff follows what the tools advise until nothing advises more: start
// the daemon (as after a reboot), xs-admin check and check --read-data,
// --repair whenever any output says so (daemon stopped, then started), the
// laptops' next backups with their Journals unchanged, the nightly
// lifecycle and a full gc, on two nights. It fails the test when the advice
// goes round in circles or a step the advice leads to fails.
func (w *raWorld) staff(t *testing.T) {
	t.Helper()
	if !w.running() {
		if err := w.tryStart(t); err != nil {
			w.note("start: %v", err)
		}
	}
	repairs := 0
	repair := func() {
		repairs++
		if repairs > 4 {
			t.Fatalf("the tools still advise check --repair after 4 repairs:\n%s", strings.Join(w.log, "\n"))
		}
		w.stop(t)
		rout, rerr, rcode := w.admin(t, "check", "--repair")
		w.note("xs-admin check --repair: exit %d\n%s%s", rcode, rout, rerr)
		if err := w.tryStart(t); err != nil {
			w.note("start after repair: %v", err)
		}
	}
	for night := 0; night < 3; night++ {
		advised := false
		for _, how := range [][]string{{"check"}, {"check", "--read-data"}} {
			for iter := 0; ; iter++ {
				out, errOut, code := w.admin(t, how...)
				w.note("xs-admin %s: exit %d\n%s%s", strings.Join(how, " "), code, out, errOut)
				text := out + errOut
				if code == 0 {
					break
				}
				if advisesRepair(text) {
					advised = true
					repair()
					continue
				}
				if code == 6 && w.running() {
					t.Fatalf("xs-admin %s with the daemon running says the store is in use:\n%s", how, text)
				}
				if !w.running() {
					t.Fatalf("the daemon does not start and xs-admin %s advises nothing:\n%s", how, strings.Join(w.log, "\n"))
				}
				break // damage the laptops heal, or problems without advice: the final check judges
			}
		}
		if !w.running() {
			t.Fatalf("xs-backupd does not start after following the advice:\n%s", strings.Join(w.log, "\n"))
		}
		for _, l := range w.laps {
			out, errOut, code := xo(t, l.state, "run", "--source", l.src, "--force", "--json")
			w.note("%s run: exit %d %s %s", l.serial, code, out, errOut)
			if advisesRepair(out + errOut) {
				advised = true
			}
			if code != 0 {
				t.Errorf("%s's backup after following the advice (night %d): exit %d %s %s\n%s", l.serial, night, code, out, errOut, strings.Join(w.log, "\n"))
			}
		}
		for _, how := range [][]string{{"lifecycle"}, {"gc", "--compact-below", "1"}} {
			out, errOut, code := w.admin(t, how...)
			w.note("xs-admin %s: exit %d\n%s%s", strings.Join(how, " "), code, out, errOut)
			if advisesRepair(out + errOut) {
				advised = true
				repair()
				continue
			}
			if code != 0 {
				t.Errorf("xs-admin %s after following the advice: exit %d %s %s", strings.Join(how, " "), code, out, errOut)
			}
		}
		if !advised && night > 0 {
			return
		}
	}
	t.Errorf("after three nights of following the advice, the tools still advise check --repair:\n%s", strings.Join(w.log, "\n"))
}

// finalCheck: check --read-data is clean (lossy: only damage no laptop can
// heal is left, and nothing advises --repair).
func (w *raWorld) finalCheck(t *testing.T, lossy bool) {
	t.Helper()
	out, errOut, code := w.admin(t, "check", "--read-data")
	if code == 0 {
		return
	}
	if !lossy || advisesRepair(out+errOut) || strings.Contains(out, "index problem") {
		t.Errorf("final xs-admin check --read-data: exit %d\n%s%s\n--- what staff did:\n%s", code, out, errOut, strings.Join(w.log, "\n"))
	}
}

// contents: sha256 of every file of every laptop's Journal now.
func (w *raWorld) contents(t *testing.T) map[[32]byte]bool {
	have := map[[32]byte]bool{}
	for _, l := range w.laps {
		filepath.WalkDir(l.src, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, _ := os.ReadFile(p)
				have[sha256.Sum256(b)] = true
			}
			return nil
		})
	}
	return have
}

// verify restores every snapshot of every laptop and compares it with the
// Journal it was. A file may be missing only if lossy and no laptop has its
// content any more; a file with wrong bytes is always a failure. It returns
// how many files were lost.
func (w *raWorld) verify(t *testing.T, lossy bool) int {
	t.Helper()
	have := w.contents(t)
	lost := 0
	for _, l := range w.laps {
		for _, sn := range l.snaps {
			dir := t.TempDir()
			out, errOut, code := xo(t, l.state, "restore", "--snapshot", sn.id, "--to", dir)
			if code != 0 && code != 1 {
				t.Errorf("%s: restore of snapshot %s: exit %d %s %s", l.serial, sn.id, code, out, errOut)
				continue
			}
			var missing []string
			filepath.WalkDir(sn.copy, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				rel, _ := filepath.Rel(sn.copy, p)
				if backup.JournalExclude(rel, false) {
					return nil
				}
				want, _ := os.ReadFile(p)
				got, err := os.ReadFile(filepath.Join(dir, rel))
				switch {
				case err == nil && !bytes.Equal(got, want):
					t.Errorf("%s snapshot %s: %s restored with wrong bytes", l.serial, sn.id, rel)
				case err != nil && lossy && !have[sha256.Sum256(want)]:
					lost++
				case err != nil:
					missing = append(missing, rel)
				}
				return nil
			})
			if len(missing) > 0 {
				sort.Strings(missing)
				n := min(len(missing), 5)
				t.Errorf("%s snapshot %s: %d file(s) not restored that a laptop still has (first %v); restore exit %d: %.600s%.600s\n--- what staff did:\n%s",
					l.serial, sn.id, len(missing), missing[:n], code, out, errOut, strings.Join(w.log, "\n"))
			}
		}
	}
	return lost
}

// stillBacksUp: every laptop backs a new day up and restores it byte for byte.
func (w *raWorld) stillBacksUp(t *testing.T) {
	t.Helper()
	for i, l := range w.laps {
		journalgen.Mutate(l.src, uint64(900+i), 9)
		runBackup(t, l.state, l.src, "--force")
		restoreAll(t, l.state, l.src)
	}
}

// packs lists the store's pack files, oldest first.
func raPacks(t *testing.T, data string) []string {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(data, "packs", "*", "*.pack"))
	sort.Slice(packs, func(i, j int) bool { return filepath.Base(packs[i]) < filepath.Base(packs[j]) })
	if len(packs) == 0 {
		t.Fatal("no pack files")
	}
	return packs
}

type raRecord struct {
	off, n int // record start, stored length
	typ    byte
}

func raRecords(t *testing.T, pack string) []raRecord {
	t.Helper()
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	var recs []raRecord
	for off := 16; off+52 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		recs = append(recs, raRecord{off: off, n: n, typ: b[off+4]})
		off += 52 + n
	}
	return recs
}

// flipIn flips one byte in the middle of the data of the largest record of
// type typ in pack.
func flipIn(t *testing.T, pack string, typ byte) {
	t.Helper()
	var best raRecord
	for _, r := range raRecords(t, pack) {
		if r.typ == typ && r.n > best.n {
			best = r
		}
	}
	if best.n == 0 {
		t.Fatalf("no record of type %d in %s", typ, pack)
	}
	b, _ := os.ReadFile(pack)
	b[best.off+52+best.n/2] ^= 0x40
	if err := os.WriteFile(pack, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// flipFile flips 16 bytes in the middle of a file.
func flipFile(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatalf("%s is empty", p)
	}
	mid := len(b) / 2
	for i := mid; i < mid+16 && i < len(b); i++ {
		b[i] ^= 0xA5
	}
	fi, _ := os.Stat(p)
	if err := os.WriteFile(p, b, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func truncHalf(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// firstGlob is the first file matching pattern under data (fails if none).
func firstGlob(t *testing.T, data, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(data, pattern))
	sort.Strings(m)
	if len(m) == 0 {
		ls, _ := exec.Command("ls", "-laR", data).Output()
		t.Fatalf("no %s in %s:\n%s", pattern, data, ls)
	}
	return m[0]
}
