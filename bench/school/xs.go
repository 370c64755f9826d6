package school

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// xsBackup runs a real xs-backupd and one xo-backup process per laptop.
type xsBackup struct {
	bin, data, states string
	cmd               *exec.Cmd
	addr              string
	log               *os.File
	waited            chan error

	mu     sync.Mutex
	serial map[int]string // laptop -> serial it is registered with now
	notes  []string
	// payload and wire sum bytes_sent (chunk and tree bytes as uploaded)
	// and the QUIC bytes sent over every run.
	payload, wireSent int64
}

func (x *xsBackup) name() string { return "xs-backup" }

var listenRe = regexp.MustCompile(`listen=(\S+)`)

// buildXS builds the three programs of the repository at repo into bin.
func buildXS(ctx context.Context, repo, bin string) error {
	// Pure Go, as the packages (and make build) build them: linked against
	// libc, every start of xo-backup would also pay the dynamic loader.
	p, err := run(ctx, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-o", bin+string(os.PathSeparator), "./cmd/xs-backupd", "./cmd/xo-backup", "./cmd/xs-admin")
	if err != nil {
		return fmt.Errorf("build xs-backup: %w (is Go installed?)", err)
	}
	if p.code != 0 {
		return p.failed("build xs-backup (go build ./cmd/... in " + repo + ")")
	}
	return nil
}

func (x *xsBackup) start(ctx context.Context, sc *school, work string) error {
	x.data, x.states = filepath.Join(work, "server"), filepath.Join(work, "state")
	x.serial = map[int]string{}
	for _, d := range []string{x.data, x.states} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	var err error
	if x.log, err = os.Create(filepath.Join(work, "xs-backupd.log")); err != nil {
		return err
	}
	x.cmd = exec.Command(filepath.Join(x.bin, "xs-backupd"), "--config", "", "--listen", "127.0.0.1:0", "--data", x.data,
		"--metrics", "", "--page", "")
	if f := os.Getenv("XS_BENCH_SERVER_PROFILE"); f != "" {
		// The daemon's CPU profile over every night, written when it stops.
		x.cmd.Env = append(os.Environ(), "XS_BACKUP_CPUPROFILE="+f)
	}
	stderr, err := x.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := x.cmd.Start(); err != nil {
		return fmt.Errorf("start xs-backupd: %w", err)
	}
	x.waited = make(chan error, 1)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(x.log, sc.Text())
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		x.waited <- x.cmd.Wait()
	}()
	select {
	case x.addr = <-addr:
	case err := <-x.waited:
		x.waited <- err
		return fmt.Errorf("xs-backupd exited before it was ready (%v); see %s", err, x.log.Name())
	case <-time.After(30 * time.Second):
		x.cmd.Process.Kill()
		return fmt.Errorf("xs-backupd did not print its listen= line within 30 s; see %s", x.log.Name())
	}
	for _, l := range sc.laptops {
		if err := x.register(ctx, l, l.serial); err != nil {
			return err
		}
	}
	return nil
}

func (x *xsBackup) stateDir(l *laptop) string { return filepath.Join(x.states, l.name) }

func (x *xsBackup) register(ctx context.Context, l *laptop, serial string) error {
	p, err := run(ctx, "", nil, filepath.Join(x.bin, "xo-backup"), "--state", x.stateDir(l), "register", "--server", x.addr, "--serial", serial)
	if err != nil {
		return err
	}
	if p.code != 0 {
		return p.failed("xo-backup register " + serial)
	}
	x.mu.Lock()
	x.serial[l.idx] = serial
	x.mu.Unlock()
	return nil
}

// runSummary is the JSON of `xo-backup run --json` (cmd/xo-backup).
type runSummary struct {
	Outcome      string `json:"outcome"`
	Reason       string `json:"reason"`
	Snapshot     string `json:"snapshot"`
	WireSent     int64  `json:"wire_bytes_sent"`
	WireReceived int64  `json:"wire_bytes_received"`
	BytesRead    int64  `json:"bytes_read"`
	BytesSent    int64  `json:"bytes_sent"`
	Error        string `json:"error"`
}

func (x *xsBackup) backup(ctx context.Context, l *laptop, k int) (int64, time.Duration, error) {
	var cpu time.Duration
	var wire int64
	var env []string
	if d := os.Getenv("XS_BENCH_LAPTOP_PROFILE_DIR"); d != "" {
		// One CPU profile per laptop and night (go tool pprof merges them).
		env = []string{"XS_BACKUP_CPUPROFILE=" + filepath.Join(d, fmt.Sprintf("%s-night%02d.pprof", l.name, k))}
	}
	for attempt := 0; ; attempt++ {
		p, err := run(ctx, "", env, filepath.Join(x.bin, "xo-backup"), "--state", x.stateDir(l), "run", "--source", l.journal, "--force", "--json")
		if err != nil {
			return 0, 0, err
		}
		cpu += p.cpu
		var s runSummary
		if err := json.Unmarshal([]byte(p.stdout), &s); err != nil {
			return 0, 0, fmt.Errorf("xo-backup run for %s printed no JSON summary (%v): %s", l.name, err, p.stderr)
		}
		wire += s.WireSent + s.WireReceived
		if p.code == 4 && attempt < 30 { // server busy: come back as told
			time.Sleep(time.Second)
			continue
		}
		if p.code != 0 || s.Outcome != "done" {
			return 0, 0, fmt.Errorf("xo-backup run for %s night %d: exit %d, outcome %q %s %s", l.name, k, p.code, s.Outcome, s.Reason, s.Error)
		}
		x.mu.Lock()
		x.payload += s.BytesSent
		x.wireSent += s.WireSent
		x.mu.Unlock()
		return wire, cpu, nil
	}
}

func (x *xsBackup) serverCPU() time.Duration { return procCPU(x.cmd.Process.Pid) }

func (x *xsBackup) disk() (int64, error) { return diskUsage(x.data) }

func (x *xsBackup) state(l *laptop) (int64, error) { return diskUsage(x.stateDir(l)) }

// reflash deletes the laptop's state and registers it again: with the same
// serial if the server takes a new key for it, else with a new serial.
func (x *xsBackup) reflash(ctx context.Context, l *laptop) error {
	if err := os.RemoveAll(x.stateDir(l)); err != nil {
		return err
	}
	err := x.register(ctx, l, l.serial)
	if err == nil {
		// A known serial with a new key waits for staff: approve it, as the
		// school's staff would (xs-admin pending shows both keys).
		p, aerr := run(ctx, "", nil, filepath.Join(x.bin, "xs-admin"), "--data", x.data, "approve", l.serial)
		if aerr == nil && p.code != 0 {
			aerr = p.failed("xs-admin approve " + l.serial)
		}
		if aerr != nil {
			return aerr
		}
		x.note(fmt.Sprintf("Reflash: the laptop registered its new key for the existing serial %s and staff approved it (xs-admin approve): the history continues.", l.serial))
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "serial "); i >= 0 {
		msg = msg[i:]
	}
	newSerial := l.serial + "R"
	x.note(fmt.Sprintf("Reflash: `xo-backup register` with the same serial %s and a new key was refused (%q); the reflashed laptop registered as %s, a new user with no history.",
		l.serial, strings.TrimSpace(msg), newSerial))
	return x.register(ctx, l, newSerial)
}

func (x *xsBackup) note(s string) {
	x.mu.Lock()
	x.notes = append(x.notes, s)
	x.mu.Unlock()
}

func (x *xsBackup) restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error) {
	p, err := run(ctx, "", nil, filepath.Join(x.bin, "xo-backup"), "--state", x.stateDir(l), "restore", "--to", dir)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("xo-backup restore --to")
	}
	return dir, p.wall, nil
}

func (x *xsBackup) restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error) {
	p, err := run(ctx, "", nil, filepath.Join(x.bin, "xo-backup"), "--state", x.stateDir(l), "list", "--json")
	if err != nil {
		return "", 0, err
	}
	var sns []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(p.stdout), &sns); err != nil || len(sns) == 0 {
		return "", 0, fmt.Errorf("xo-backup list --json: exit %d, %q: %v", p.code, p.stdout, err)
	}
	p, err = run(ctx, "", nil, filepath.Join(x.bin, "xo-backup"), "--state", x.stateDir(l), "restore", "--snapshot", sns[0].ID, "--to", dir, rel)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("xo-backup restore --snapshot " + sns[0].ID)
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), p.wall, nil
}

func (x *xsBackup) stop() error {
	if x.cmd == nil || x.cmd.Process == nil {
		return nil
	}
	x.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-x.waited:
	case <-time.After(60 * time.Second):
		x.cmd.Process.Kill()
		err = errors.New("xs-backupd did not stop within 60 s of SIGTERM")
		<-x.waited
	}
	x.cmd = nil
	if x.log != nil {
		x.log.Close()
	}
	if err != nil {
		return fmt.Errorf("xs-backupd: %w; see %s", err, filepath.Join(filepath.Dir(x.data), "xs-backupd.log"))
	}
	return nil
}

// breakdown says where the server's disk goes.
func (x *xsBackup) breakdown() string {
	var parts []string
	var known int64
	for _, d := range []string{"packs", "index", "shadow"} {
		n, _ := diskUsage(filepath.Join(x.data, d))
		known += n
		parts = append(parts, fmt.Sprintf("%s %.1f MB", d, mb(n)))
	}
	all, _ := diskUsage(x.data)
	parts = append(parts, fmt.Sprintf("everything else (users, snapshots, config) %.1f MB", mb(all-known)))
	return strings.Join(parts, ", ")
}

// indexCost opens the stopped store read-only and returns the index bytes
// per stored blob (chunks and trees) and the counts it is based on.
func (x *xsBackup) indexCost(ctx context.Context) (perBlob float64, blobs int, index int64, err error) {
	s, err := store.Open(ctx, x.data, store.Options{ReadOnly: true, Reserve: -1})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("open the xs-backup store to measure its index: %w", err)
	}
	rep, err := s.Check(ctx, store.CheckOptions{})
	s.Close()
	if err != nil {
		return 0, 0, 0, err
	}
	if !rep.OK() {
		return 0, 0, 0, fmt.Errorf("xs-admin check found %d problems in the benchmark's store, first: %v", len(rep.Problems), rep.Problems[0])
	}
	index, err = diskUsage(filepath.Join(x.data, "index"))
	if err != nil {
		return 0, 0, 0, err
	}
	blobs = rep.Chunks + rep.Trees
	if blobs == 0 {
		return 0, 0, index, errors.New("the store holds no blobs")
	}
	return float64(index) / float64(blobs), blobs, index, nil
}
