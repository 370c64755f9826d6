package server

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// LoadOrCreateKey reads the server's ed25519 key from path, creating it
// (mode 0600) if it does not exist.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := proto.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, err
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(hex.EncodeToString(key.Seed())+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, os.Rename(tmp, path)
	}
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not a server key; restore it from a backup (laptops pinned it) or remove it and re-register every laptop", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Daemon is a running school server.
type Daemon struct {
	Config  Config
	Store   *store.Store
	Server  *proto.Server
	Metrics *proto.Metrics
	Log     *slog.Logger
	// Addr is the UDP address the protocol listens on, once Run has started.
	Addr net.Addr
	// PageAddr is the TCP address of the restore page (nil if disabled).
	PageAddr net.Addr
	// Ready is closed when the daemon accepts connections.
	Ready chan struct{}

	life lifeStats
}

// NewDaemon opens the store and prepares the server.
func NewDaemon(ctx context.Context, cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	policy := cfg.Retention
	opts := store.Options{Reserve: int64(cfg.Reserve), DefaultQuota: store.Quota{Soft: int64(cfg.Quota.Soft), Hard: int64(cfg.Quota.Hard)},
		Retention: &policy, PendingExpiry: time.Duration(cfg.Lifecycle.PendingExpiry), CompactBelow: cfg.Lifecycle.CompactBelow, ScrubDays: cfg.Lifecycle.ScrubDays,
		Hook: cfg.Hook, Now: cfg.Now}
	if cfg.Reserve == 0 {
		opts.Reserve = -1
	}
	if cfg.Chunker != nil {
		opts.Params = *cfg.Chunker
	}
	st, err := store.Open(ctx, cfg.Data, opts)
	if err != nil {
		return nil, err
	}
	key, err := LoadOrCreateKey(filepath.Join(cfg.Data, "server.key"))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("server key: %w", err)
	}
	m := proto.NewMetrics()
	be := &Backend{S: st, OpenRegistration: cfg.Registration == "open", MaxPending: cfg.MaxPending}
	if cfg.OpenApprovalsPerHour > 0 {
		be.OpenBurst, be.OpenEvery = cfg.OpenApprovalsPerHour, time.Hour/time.Duration(cfg.OpenApprovalsPerHour)
	}
	pacing, err := cfg.Traffic.pacing()
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := proto.NewServer(proto.ServerConfig{
		Backend: be,
		Key:     key,
		Admission: proto.AdmissionConfig{MaxSessions: cfg.Admission.MaxSessions, SmallBytes: int64(cfg.Admission.SmallBytes),
			Hold: time.Duration(cfg.Admission.Hold)},
		Pacing:          pacing,
		FixedWindow:     cfg.FixedWindow,
		SessionDeadline: time.Duration(cfg.SessionDeadline),
		MinRate:         int64(cfg.MinRate),
		MaxConns:        cfg.MaxConnections,
		Limits:          cfg.Limits,
		Logger:          log,
		Metrics:         m,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Daemon{Config: cfg, Store: st, Server: srv, Metrics: m, Log: log, Ready: make(chan struct{})}, nil
}

// Run serves until ctx is done, then shuts down cleanly: requests in
// progress finish (at most 20 s), the store is closed. Everything
// acknowledged to a laptop was durable before it was acknowledged.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Store.Close()
	pc, err := net.ListenPacket("udp", d.Config.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another xs-backupd running?)", d.Config.Listen, err)
	}
	defer pc.Close()
	d.Addr = pc.LocalAddr()
	var hs *http.Server
	if d.Config.Metrics != "" {
		ln, err := net.Listen("tcp", d.Config.Metrics)
		if err != nil {
			return fmt.Errorf("metrics listener on %s: %w", d.Config.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			d.WriteMetrics(w)
		})
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
		d.Log.Info("metrics", "addr", ln.Addr().String())
	}
	sock := d.Config.AdminSocket
	if sock == "" {
		sock = filepath.Join(d.Config.Data, admin.DefaultSocket)
	}
	if d.Config.RestorePage.Listen != "" {
		ln, err := net.Listen("tcp", d.Config.RestorePage.Listen)
		if err != nil {
			return fmt.Errorf("restore page listener on %s: %w (set [restore_page] listen, or \"\" to disable it)", d.Config.RestorePage.Listen, err)
		}
		page := &RestorePage{Store: d.Store, ServerKey: d.Server.PublicKey(), Log: d.Log,
			CacheBytes: int64(d.Config.RestorePage.CacheBytes), Concurrent: d.Config.RestorePage.Concurrent}
		ws := &http.Server{Handler: page.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		go ws.Serve(ln)
		defer ws.Close()
		d.PageAddr = ln.Addr()
		announce := d.Config.RestorePage.URL
		if announce == "" {
			announce = fmt.Sprintf(":%d", ln.Addr().(*net.TCPAddr).Port)
		}
		d.Server.SetRestorePage(announce)
		d.Log.Info("restore page", "addr", ln.Addr().String(), "announced", announce)
	}
	errc := make(chan error, 2)
	go func() {
		if err := admin.Serve(ctx, &admin.Service{S: d.Store, Live: true, Lifecycle: d.RunLifecycle, Link: d.StaffLink,
			LinkLifetime: time.Duration(d.Config.RestorePage.StaffLink), Admission: func() proto.AdmissionStatus { return d.Server.Admission(true) }}, sock); err != nil {
			errc <- err
		}
	}()
	go func() { errc <- d.Server.Serve(ctx, pc) }()
	if h, m, ok, _ := d.Config.lifecycleAt(); ok {
		go d.nightly(ctx, h, m)
	}
	d.Log.Info("xs-backupd ready", "listen", d.Addr.String(), "data", d.Config.Data,
		"server_key", proto.Fingerprint(d.Server.PublicKey()), "admin_socket", sock, "registration", d.Config.Registration, "max_sessions", d.Config.Admission.MaxSessions)
	close(d.Ready)
	notifySystemd("READY=1")
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	notifySystemd("STOPPING=1")
	d.Log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Server.Shutdown(sctx); err != nil {
		d.Log.Warn("shutdown: requests still running were cut off", "err", err)
	}
	return nil
}

// WriteMetrics writes the protocol's and the lifecycle's metrics in the
// Prometheus text format (what /metrics serves).
func (d *Daemon) WriteMetrics(w io.Writer) {
	d.Metrics.WriteTo(w)
	d.life.writeMetrics(w)
	if dmg, err := d.Store.Damaged(context.Background()); err == nil {
		fmt.Fprintf(w, "# HELP xs_store_damaged_blobs Blobs with no intact copy on the server, waiting for a laptop to send them again.\n# TYPE xs_store_damaged_blobs gauge\nxs_store_damaged_blobs %d\n", len(dmg))
	}
}

// notifySystemd sends a state to systemd (Type=notify) if NOTIFY_SOCKET is set.
func notifySystemd(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// StaffLink returns a restore page link for a laptop, signed by the
// server's key (for staff: xs-admin restore-link), valid for lifetime.
func (d *Daemon) StaffLink(serial string, lifetime time.Duration) (string, error) {
	if d.PageAddr == nil {
		return "", errors.New("the restore page is disabled ([restore_page] listen in xs-backup.toml)")
	}
	u, err := d.Store.UserBySerial(serial)
	if err != nil {
		return "", err
	}
	base := d.Config.RestorePage.URL
	if base == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "localhost"
		}
		base = fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(d.PageAddr.(*net.TCPAddr).Port)))
	}
	tok := d.Server.SignLink(proto.LinkClaims{Serial: u.Serial, Expires: time.Now().Add(lifetime).Truncate(time.Second)})
	return strings.TrimSuffix(base, "/") + "/r/" + tok + "/", nil
}

// CrashHook parses a crash-test spec "POINT:N" (see store.HookPoints) and
// returns a hook that kills this process with SIGKILL the N-th time the
// store reaches POINT. xs-backupd installs it from the XS_TEST_CRASH
// environment variable; it exists for the crash tests.
func CrashHook(spec string) (func(string), error) {
	i := strings.LastIndexByte(spec, ':')
	ok := i > 0
	point, n := spec[:max(i, 0)], spec[i+1:]
	at, err := strconv.Atoi(n)
	if !ok || err != nil || at < 1 || !slices.Contains(store.HookPoints, point) {
		return nil, fmt.Errorf("crash spec %q: want POINT:N with POINT one of %v", spec, store.HookPoints)
	}
	var mu sync.Mutex
	hits := 0
	return func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		hits++
		h := hits
		mu.Unlock()
		if h == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}, nil
}
