// Package s3test runs a real S3 server (versitygw over a temporary
// directory) on loopback for tests, and a reverse proxy in front of it that
// injects faults (dropped connections, delays, 500s, 503 SlowDown,
// truncated bodies) when a test asks.
//
// Only tests import it. When versitygw is not installed, Start skips the
// test with a message saying how to install it, or fails it when the
// environment variable CI is set (CI must run these tests).
package s3test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// Install is the command that installs the server these tests run.
const Install = "GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

const (
	AccessKey = "xstestaccess"
	SecretKey = "xstestsecret0123456789"
)

// Server is a running versitygw.
type Server struct {
	Addr   string // host:port of the server itself
	Dir    string // its posix root
	Bucket string
	cmd    *exec.Cmd
}

// Binary finds versitygw in PATH or in GOPATH/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.SplitList(gp)...)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		dirs = append(dirs, filepath.SplitList(strings.TrimSpace(string(out)))...)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw is not installed (in PATH or GOPATH/bin): %s", Install)
}

// Start runs versitygw for the test on a free loopback port, with a
// bucket, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI must run the S3 tests)", err)
		}
		t.Skipf("skipping the S3 test: %v", err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		cmd := exec.Command(bin, "--access", AccessKey, "--secret", SecretKey, "--port", addr, "--quiet", "posix", "--data-integrity-etag", root)
		logf, _ := os.Create(filepath.Join(dir, "versitygw.log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start versitygw: %v", err)
		}
		s := &Server{Addr: addr, Dir: root, Bucket: "xs-test", cmd: cmd}
		// The bucket is made through the new server: a port another
		// process took meanwhile fails here, and the next try takes another.
		var err error
		if waitUp(addr, 15*time.Second) {
			if err = s.makeBucket(); err == nil {
				t.Cleanup(func() {
					cmd.Process.Kill()
					cmd.Wait()
					logf.Close()
				})
				return s
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if attempt == 2 {
			b, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
			t.Fatalf("versitygw did not start on %s (%v): %s", addr, err, b)
		}
	}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitUp(addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (s *Server) makeBucket() error {
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, s.Bucket)); err != nil {
		return fmt.Errorf("the bucket is not in %s: another server answered (%v)", s.Dir, err)
	}
	return nil
}

// Config returns an s3.Config for the bucket at addr (the server's, or a
// proxy's), under prefix.
func (s *Server) Config(addr, prefix string) s3.Config {
	return s3.Config{Endpoint: addr, Bucket: s.Bucket, Prefix: prefix, AccessKey: AccessKey, SecretKey: SecretKey,
		Insecure: true, PathStyle: true, Retries: 4, Timeout: 20 * time.Second}
}

// Remote returns an s3.Remote for the bucket under prefix, straight to the server.
func (s *Server) Remote(t testing.TB, prefix string) *s3.Remote {
	t.Helper()
	r, err := s3.New(s.Config(s.Addr, prefix))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Objects returns the names and sizes of the objects under prefix, read
// from the server's directory.
func (s *Server) Objects(t testing.TB, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	base := filepath.Join(s.Dir, s.Bucket)
	filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, prefix) && !strings.HasPrefix(rel, ".sgwtmp") {
			out[strings.TrimPrefix(rel, prefix)] = fi.Size()
		}
		return nil
	})
	return out
}

// Fault is what the proxy does to the requests it lets through.
type Fault int

const (
	None     Fault = iota
	Drop           // close the connection without answering
	Error500       // 500 InternalError
	SlowDown       // 503 SlowDown
	Truncate       // answer, but cut the body short
	Delay          // wait Proxy.Delay, then pass on
	Deny           // 403 AccessDenied (not retryable)
)

// Proxy is a reverse proxy in front of a Server that injects faults.
type Proxy struct {
	Addr  string
	Delay time.Duration

	mu      sync.Mutex
	fault   Fault
	times   int // faults left to inject (<0: every request)
	methods string
	hits    atomic.Int64
	faults  atomic.Int64
	srv     *http.Server
}

// Proxy starts a fault-injecting proxy in front of s, stopped when the test ends.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	target, _ := url.Parse("http://" + s.Addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String()}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		f := p.take(r.Method)
		if f != None {
			p.faults.Add(1)
		}
		switch f {
		case Drop:
			if hj, ok := w.(http.Hijacker); ok {
				io.Copy(io.Discard, r.Body)
				c, _, err := hj.Hijack()
				if err == nil {
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
			return
		case Error500:
			io.Copy(io.Discard, r.Body)
			writeErr(w, 500, "InternalError", "injected internal error")
			return
		case SlowDown:
			io.Copy(io.Discard, r.Body)
			writeErr(w, 503, "SlowDown", "Please reduce your request rate.")
			return
		case Deny:
			io.Copy(io.Discard, r.Body)
			writeErr(w, 403, "AccessDenied", "Access Denied.")
			return
		case Delay:
			time.Sleep(p.Delay)
		case Truncate:
			rec := &truncWriter{ResponseWriter: w}
			rp.ServeHTTP(rec, r)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(l)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>injected</RequestId></Error>`, code, msg)
}

// truncWriter passes the status and headers on and cuts the body after
// half of it (at most 4 KiB), then the connection is closed.
type truncWriter struct {
	http.ResponseWriter
	written int
	status  int
}

func (tw *truncWriter) WriteHeader(code int) {
	tw.status = code
	tw.ResponseWriter.WriteHeader(code)
}

func (tw *truncWriter) Write(b []byte) (int, error) {
	if tw.status >= 300 {
		return tw.ResponseWriter.Write(b)
	}
	limit := 100
	if tw.written >= limit {
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	n := min(len(b), limit-tw.written)
	tw.ResponseWriter.Write(b[:n])
	tw.written += n
	if n < len(b) {
		if f, ok := tw.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	return n, nil
}

// Set makes the proxy inject f into the next n requests (n < 0: all of
// them) whose method is one of methods ("" = any, else e.g. "PUT GET").
func (p *Proxy) Set(f Fault, n int, methods string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.times, p.methods = f, n, methods
}

// Clear stops injecting faults.
func (p *Proxy) Clear() { p.Set(None, 0, "") }

// Faults returns how many faults were injected so far.
func (p *Proxy) Faults() int64 { return p.faults.Load() }

// Hits returns how many requests reached the proxy.
func (p *Proxy) Hits() int64 { return p.hits.Load() }

func (p *Proxy) take(method string) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == None || p.times == 0 {
		return None
	}
	if p.methods != "" && !strings.Contains(" "+p.methods+" ", " "+method+" ") {
		return None
	}
	if p.times > 0 {
		p.times--
	}
	return p.fault
}
