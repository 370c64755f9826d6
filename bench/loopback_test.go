// Package bench holds the benchmark suite. See README.md for the figures
// and how to reproduce them.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/bench/internal/rsyncd"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/procstat"
	"github.com/xs-backup/xs-backup/pkg/agent"
)

// startServer builds (once) and starts xs-backupd, returning its address and PID.
func startServer(b *testing.B, data string) (string, *exec.Cmd) {
	b.Helper()
	bin := filepath.Join(os.TempDir(), "xs-bench-bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../cmd/xs-backupd")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "xs-backupd"), "--config", "", "--listen", "127.0.0.1:0", "--data", data, "--metrics", "", "--page", "")
	if f := os.Getenv("XS_BENCH_SERVER_PROFILE"); f != "" {
		// The daemon's CPU profile over the benchmark, written when it stops.
		cmd.Env = append(os.Environ(), "XS_BACKUP_CPUPROFILE="+f)
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listen=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if os.Getenv("XS_BENCH_VERBOSE") != "" {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		b.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
		return a, cmd
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		b.Fatal("xs-backupd did not start")
	}
	return "", nil
}

// cpuSeconds is a process's user+system CPU time in seconds (0 if it
// cannot be read).
func cpuSeconds(pid int) float64 {
	d, _ := procstat.CPU(pid, false)
	return d.Seconds()
}

// BenchmarkLoopback backs up new data to a real xs-backupd over QUIC on
// loopback, then backs the same data up again unchanged.
func BenchmarkLoopback(b *testing.B) {
	const files, size = 16, 16 << 20
	src := b.TempDir()
	for i := 0; i < files; i++ {
		data := journalgen.Random(randFor(uint64(i)), size)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("photo%02d.jpg", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	total := float64(files * size)
	for i := 0; i < b.N; i++ {
		addr, srv := startServer(b, b.TempDir())
		st := agent.State{Dir: b.TempDir()}
		ctx := context.Background()
		if _, err := agent.Register(ctx, st, agent.RegisterOptions{Server: addr, Serial: "BENCH1"}); err != nil {
			b.Fatal(err)
		}
		cpu0 := cpuSeconds(srv.Process.Pid)
		t0 := time.Now()
		r1, err := agent.Run(ctx, st, agent.RunOptions{Source: src, Force: true})
		if err != nil || r1.Outcome != agent.Done {
			b.Fatal(err, r1)
		}
		first := time.Since(t0)
		cpu1 := cpuSeconds(srv.Process.Pid)
		t1 := time.Now()
		r2, err := agent.Run(ctx, st, agent.RunOptions{Source: src, Force: true})
		if err != nil || r2.Outcome != agent.Done {
			b.Fatal(err, r2)
		}
		again := time.Since(t1)
		b.ReportMetric(total/first.Seconds()/1e6, "first-MB/s")
		b.ReportMetric((cpu1-cpu0)/(total/(1<<30)), "server-cpu-s/GiB")
		b.ReportMetric(float64(again.Milliseconds()), "unchanged-ms")
		b.ReportMetric(float64(r2.WireSent+r2.WireReceived), "unchanged-wire-B")
		b.ReportMetric(float64(r2.Backup.BytesRead), "unchanged-read-B")
	}
}

// BenchmarkRestoreLoopback backs up a generated Journal (~30 MB: photos,
// documents, shared books, in the datastore layout) to a real xs-backupd on
// loopback and restores it whole into an empty directory, next to `cp -a`
// of the same Journal in the same run (the restore the whole-school
// benchmark compares with).
func BenchmarkRestoreLoopback(b *testing.B) {
	src := b.TempDir()
	o := journalgen.Options{Seed: 5, Entries: 120, MediaBytes: 512 << 10, DocBytes: 24 << 10, SharedBooks: 4, BookSeed: 42, BookBytes: 1 << 20}
	if _, err := journalgen.Generate(src, o); err != nil {
		b.Fatal(err)
	}
	logical := dirBytes(src)
	addr, srv := startServer(b, b.TempDir())
	st := agent.State{Dir: b.TempDir()}
	ctx := context.Background()
	if _, err := agent.Register(ctx, st, agent.RegisterOptions{Server: addr, Serial: "BENCHR1"}); err != nil {
		b.Fatal(err)
	}
	if r, err := agent.Run(ctx, st, agent.RunOptions{Source: src, Force: true}); err != nil || r.Outcome != agent.Done {
		b.Fatal(err, r)
	}
	// rsync's restore: the laptop pulls the Journal from rsync's daemon on
	// the server (plain TCP, no encryption: the cheapest rsync there is).
	port, stop, err := rsyncd.Start("journal", src, filepath.Join(b.TempDir(), "rsyncd.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	var sumXS, sumCP, sumRS time.Duration
	var sumCPU float64
	b.ResetTimer()
	// The copies land in memory (/dev/shm when there is one) and each is
	// removed before the next: on a disk, file creation and the removals'
	// writeback (and this VM's discard on delete) vary tenfold from one
	// copy to the next, which would measure the disk, not the restore.
	out := b.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "xs-bench-restore-"); err == nil {
		out = shm
		defer os.RemoveAll(shm)
	}
	timed := func(name string, f func(dir string) error) time.Duration {
		dir := filepath.Join(out, name)
		t0 := time.Now()
		if err := f(dir); err != nil {
			b.Fatal(name, ": ", err)
		}
		d := time.Since(t0)
		os.RemoveAll(dir)
		return d
	}
	run := func(name string, args ...string) func(string) error {
		return func(dir string) error {
			if out, err := exec.Command(name, append(args, dir)...).CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}
	for i := 0; i < b.N; i++ {
		cp := timed("cp", run("cp", "-a", src))
		rs := timed("rsync", run("rsync", "-a", fmt.Sprintf("rsync://127.0.0.1:%d/journal/", port)))
		cpu0 := cpuSeconds(srv.Process.Pid)
		xs := timed("xs", func(dir string) error {
			res, _, err := agent.Restore(ctx, st, agent.RestoreOptions{Target: dir, All: true})
			if err == nil && len(res.Damaged) > 0 {
				err = fmt.Errorf("restore reported damaged files: %v", res.Damaged)
			}
			return err
		})
		sumXS, sumCP, sumRS, sumCPU = sumXS+xs, sumCP+cp, sumRS+rs, sumCPU+cpuSeconds(srv.Process.Pid)-cpu0
	}
	// Totals over the iterations, so that each figure is their mean.
	b.ReportMetric(float64(logical)/1e6, "journal-MB")
	b.ReportMetric(sumXS.Seconds()*1e3/float64(b.N), "restore-ms")
	b.ReportMetric(sumCP.Seconds()*1e3/float64(b.N), "cp-a-ms")
	b.ReportMetric(sumRS.Seconds()*1e3/float64(b.N), "rsync-ms")
	b.ReportMetric(float64(logical)*float64(b.N)/sumXS.Seconds()/1e6, "restore-MB/s")
	b.ReportMetric(sumXS.Seconds()/sumCP.Seconds(), "×cp-a")
	b.ReportMetric(sumXS.Seconds()/sumRS.Seconds(), "×rsync")
	b.ReportMetric(sumCPU/float64(b.N), "server-cpu-s")
}
