package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverPkg is the daemon's import path: `go build` finds it from any
// directory inside the module (the test runs in bench/load, make at the root).
const serverPkg = "github.com/xs-backup/xs-backup/cmd/xs-backupd"

// buildServer builds xs-backupd into dir and returns the binary's path.
func buildServer(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), serverPkg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build xs-backupd (run from inside the xs-backup module, or pass the binary with -server): %v\n%s", err, out)
	}
	return filepath.Join(dir, "xs-backupd"), nil
}

// daemon is a running xs-backupd subprocess.
type daemon struct {
	cmd     *exec.Cmd
	addr    string // UDP address of the backup protocol
	metrics string // host:port of /metrics
	exited  chan struct{}
	waitErr error // set before exited is closed
}

var (
	listenRe  = regexp.MustCompile(`listen=(\S+)`)
	metricsRe = regexp.MustCompile(`msg=metrics addr=(\S+)`)
)

// serverConfig is the TOML configuration the daemon runs with: loopback
// only, metrics on a free port, no restore page, no nightly lifecycle (it
// would run at 02:30 in the middle of a night-time run).
func serverConfig(data string, o *Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = \"127.0.0.1:0\"\ndata = %q\nmetrics = \"127.0.0.1:0\"\n", data)
	if o.MaxConnections > 0 {
		fmt.Fprintf(&b, "max_connections = %d\n", o.MaxConnections)
	}
	b.WriteString("log_level = \"info\"\n\n[lifecycle]\nat = \"\"\n\n[restore_page]\nlisten = \"\"\n")
	fmt.Fprintf(&b, "\n[admission]\nmax_sessions = %d\n", max(o.Capacity, 2))
	return b.String()
}

// startDaemon starts bin with --config cfgPath, its log going to logPath,
// and waits until it announces its addresses.
func startDaemon(bin, cfgPath, logPath string) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	var lastLine string
	go func() {
		defer close(scanned)
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		announced := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if announced {
				continue
			}
			lastLine = line
			if m := metricsRe.FindStringSubmatch(line); m != nil {
				d.metrics = m[1]
			}
			if m := listenRe.FindStringSubmatch(line); m != nil {
				d.addr = m[1]
				announced = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	select {
	case <-ready:
		if d.metrics == "" {
			d.stop()
			return nil, errors.New("xs-backupd did not announce its metrics address (its log format changed? see msg=metrics in the daemon log)")
		}
		return d, nil
	case <-d.exited:
		return nil, fmt.Errorf("xs-backupd exited before it was ready (%v): %s (full log: %s)", d.waitErr, lastLine, logPath)
	case <-time.After(30 * time.Second):
		d.stop()
		return nil, fmt.Errorf("xs-backupd did not become ready in 30 s; see %s", logPath)
	}
}

// stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 40 s:
// it lets requests in progress finish for up to 20 s).
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return d.waitErr
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.waitErr
	case <-time.After(40 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		return errors.New("xs-backupd did not stop within 40 s of SIGTERM and was killed")
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// procStatusKB returns a "Name:   123 kB" field of /proc/PID/status in bytes.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// scrape reads the daemon's Prometheus metrics: name (with labels) → value.
func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
