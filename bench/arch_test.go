package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
)

// archBuilds are the laptop builds measured side by side: what an XO-1
// runs (386 without SSE2: `make cross`) and the amd64 build. The XO-1's
// Geode LX has no AES-NI, PCLMULQDQ or SSE4 either: on this machine's CPU
// the 386 build would see them and negotiate AES-GCM, which Go has no 386
// assembly for (a third of its CPU in a profile), where a real XO-1 gets
// ChaCha20-Poly1305. GODEBUG=cpu.all=off hides them, so the 386 build
// chooses as an XO-1 does.
var archBuilds = []struct{ name, goarch, go386, godebug string }{
	{"amd64", "amd64", "", ""},
	{"386-softfloat", "386", "softfloat", "cpu.all=off"},
}

// BenchmarkFirstBackupByArch is a laptop's first backup of a ~100 MB
// Journal by the real xo-backup program of each build, pinned to one core
// (`taskset -c 0`, as an XO has one), against a real amd64 xs-backupd on
// loopback. XS_BENCH_JOURNAL_MB scales the Journal (default ~100 MB);
// XS_BENCH_PROFILE_DIR=DIR writes each build's CPU profile there. It
// reports the laptop's CPU seconds, MB/s of Journal per CPU
// second and wall second, and peak RSS (issue 22: the 386 build within 2x
// the amd64 build's CPU, peak RSS <= 64 MiB).
func BenchmarkFirstBackupByArch(b *testing.B) {
	if _, err := exec.LookPath("taskset"); err != nil {
		b.Skip("taskset (util-linux) is needed to pin the laptop to one core")
	}
	src := b.TempDir()
	o := journalgen.Options{Seed: 11, Entries: 250, MediaBytes: 1 << 20, DocBytes: 48 << 10, SharedBooks: 6, BookSeed: 42, BookBytes: 1 << 20}
	if env := os.Getenv("XS_BENCH_JOURNAL_MB"); env != "" {
		var mb int
		fmt.Sscan(env, &mb)
		o.Entries = o.Entries * mb / 100
	}
	if _, err := journalgen.Generate(src, o); err != nil {
		b.Fatal(err)
	}
	size := dirBytes(src)
	addr, _ := startServer(b, b.TempDir())
	for _, arch := range archBuilds {
		bin := filepath.Join(b.TempDir(), "xo-backup-"+arch.name)
		build := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/xo-backup")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch.goarch, "GO386="+arch.go386)
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", arch.name, err, out)
		}
		b.Run(arch.name, func(b *testing.B) {
			// A 64-bit kernel built without 32-bit support (some cloud
			// VMs) cannot run the XO-1's build: say so, and measure the rest.
			if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil {
				if errors.Is(err, syscall.ENOEXEC) {
					b.Skipf("this kernel cannot run %s programs (%v): measure the XO-1's build on a machine whose kernel runs 32-bit programs", arch.goarch, err)
				}
				b.Fatalf("xo-backup --version (%s): %v\n%s", arch.name, err, out)
			}
			var cpu, sys, wall time.Duration
			var rss, faults int64 // peak resident set; minor page faults
			n := 0
			for b.Loop() {
				// A new laptop each time: its first backup sends every
				// chunk (the server dedups silently, by the privacy rule).
				st := agent.State{Dir: b.TempDir()}
				n++
				if _, err := agent.Register(context.Background(), st, agent.RegisterOptions{Server: addr, Serial: fmt.Sprintf("ARCH%s%d%d", arch.goarch, n, time.Now().UnixNano()%1e6)}); err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command("taskset", "-c", "0", bin, "--state", st.Dir, "run", "--source", src, "--force", "--json")
				cmd.Env = append(os.Environ(), "GODEBUG="+arch.godebug)
				if p := os.Getenv("XS_BENCH_PROFILE_DIR"); p != "" {
					cmd.Env = append(cmd.Env, "XS_BACKUP_CPUPROFILE="+filepath.Join(p, "xo-backup-"+arch.name+".pprof"),
						"XS_BACKUP_MEMPROFILE="+filepath.Join(p, "xo-backup-"+arch.name+"-allocs.pprof"))
				}
				var stdout bytes.Buffer
				cmd.Stdout = &stdout
				t0 := time.Now()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				hwm := watchHWM(cmd.Process.Pid)
				err := cmd.Wait()
				wall += time.Since(t0)
				rss = max(rss, hwm())
				out := stdout.Bytes()
				if err != nil {
					b.Fatalf("xo-backup run (%s): %v\n%s", arch.name, err, out)
				}
				var res struct {
					Outcome string `json:"outcome"`
				}
				if err := json.Unmarshal(out, &res); err != nil || res.Outcome != "done" {
					b.Fatalf("xo-backup run (%s): %v %s", arch.name, err, out)
				}
				// taskset execs the program: its usage is the laptop's.
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				sys += cmd.ProcessState.SystemTime()
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					faults += int64(ru.Minflt)
				}
			}
			mb := float64(size) / 1e6
			b.ReportMetric(cpu.Seconds()/float64(n), "cpu-s")
			// The kernel's part: a 386 program's system calls go through
			// this 64-bit kernel's compat entry, which costs far more on
			// this VM than a native call does on an XO-1's own kernel.
			b.ReportMetric(sys.Seconds()/float64(n), "sys-s")
			b.ReportMetric(mb*float64(n)/cpu.Seconds(), "MB/cpu-s")
			b.ReportMetric(mb*float64(n)/wall.Seconds(), "MB/s")
			b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(faults)/float64(n), "page-faults")
			b.ReportMetric(mb, "journal-MB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// watchHWM follows the peak resident set (VmHWM) of the process pid until
// it exits and returns a func that gives it, in bytes. The rusage of a
// child is no use for this: Go starts programs with a vfork-style clone,
// so the child's peak includes the parent's memory until its exec.
func watchHWM(pid int) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
			if err != nil {
				return
			}
			for line := range strings.Lines(string(b)) {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					if kb<<10 > peak.Load() {
						peak.Store(kb << 10)
					}
				}
				if strings.HasPrefix(line, "State:\tZ") {
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() int64 { <-done; return peak.Load() }
}
