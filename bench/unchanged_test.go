package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
)

// BenchmarkUnchangedJournal is a laptop's nightly run with nothing to send:
// a Journal of 1000 entries, backed up once, then `xo-backup run --force`
// (the real program, as the timer runs it) against a real xs-backupd on
// loopback. It reports the laptop's CPU (user+system of the xo-backup
// process, start-up included), wall time, requests after the handshake and
// wire bytes per run. Targets (issue 22): ≤ 10 ms client CPU, ≤ 3 requests.
func BenchmarkUnchangedJournal(b *testing.B) {
	src := b.TempDir()
	o := journalgen.Options{Seed: 7, Entries: 1000, MediaBytes: 8 << 10, DocBytes: 2 << 10, SharedBooks: 5, BookSeed: 42, BookBytes: 64 << 10}
	if _, err := journalgen.Generate(src, o); err != nil {
		b.Fatal(err)
	}
	addr, _ := startServer(b, b.TempDir())
	bin := filepath.Join(os.TempDir(), "xs-bench-bin")
	if out, err := exec.Command("go", "build", "-o", bin+"/", "../cmd/xo-backup").CombinedOutput(); err != nil {
		b.Fatalf("build xo-backup: %v\n%s", err, out)
	}
	st := agent.State{Dir: b.TempDir()}
	ctx := context.Background()
	if _, err := agent.Register(ctx, st, agent.RegisterOptions{Server: addr, Serial: "BENCHU1"}); err != nil {
		b.Fatal(err)
	}
	// A laptop's Journal was not all written a moment ago: a directory
	// changed within 2 s of a walk is listed again by the next one
	// (backup's racyWindow), which would make every run here a first.
	time.Sleep(2100 * time.Millisecond)
	if r, err := agent.Run(ctx, st, agent.RunOptions{Source: src, Force: true}); err != nil || r.Outcome != agent.Done {
		b.Fatal(err, r)
	}
	var cpu, wall time.Duration
	var trips, wire int64
	runs := 0
	for b.Loop() {
		cmd := exec.Command(filepath.Join(bin, "xo-backup"), "--state", st.Dir, "run", "--source", src, "--force", "--json")
		if d := os.Getenv("XS_BENCH_PROFILE_DIR"); d != "" {
			// One profile per run: merge them with go tool pprof.
			cmd.Env = append(os.Environ(), "XS_BACKUP_CPUPROFILE="+filepath.Join(d, fmt.Sprintf("xo-backup-unchanged-%d.pprof", runs)))
		}
		runs++
		t0 := time.Now()
		out, err := cmd.Output()
		wall += time.Since(t0)
		if err != nil {
			b.Fatalf("xo-backup run: %v\n%s", err, out)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		var res struct {
			Outcome    string `json:"outcome"`
			BytesRead  int64  `json:"bytes_read"`
			RoundTrips int64  `json:"round_trips"`
			Sent       int64  `json:"wire_bytes_sent"`
			Received   int64  `json:"wire_bytes_received"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.Outcome != "done" {
			b.Fatalf("xo-backup run: %v %s", err, out)
		}
		if res.BytesRead != 0 {
			b.Fatalf("an unchanged run read %d bytes of file content", res.BytesRead)
		}
		trips += res.RoundTrips
		wire += res.Sent + res.Received
	}
	n := float64(b.N)
	b.ReportMetric(float64(cpu.Microseconds())/1000/n, "client-cpu-ms")
	b.ReportMetric(float64(wall.Microseconds())/1000/n, "wall-ms")
	b.ReportMetric(float64(trips)/n, "requests")
	b.ReportMetric(float64(wire)/n, "wire-B")
	b.ReportMetric(0, "ns/op")
}
