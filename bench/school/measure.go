package school

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/internal/procstat"
)

// diskUsage is what du reports for roots together: allocated blocks
// (st_blocks*512) of every file and directory, each inode counted once
// however many hard links it has. Missing roots count 0.
func diskUsage(roots ...string) (int64, error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var n int64
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			fi, err := de.Info()
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				n += fi.Size()
				return nil
			}
			if st.Nlink > 1 && !de.IsDir() {
				k := key{uint64(st.Dev), st.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			n += st.Blocks * 512
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("measure disk use of %s: %w", root, err)
		}
	}
	return n, nil
}

// procCPU is the CPU time of a running process and of its children it has
// waited for (0 if it cannot be read).
func procCPU(pid int) time.Duration {
	d, _ := procstat.CPU(pid, true)
	return d
}

// proc is a finished command.
type proc struct {
	stdout, stderr string
	code           int
	cpu            time.Duration // user+sys of the process and its waited-for children
	wall           time.Duration
}

// run runs a command to completion. A non-zero exit is not an error (see
// code); failing to start it is.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (proc, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	p := proc{stdout: out.String(), stderr: errb.String(), wall: time.Since(start)}
	if cmd.ProcessState != nil {
		p.code = cmd.ProcessState.ExitCode()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			return p, fmt.Errorf("run %s: %w", name, err)
		}
	}
	return p, nil
}

// failed describes a command that exited non-zero.
func (p proc) failed(what string) error {
	msg := strings.TrimSpace(p.stderr)
	if msg == "" {
		msg = strings.TrimSpace(p.stdout)
	}
	if len(msg) > 600 {
		msg = msg[len(msg)-600:]
	}
	return fmt.Errorf("%s: exit code %d: %s", what, p.code, msg)
}

// forEach calls fn(i) for i in [0, n) with at most conc calls at once, and
// returns the first error (the other calls in flight still finish).
func forEach(ctx context.Context, n, conc int, fn func(i int) error) error {
	if conc < 1 {
		conc = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// Only the parent context can have ended without an error from fn.
		first = ctx.Err()
	}
	return first
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPU    string            `json:"cpu"`
	Cores  int               `json:"cores"`
	RAM    string            `json:"ram"`
	Kernel string            `json:"kernel"`
	OS     string            `json:"os"`
	Go     string            `json:"go"`
	Tools  map[string]string `json:"tools"` // tool -> version line
}

func machine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Tools: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.RAM = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	for tool, args := range map[string][]string{"rsync": {"--version"}, "restic": {"version"}, "borg": {"--version"}, "hardlink": {"--version"}, "ssh": {"-V"}} {
		if path, err := exec.LookPath(tool); err == nil {
			if p, err := run(ctx, "", nil, path, args...); err == nil && p.code == 0 {
				line, _, _ := strings.Cut(strings.TrimSpace(p.stdout+p.stderr), "\n")
				m.Tools[tool] = strings.Join(strings.Fields(line), " ")
			}
		}
	}
	return m
}
