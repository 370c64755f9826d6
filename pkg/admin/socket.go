package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/xs-backup/xs-backup/pkg/restore"
)

// DefaultSocket is where the daemon listens for xs-admin, relative to its data directory.
const DefaultSocket = "admin.sock"

// Serve answers admin commands on a unix socket at path (mode 0600: only
// the daemon's user, and root, may use it) until ctx is done.
func Serve(ctx context.Context, svc *Service, path string) error {
	os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	// Calls keep running past ctx (a staff restore in progress finishes):
	// at ctx's end the socket stops accepting and Serve returns once the
	// calls in progress are done, or after 20 s.
	srv := &http.Server{Handler: Handler(svc), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		grace, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if srv.Shutdown(grace) != nil {
			srv.Close()
		}
		os.Remove(path)
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// Handler serves POST /v1/do with a JSON {cmd, args} body.
func Handler(svc *Service) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/do", func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			writeResp(w, nil, fmt.Errorf("%w: malformed request: %v", ErrUsage, err))
			return
		}
		res, err := svc.Do(r.Context(), req.Cmd, req.Args)
		writeResp(w, res, err)
	})
	mux.HandleFunc("POST /v1/export", func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			writeResp(w, nil, fmt.Errorf("%w: malformed request: %v", ErrUsage, err))
			return
		}
		started := false
		err := svc.Export(r.Context(), req.Args, func(total int64) {
			w.Header().Set("Content-Type", "application/x-tar")
			w.Header().Set("X-Total-Bytes", strconv.FormatInt(total, 10))
			// Known only at the end: what was left out, or why the stream
			// stopped (never a bare EOF for the client).
			w.Header().Set("Trailer", trailerDamaged+", "+trailerError)
			w.WriteHeader(http.StatusOK)
			started = true
		}, w)
		if err != nil && !started {
			w.Header().Set("X-Error", "1")
			writeResp(w, nil, err)
			return
		}
		var de *restore.DamagedError
		if errors.As(err, &de) {
			b, _ := json.Marshal(de.Files)
			w.Header().Set(trailerDamaged, base64.StdEncoding.EncodeToString(b))
		} else if err != nil {
			b, _ := json.Marshal(errResponse(err))
			w.Header().Set(trailerError, base64.StdEncoding.EncodeToString(b))
		}
	})
	return mux
}

func writeResp(w http.ResponseWriter, res any, err error) {
	var out response
	if err != nil {
		out = errResponse(err)
	} else {
		out.Result, _ = json.Marshal(res)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// Trailers of an export stream (base64 of JSON).
const (
	trailerDamaged = "X-Damaged" // []restore.DamagedFile left out
	trailerError   = "X-Export-Error"
)

// Client sends commands to a daemon's admin socket.
type Client struct {
	hc *http.Client
}

// Dial returns a client for the socket at path, or an error if no daemon
// answers there.
func Dial(path string) (*Client, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	c := &Client{hc: hc}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return c, nil
}

// Do runs a command in the daemon and decodes its result into out.
func (c *Client) Do(ctx context.Context, cmd string, a Args, out any) error {
	body, _ := json.Marshal(request{Cmd: cmd, Args: a})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://xs-backupd/v1/do", bytesReader(body))
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	var r response
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&r); err != nil {
		return fmt.Errorf("admin socket: bad answer: %w", err)
	}
	if err := r.err(); err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal(r.Result, out)
	}
	return nil
}

// Export runs an export in the daemon; fn reads the tar stream (total is
// the number of content bytes to come).
func (c *Client) Export(ctx context.Context, a Args, fn func(total int64, r io.Reader) error) error {
	body, _ := json.Marshal(request{Cmd: "export", Args: a})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://xs-backupd/v1/export", bytesReader(body))
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Error") != "" {
		var r response
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r); err != nil {
			return fmt.Errorf("admin socket: bad answer: %w", err)
		}
		return r.err()
	}
	total, _ := strconv.ParseInt(resp.Header.Get("X-Total-Bytes"), 10, 64)
	ferr := fn(total, resp.Body)
	// The trailers arrive after the last byte of the body.
	io.Copy(io.Discard, resp.Body)
	if v := resp.Trailer.Get(trailerError); v != "" {
		var r response
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && json.Unmarshal(b, &r) == nil && r.Error != "" {
			return fmt.Errorf("the daemon stopped the export: %w", r.err())
		}
	}
	if ferr != nil {
		return ferr
	}
	if v := resp.Trailer.Get(trailerDamaged); v != "" {
		var files []restore.DamagedFile
		b, err := base64.StdEncoding.DecodeString(v)
		if err == nil {
			err = json.Unmarshal(b, &files)
		}
		if err != nil || len(files) == 0 {
			return fmt.Errorf("admin socket: bad list of damaged files: %v", err)
		}
		return &restore.DamagedError{Files: files}
	}
	return nil
}
