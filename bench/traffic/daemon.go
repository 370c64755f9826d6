package traffic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// ServeConfig is the daemon a morning runs against.
type ServeConfig struct {
	Data        string        `json:"data"`
	Old         bool          `json:"old"`
	TargetDelay time.Duration `json:"target_delay"`
}

// AdmissionView is what the sampler reads each second.
type AdmissionView struct {
	Waiting, Running, Limit float64
	Paced                   float64 // bytes per second; 0 unpaced
	QDelay                  time.Duration
}

// Daemon is a running xs-backupd.
type Daemon interface {
	Addr() string
	Admission() AdmissionView
	Metrics() map[string]float64
	// Usage is the server's peak RSS and CPU seconds (0, 0 in process).
	Usage() (rss int64, cpu float64)
	Close() error
}

func (c ServeConfig) config() server.Config {
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", c.Data, "127.0.0.1:0", 0
	cfg.RestorePage.Listen, cfg.Lifecycle.At = "", ""
	cfg.OpenApprovalsPerHour, cfg.MaxPending = 1<<20, 1<<20 // a whole school registers at once
	cfg.AdminSocket = c.Data + ".sock"
	if c.TargetDelay != 0 {
		cfg.Traffic.TargetDelay = server.Duration(max(c.TargetDelay, 0))
	}
	if c.Old {
		cfg.FixedWindow = &proto.FixedWindow{Capacity: 4, SlotLength: 2 * time.Minute}
	}
	return cfg
}

type inProcess struct {
	d      *server.Daemon
	cancel context.CancelFunc
	done   chan error
}

func startInProcess(ctx context.Context, c ServeConfig) (Daemon, error) {
	cfg := c.config()
	cfg.Metrics = ""
	dctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(dctx, cfg, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	p := &inProcess{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- d.Run(dctx) }()
	select {
	case <-d.Ready:
		return p, nil
	case err := <-p.done:
		cancel()
		return nil, err
	}
}

func (p *inProcess) Addr() string { return p.d.Addr.String() }
func (p *inProcess) Admission() AdmissionView {
	v := p.d.Metrics.Values()
	a := AdmissionView{Waiting: float64(v.Admission.Waiting), Running: float64(v.Admission.Running), Limit: float64(v.Admission.Limit), QDelay: v.QueueDelay}
	if !math.IsInf(v.PacedRate, 0) {
		a.Paced = v.PacedRate
	}
	return a
}
func (p *inProcess) Metrics() map[string]float64 {
	var b bytes.Buffer
	p.d.WriteMetrics(&b)
	return parseMetrics(b.Bytes())
}
func (p *inProcess) Usage() (int64, float64) { return 0, 0 }
func (p *inProcess) Close() error            { p.cancel(); return <-p.done }

// parseMetrics reads Prometheus text: unlabelled samples only.
func parseMetrics(b []byte) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// ServeEnv names the environment variable that makes a benchmark binary a
// daemon for Subprocess (see ServeIfChild).
const ServeEnv = "XS_TRAFFIC_SERVE"

// ServeIfChild runs the daemon and never returns when this process was
// started by Subprocess; otherwise it returns at once. A benchmark's main
// calls it first.
func ServeIfChild() {
	spec := os.Getenv(ServeEnv)
	if spec == "" {
		return
	}
	var c ServeConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, "bad", ServeEnv, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, c.config(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	go func() {
		// The parent closes stdin to stop the daemon.
		var b [1]byte
		os.Stdin.Read(b[:])
		cancel()
	}()
	select {
	case <-d.Ready:
	case err := <-done:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The metrics listener's address: ask the daemon's own handler.
	fmt.Printf("ready %s\n", d.Addr)
	os.Stdout.Sync()
	ms := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { d.WriteMetrics(w) })}
	go func() {
		ln, err := listenLocal()
		if err != nil {
			return
		}
		fmt.Printf("metrics %s\n", ln.Addr())
		ms.Serve(ln)
	}()
	err = <-done
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

type subprocess struct {
	cmd     *exec.Cmd
	stdin   interface{ Close() error }
	addr    string
	metrics string
	rss     int64
	cpu     float64
}

// Subprocess starts this binary again as the daemon (it must call
// ServeIfChild first thing), so that the daemon's RSS and CPU are its own.
func Subprocess(ctx context.Context, c ServeConfig) (Daemon, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, _ := json.Marshal(c)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ServeEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &subprocess{cmd: cmd, stdin: stdin}
	sc := bufio.NewScanner(out)
	for (s.addr == "" || s.metrics == "") && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "ready" {
			s.addr = f[1]
		}
		if len(f) == 2 && f[0] == "metrics" {
			s.metrics = f[1]
		}
	}
	if s.addr == "" || s.metrics == "" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("the daemon subprocess did not start")
	}
	return s, nil
}

func (s *subprocess) Addr() string { return s.addr }

func (s *subprocess) Metrics() map[string]float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		return map[string]float64{}
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return parseMetrics(b.Bytes())
}

func (s *subprocess) Admission() AdmissionView {
	m := s.Metrics()
	a := AdmissionView{Waiting: m["xs_sessions_waiting"], Running: m["xs_sessions_active"], Limit: m["xs_admission_limit"],
		QDelay: time.Duration(m["xs_queueing_delay_seconds"] * float64(time.Second))}
	if p := m["xs_pacing_rate_bytes_per_second"]; !math.IsInf(p, 0) {
		a.Paced = p
	}
	s.sampleUsage()
	return a
}

// sampleUsage reads the daemon's peak RSS and CPU time from /proc.
func (s *subprocess) sampleUsage() {
	pid := s.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				s.rss = max(s.rss, kb<<10)
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+2:]))
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				s.cpu = (ut + st) / 100 // USER_HZ
			}
		}
	}
}

func (s *subprocess) Usage() (int64, float64) { s.sampleUsage(); return s.rss, s.cpu }

func (s *subprocess) Close() error {
	s.sampleUsage()
	s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return <-done
	}
}
