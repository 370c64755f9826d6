package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/procstat"
	"github.com/xs-backup/xs-backup/pkg/agent"
)

// BenchmarkUnchangedJournal is a laptop's nightly run with nothing to send:
// a Journal of 1000 entries, backed up once, then `xo-backup run --force`
// (the real program, as the timer runs it) against a real xs-backupd on
// loopback. It reports the laptop's CPU (user+system of the xo-backup
// process, start-up included), wall time, requests after the handshake and
// wire bytes per run. Targets (issue 22): ≤ 10 ms client CPU, ≤ 3 requests.
// XS_BENCH_PROFILE_DIR=DIR writes one CPU profile per run there;
// XS_BENCH_XO1=1 runs the XO-1's build (386 softfloat) instead.
func BenchmarkUnchangedJournal(b *testing.B) {
	l := newBenchLaptop(b, journalgen.Options{Seed: 7, Entries: 1000, MediaBytes: 8 << 10, DocBytes: 2 << 10, SharedBooks: 5, BookSeed: 42, BookBytes: 64 << 10})
	for b.Loop() {
		if res := l.run(b, "unchanged"); res.BytesRead != 0 {
			b.Fatalf("an unchanged run read %d bytes of file content", res.BytesRead)
		}
	}
	l.report(b)
}

// BenchmarkNightlyDelta is a laptop's nightly run after a day's work: a
// Journal of 300 entries (about the school benchmark's 20 MiB), and before
// each run one day of journalgen's changes (a document edited in the middle,
// a new entry, the index rewritten). It reports what BenchmarkUnchangedJournal
// does.
func BenchmarkNightlyDelta(b *testing.B) {
	l := newBenchLaptop(b, journalgen.Options{Seed: 9, Entries: 300, MediaBytes: 96 << 10, DocBytes: 12 << 10, SharedBooks: 4, BookSeed: 42, BookBytes: 512 << 10})
	day := 0
	for b.Loop() {
		b.StopTimer()
		day++
		if err := journalgen.Mutate(l.src, 9, day); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if res := l.run(b, "delta"); res.BytesRead == 0 {
			b.Fatal("a run after a day of changes read nothing")
		}
	}
	l.report(b)
}

// benchLaptop is a registered laptop with a generated Journal, backed up
// once, and the real xo-backup program to run against a real xs-backupd.
type benchLaptop struct {
	bin, src    string
	st          agent.State
	runs        int
	cpu, wall   time.Duration
	sys         time.Duration // the kernel's part of cpu
	trips, wire int64
	faults      int64         // minor page faults
	switches    int64         // context switches, voluntary and not
	server      int           // xs-backupd's pid
	serverCPU   time.Duration // its CPU over the runs (/proc's 10 ms ticks: a mean over many runs)
}

func newBenchLaptop(b *testing.B, o journalgen.Options) *benchLaptop {
	l := &benchLaptop{src: b.TempDir(), bin: filepath.Join(os.TempDir(), "xs-bench-bin"), st: agent.State{Dir: b.TempDir()}}
	if _, err := journalgen.Generate(l.src, o); err != nil {
		b.Fatal(err)
	}
	addr, srv := startServer(b, b.TempDir())
	l.server = srv.Process.Pid
	build := exec.Command("go", "build", "-o", l.bin+"/", "../cmd/xo-backup")
	// Pure Go, as the packages build it (a dynamically linked program pays
	// the loader at every start).
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if xoBuild() {
		// The XO-1's build, with the XO-1's CPU features (see arch_test.go).
		build.Env = append(build.Env, "GOARCH=386", "GO386=softfloat")
	}
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build xo-backup: %v\n%s", err, out)
	}
	ctx := context.Background()
	if _, err := agent.Register(ctx, l.st, agent.RegisterOptions{Server: addr, Serial: "BENCHU1"}); err != nil {
		b.Fatal(err)
	}
	// A laptop's Journal was not all written a moment ago: a directory
	// changed within 2 s of a walk is listed again by the next one
	// (backup's racyWindow), which would make every run here a first.
	time.Sleep(2100 * time.Millisecond)
	if r, err := agent.Run(ctx, l.st, agent.RunOptions{Source: l.src, Force: true}); err != nil || r.Outcome != agent.Done {
		b.Fatal(err, r)
	}
	return l
}

// xoBuild reports whether XS_BENCH_XO1=1 asks for the laptop's runs to be
// those of the XO-1's build (386 softfloat, without the CPU features a
// Geode lacks).
func xoBuild() bool { return os.Getenv("XS_BENCH_XO1") == "1" }

// runResult is the part of `xo-backup run --json` the benchmarks check.
type runResult struct {
	Outcome    string `json:"outcome"`
	BytesRead  int64  `json:"bytes_read"`
	RoundTrips int64  `json:"round_trips"`
	Sent       int64  `json:"wire_bytes_sent"`
	Received   int64  `json:"wire_bytes_received"`
}

// run runs `xo-backup run --force` once and adds up what it cost.
func (l *benchLaptop) run(b *testing.B, name string) runResult {
	cmd := exec.Command(filepath.Join(l.bin, "xo-backup"), "--state", l.st.Dir, "run", "--source", l.src, "--force", "--json")
	cmd.Env = os.Environ()
	if xoBuild() {
		cmd.Env = append(cmd.Env, "GODEBUG=cpu.all=off")
	}
	if d := os.Getenv("XS_BENCH_PROFILE_DIR"); d != "" {
		// One profile per run: merge them with go tool pprof.
		cmd.Env = append(cmd.Env, "XS_BACKUP_CPUPROFILE="+filepath.Join(d, fmt.Sprintf("xo-backup-%s-%d.pprof", name, l.runs)))
	}
	l.runs++
	s0, err := procstat.CPU(l.server, false)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	out, err := cmd.Output()
	l.wall += time.Since(t0)
	if err != nil {
		b.Fatalf("xo-backup run: %v\n%s", err, out)
	}
	s1, err := procstat.CPU(l.server, false)
	if err != nil {
		b.Fatal(err)
	}
	l.serverCPU += s1 - s0
	l.cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	l.sys += cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		l.faults += int64(ru.Minflt)
		l.switches += int64(ru.Nvcsw + ru.Nivcsw)
	}
	var res runResult
	if err := json.Unmarshal(out, &res); err != nil || res.Outcome != "done" {
		b.Fatalf("xo-backup run: %v %s", err, out)
	}
	l.trips += res.RoundTrips
	l.wire += res.Sent + res.Received
	return res
}

func (l *benchLaptop) report(b *testing.B) {
	n := float64(l.runs)
	b.ReportMetric(float64(l.cpu.Microseconds())/1000/n, "client-cpu-ms")
	b.ReportMetric(float64(l.sys.Microseconds())/1000/n, "client-sys-ms")
	b.ReportMetric(float64(l.serverCPU.Microseconds())/1000/n, "server-cpu-ms")
	b.ReportMetric(float64(l.faults)/n, "page-faults")
	b.ReportMetric(float64(l.switches)/n, "ctx-switches")
	b.ReportMetric(float64(l.wall.Microseconds())/1000/n, "wall-ms")
	b.ReportMetric(float64(l.trips)/n, "requests")
	b.ReportMetric(float64(l.wire)/n, "wire-B")
	b.ReportMetric(0, "ns/op")
}
