package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// DefaultSocket is where the daemon listens for xs-admin, relative to its data directory.
const DefaultSocket = "admin.sock"

// Serve answers admin requests on a unix socket at path (mode 0600: only
// the daemon's user, and root, may use it) until ctx is done. It is Listen,
// then ServeListener.
func Serve(ctx context.Context, svc *Service, path string) error {
	ln, err := Listen(path)
	if err != nil {
		return err
	}
	return ServeListener(ctx, svc, ln)
}

// Listen makes the admin socket at path (mode 0600). It replaces a socket a
// crashed daemon left, but refuses a path that holds anything else (a file
// it would delete) or a socket another daemon still answers on (staff would
// reach the wrong store), and a path too long for a unix socket.
func Listen(path string) (net.Listener, error) {
	if len(path) >= len(syscall.RawSockaddrUnix{}.Path) {
		return nil, errkind.Errorf(errkind.BadRequest, "admin socket %s: the path is %d bytes, longer than a unix socket's path may be (%d): set admin_socket to a shorter one", path, len(path), len(syscall.RawSockaddrUnix{}.Path)-1)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, errkind.Errorf(errkind.Exists, "admin socket %s: something that is not a socket is there; move it away or set admin_socket elsewhere", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, errkind.Errorf(errkind.Locked, "admin socket %s: another daemon answers there", path)
		}
		os.Remove(path) // left by a daemon that crashed
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	// Made 0600 from the start (the chmod below alone left a moment where
	// a permissive umask let anyone connect). The umask is the process's:
	// a file another goroutine creates meanwhile is only made stricter.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ServeListener answers admin requests on ln, a unix socket made by Listen,
// until ctx is done; then it removes the socket.
func ServeListener(ctx context.Context, svc *Service, ln net.Listener) error {
	path := ln.Addr().String()
	// Calls keep running past ctx (a staff restore in progress finishes):
	// at ctx's end the socket stops accepting and Serve returns once the
	// calls in progress are done, or after 20 s.
	srv := &http.Server{Handler: Handler(svc), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
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
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// requestReadTimeout bounds the reading of a request's body (at most
// MaxRequestBytes): a tool that sent its headers and then stalled would
// hold its connection, and a goroutine of the daemon, for as long as it
// lived.
var requestReadTimeout = 10 * time.Second // a variable for the tests

// bodyOf returns r's body, to be read within requestReadTimeout. Only the
// reading is bounded: the call it asks for (a check, a restore) takes as
// long as it takes.
func bodyOf(w http.ResponseWriter, r *http.Request) io.Reader {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(requestReadTimeout)) != nil {
		return r.Body
	}
	return &deadlineBody{r: r.Body, rc: rc}
}

// deadlineBody lifts the read deadline once the body has been read to
// its end. A body that failed keeps it: the server then reads what is
// left of the request before it closes or reuses the connection.
type deadlineBody struct {
	r  io.Reader
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// Handler serves the staff API over HTTP: POST /v1/call with a request
// envelope {"op": NAME, "args": REQUEST} answers a JSON response (the
// result, or the error's message and kind); POST /v1/export with
// {"op": "export", "args": ExportRequest} answers the tar stream.
func Handler(svc *Service) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/call", func(w http.ResponseWriter, r *http.Request) {
		_, c, err := decodeRequest(bodyOf(w, r))
		if err != nil {
			writeResp(w, nil, err)
			return
		}
		res, err := c(r.Context(), svc)
		writeResp(w, res, err)
	})
	mux.HandleFunc("POST /v1/export", func(w http.ResponseWriter, r *http.Request) {
		var req ExportRequest
		env, err := readRequest(bodyOf(w, r))
		if err == nil && env.Op != req.Op() {
			err = fmt.Errorf("%w: /v1/export answers export, not %q", ErrInvalid, env.Op)
		}
		if err == nil {
			if err = decodeStrict(env.Args, &req); err != nil {
				err = fmt.Errorf("%w: arguments of export: %v", ErrInvalid, err)
			}
		}
		if err != nil {
			w.Header().Set("X-Error", "1")
			writeResp(w, nil, err)
			return
		}
		started := false
		err = svc.Export(r.Context(), req, func(total int64) {
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

// response is the answer to a call: the result, or the error.
type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	// Kind is the error's errkind.Kind (0: none known), so that xs-admin
	// chooses the same message and exit code through the socket as on a
	// stopped daemon.
	Kind errkind.Kind `json:"kind,omitempty"`
}

// errResponse is the answer carrying err.
func errResponse(err error) response {
	r := response{Error: err.Error()}
	if k := errkind.Of(err); k != errkind.Internal {
		r.Kind = k
	}
	return r
}

// err rebuilds the error of an answer: its message as sent, its kind.
func (r response) err() error {
	if r.Error == "" {
		return nil
	}
	if !r.Kind.Valid() {
		return errors.New(r.Error)
	}
	return &remoteError{msg: r.Error, kind: &errkind.Error{Kind: r.Kind}}
}

// remoteError is an error the daemon answered: its message, unchanged, and
// its kind (errors.Is matches the kind's sentinel; errkind.Of finds it).
type remoteError struct {
	msg  string
	kind *errkind.Error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func writeResp(w http.ResponseWriter, res any, err error) {
	var out response
	if err != nil {
		out = errResponse(err)
	} else if out.Result, err = json.Marshal(res); err != nil {
		out = errResponse(fmt.Errorf("encode the result: %w", err))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// Trailers of an export stream (base64 of JSON).
const (
	trailerDamaged = "X-Damaged" // []restore.DamagedFile left out
	trailerError   = "X-Export-Error"
)

// Client makes the staff API's typed calls: through a running daemon's
// admin socket (Dial) or in this process on a store (Local). Its methods
// are Service's, with the same requests, results and error kinds.
type Client struct {
	hc  *http.Client // through the socket; nil for a local client
	svc *Service     // in-process; nil through the socket
}

// ErrNoDaemon: nothing answers at the admin socket (no socket file, or no
// process listening on it): the daemon is not running there.
var ErrNoDaemon = errors.New("no daemon answers")

// Dial returns a client of the daemon listening on the admin socket at
// path. The error wraps ErrNoDaemon if no daemon listens there, and is of
// kind Permission if this user may not use the socket.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG):
		// No socket, nobody listening, or a path no socket can have (too
		// long, or through a file): no daemon there.
		return nil, fmt.Errorf("admin socket %s: %w", path, ErrNoDaemon)
	case errors.Is(err, fs.ErrPermission):
		return nil, errkind.Errorf(errkind.Permission, "admin socket %s: this user may not use it", path)
	case err != nil:
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	conn.Close()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	return &Client{hc: hc}, nil
}

// Local returns a client that runs calls in this process on svc (the
// daemon is stopped and the caller has opened the store).
func Local(svc *Service) *Client { return &Client{svc: svc} }

// Remote reports whether calls go to a daemon through its socket.
func (c *Client) Remote() bool { return c.hc != nil }

// maxAnswerBytes caps an answer from the daemon (a listing of a big
// snapshot's files is the largest).
const maxAnswerBytes = 256 << 20

// do runs req: in-process with run, or through the socket.
func do[Req Request, Res any](ctx context.Context, c *Client, run func(*Service, context.Context, Req) (Res, error), req Req) (Res, error) {
	if c.svc != nil {
		return run(c.svc, ctx, req)
	}
	var out Res
	body, err := json.Marshal(struct {
		Op   string `json:"op"`
		Args Req    `json:"args"`
	}{req.Op(), req})
	if err != nil {
		return out, err
	}
	hreq, err := http.NewRequestWithContext(ctx, "POST", "http://xs-backupd/v1/call", bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return out, fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Not this API: a daemon of another version (upgraded but not
		// restarted) answers 404 to a path it does not serve.
		return out, fmt.Errorf("admin socket: the daemon answered %q to %s (is the daemon another version than this client?)", resp.Status, req.Op())
	}
	var r response
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(&r); err != nil {
		return out, fmt.Errorf("admin socket: bad answer: %w", err)
	}
	if err := r.err(); err != nil {
		return out, err
	}
	if err := json.Unmarshal(r.Result, &out); err != nil {
		return out, fmt.Errorf("admin socket: bad %s result: %w", req.Op(), err)
	}
	return out, nil
}

// Users is Service.Users.
func (c *Client) Users(ctx context.Context, r UsersRequest) ([]UserRow, error) {
	return do(ctx, c, (*Service).Users, r)
}

// Pending is Service.Pending.
func (c *Client) Pending(ctx context.Context, r PendingRequest) ([]PendingRow, error) {
	return do(ctx, c, (*Service).Pending, r)
}

// Snapshots is Service.Snapshots.
func (c *Client) Snapshots(ctx context.Context, r SnapshotsRequest) ([]*store.Snapshot, error) {
	return do(ctx, c, (*Service).Snapshots, r)
}

// Approve is Service.Approve.
func (c *Client) Approve(ctx context.Context, r ApproveRequest) (*store.User, error) {
	return do(ctx, c, (*Service).Approve, r)
}

// Revoke is Service.Revoke.
func (c *Client) Revoke(ctx context.Context, r RevokeRequest) (*store.User, error) {
	return do(ctx, c, (*Service).Revoke, r)
}

// Unrevoke is Service.Unrevoke.
func (c *Client) Unrevoke(ctx context.Context, r UnrevokeRequest) (*store.User, error) {
	return do(ctx, c, (*Service).Unrevoke, r)
}

// ClaimCode is Service.ClaimCode.
func (c *Client) ClaimCode(ctx context.Context, r ClaimCodeRequest) (ClaimResult, error) {
	return do(ctx, c, (*Service).ClaimCode, r)
}

// Register is Service.Register.
func (c *Client) Register(ctx context.Context, r RegisterRequest) (*store.User, error) {
	return do(ctx, c, (*Service).Register, r)
}

// Alias is Service.Alias.
func (c *Client) Alias(ctx context.Context, r AliasRequest) (*store.User, error) {
	return do(ctx, c, (*Service).Alias, r)
}

// Check is Service.Check.
func (c *Client) Check(ctx context.Context, r CheckRequest) (*store.CheckReport, error) {
	return do(ctx, c, (*Service).Check, r)
}

// Repair is Service.Repair (the daemon refuses it).
func (c *Client) Repair(ctx context.Context, r RepairRequest) (*store.RepairReport, error) {
	return do(ctx, c, (*Service).Repair, r)
}

// Damaged is Service.Damaged.
func (c *Client) Damaged(ctx context.Context, r DamagedRequest) ([]DamagedRow, error) {
	return do(ctx, c, (*Service).Damaged, r)
}

// Scrub is Service.Scrub.
func (c *Client) Scrub(ctx context.Context, r ScrubRequest) (*store.ScrubReport, error) {
	return do(ctx, c, (*Service).Scrub, r)
}

// Status is Service.Status.
func (c *Client) Status(ctx context.Context, r StatusRequest) (*StatusResult, error) {
	return do(ctx, c, (*Service).Status, r)
}

// Retention is Service.Retention.
func (c *Client) Retention(ctx context.Context, r RetentionRequest) (*store.RetentionReport, error) {
	return do(ctx, c, (*Service).Retention, r)
}

// Quota is Service.Quota.
func (c *Client) Quota(ctx context.Context, r QuotaRequest) ([]QuotaRow, error) {
	return do(ctx, c, (*Service).Quota, r)
}

// Policy is Service.Policy.
func (c *Client) Policy(ctx context.Context, r PolicyRequest) (PolicyRow, error) {
	return do(ctx, c, (*Service).Policy, r)
}

// Pin is Service.Pin.
func (c *Client) Pin(ctx context.Context, r PinRequest) (*store.Snapshot, error) {
	return do(ctx, c, (*Service).Pin, r)
}

// Unpin is Service.Unpin.
func (c *Client) Unpin(ctx context.Context, r UnpinRequest) (*store.Snapshot, error) {
	return do(ctx, c, (*Service).Unpin, r)
}

// GC is Service.GC.
func (c *Client) GC(ctx context.Context, r GCRequest) (*GCResult, error) {
	return do(ctx, c, (*Service).GC, r)
}

// RunLifecycle is Service.RunLifecycle.
func (c *Client) RunLifecycle(ctx context.Context, r LifecycleRequest) (*store.LifecycleReport, error) {
	return do(ctx, c, (*Service).RunLifecycle, r)
}

// List is Service.List.
func (c *Client) List(ctx context.Context, r ListRequest) (*Listing, error) {
	return do(ctx, c, (*Service).List, r)
}

// RestoreLink is Service.RestoreLink.
func (c *Client) RestoreLink(ctx context.Context, r RestoreLinkRequest) (LinkResult, error) {
	return do(ctx, c, (*Service).RestoreLink, r)
}

// Export runs an export (Service.Export); fn reads the tar stream (total
// is the number of content bytes to come). Damaged files left out of a
// complete archive are a *restore.DamagedError after fn returns.
func (c *Client) Export(ctx context.Context, r ExportRequest, fn func(total int64, r io.Reader) error) error {
	if c.svc != nil {
		return c.exportLocal(ctx, r, fn)
	}
	body, _ := json.Marshal(struct {
		Op   string        `json:"op"`
		Args ExportRequest `json:"args"`
	}{r.Op(), r})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://xs-backupd/v1/export", bytes.NewReader(body))
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

// exportLocal runs an export in this process: Service.Export writes into
// a pipe that fn reads, as fn would read the daemon's stream.
func (c *Client) exportLocal(ctx context.Context, r ExportRequest, fn func(total int64, r io.Reader) error) error {
	pr, pw := io.Pipe()
	started := make(chan int64, 1)
	done := make(chan error, 1)
	go func() {
		err := c.svc.Export(ctx, r, func(total int64) { started <- total }, pw)
		close(started)
		var de *restore.DamagedError
		if errors.As(err, &de) {
			pw.Close() // the archive is complete without the damaged files
		} else {
			pw.CloseWithError(err)
		}
		done <- err
	}()
	total, ok := <-started
	if !ok {
		io.Copy(io.Discard, pr)
		return <-done
	}
	ferr := fn(total, pr)
	if ferr != nil {
		pr.CloseWithError(ferr) // stops the export
	} else {
		io.Copy(io.Discard, pr)
	}
	if err := <-done; err != nil {
		return err
	}
	return ferr
}
