package server

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// LoadOrCreateKey reads the server's ed25519 key from path, creating it
// (mode 0600) if it does not exist. A new key is written atomically and
// fsynced (atomicfile.WriteFile) before it is returned: a power cut right
// after the first start leaves no key or the whole key, never an empty
// one that every laptop's pin would then disagree with.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := atomicfile.ReadCapped(path, proto.MaxKeyFile)
	if errors.Is(err, os.ErrNotExist) {
		key, err := proto.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(path, proto.EncodeKey(key), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil && !errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, err
	}
	key, ok := proto.DecodeKey(b)
	if !ok {
		return nil, fmt.Errorf("%s is not a server key; restore it from a backup (laptops pinned it) or remove it and re-register every laptop", path)
	}
	return key, nil
}

// writePublicKey keeps server.pub (the public key in hex) beside the key:
// staff give it to a mothership (a school's key) or to schools (a
// mothership's key).
func writePublicKey(dir string, key ed25519.PrivateKey) error {
	p := filepath.Join(dir, "server.pub")
	want := hex.EncodeToString(key.Public().(ed25519.PublicKey)) + "\n"
	if b, err := os.ReadFile(p); err == nil && string(b) == want {
		return nil
	}
	if err := atomicfile.WriteFile(p, []byte(want), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
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
	// PageAddr is the TCP address of the restore page (nil if disabled);
	// MetricsAddr the address of /metrics (nil if disabled).
	PageAddr, MetricsAddr net.Addr
	// Ready is closed when the daemon accepts connections.
	Ready chan struct{}

	life     lifeStats
	registry *prometheus.Registry // what /metrics serves (metrics.go)
	offsite  *offsiteRunner       // replication to the mothership (nil: none)
	key      ed25519.PrivateKey
}

// StoreOptions sets in opts what the configuration says about the store:
// its reserve, default quota and retention policy, the lifecycle's expiry,
// compaction and scrub settings, the chunker parameters and where the packs
// live. The daemon opens its store with them, and so does anything that
// opens the configured store while the daemon is stopped, so that (say) a
// retention run by hand keeps what the configured policy keeps.
func (cfg Config) StoreOptions(ctx context.Context, opts *store.Options) error {
	policy := cfg.Retention
	opts.Reserve = int64(cfg.Reserve)
	if cfg.Reserve == 0 {
		opts.Reserve = -1
	}
	opts.DefaultQuota = store.Quota{Soft: int64(cfg.Quota.Soft), Hard: int64(cfg.Quota.Hard)}
	opts.Retention = &policy
	opts.PendingExpiry = time.Duration(cfg.Lifecycle.PendingExpiry)
	opts.CompactBelow = cfg.Lifecycle.CompactBelow
	opts.ScrubDays = cfg.Lifecycle.ScrubDays
	if cfg.Chunker != nil {
		opts.Params = *cfg.Chunker
	}
	return cfg.Storage.StoreOptions(ctx, opts)
}

// NewDaemon opens the store and prepares the server. A nil log logs
// nothing. Staff actions on a running daemon (approving a laptop, pins,
// restores) go through admin.Service with Live set, as the admin socket
// does.
func NewDaemon(ctx context.Context, cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := store.Options{Hook: cfg.Hook, Now: cfg.Now}
	if err := cfg.StoreOptions(ctx, &opts); err != nil {
		return nil, err
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
	if err := writePublicKey(cfg.Data, key); err != nil {
		st.Close()
		return nil, err
	}
	if cfg.Role == "mothership" {
		// A school commits every snapshot of every laptop (a first sync,
		// a school's whole history): the laptops' commit rate does not
		// apply to the schools, accounts its staff approved.
		cfg.Limits.CommitBurst, cfg.Limits.CommitEvery = math.MaxInt32, time.Nanosecond
	}
	m := proto.NewMetrics()
	be := &Backend{S: st, OpenRegistration: cfg.Registration == "open", MaxPending: cfg.MaxPending, Mothership: cfg.Role == "mothership", Key: key}
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
		Now:             cfg.Now,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	d := &Daemon{Config: cfg, Store: st, Server: srv, Metrics: m, Log: log, Ready: make(chan struct{}), key: key}
	if err := d.loadOffsite(); err != nil {
		st.Close()
		return nil, err
	}
	d.registry = newRegistry(d)
	return d, nil
}

// ShutdownGrace is how long requests in progress (uploads, commits,
// restores, admin calls, page downloads) may run on after a stop signal.
const ShutdownGrace = 20 * time.Second

// Run serves until ctx is done, then shuts down in order: stop accepting
// anything new; let requests in progress finish (at most ShutdownGrace:
// they keep their own contexts, so a laptop in the middle of an upload is
// not cut off by the signal); stop the nightly run at a safe point; join
// every goroutine Run started; close the store last. Everything
// acknowledged to a laptop was durable before it was acknowledged.
func (d *Daemon) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := d.Store.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	pc, err := net.ListenPacket("udp", d.Config.Listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: %w (another process, perhaps another xs-backupd, has that port)", d.Config.Listen, err)
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w", d.Config.Listen, err)
	}
	defer pc.Close()
	d.Addr = pc.LocalAddr()
	// The admin socket exists before the daemon says it is ready (xs-admin
	// right after systemctl start finds it), and a path that cannot work
	// fails the start instead of a daemon that said it was ready.
	sock := d.Config.AdminSocket
	if sock == "" {
		sock = filepath.Join(d.Config.Data, admin.DefaultSocket)
	}
	adminLn, err := admin.Listen(sock)
	if err != nil {
		return err
	}
	adminServed := false
	defer func() {
		if !adminServed {
			adminLn.Close()
			os.Remove(sock)
		}
	}()

	// serveCtx outlives the signal: it carries requests in progress and
	// ends only when they are done (or the grace period is over).
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		runErr  error
		failed  = make(chan struct{})
		failOne sync.Once
	)
	fail := func(err error) {
		if err == nil {
			return
		}
		errMu.Lock()
		if runErr == nil {
			runErr = err
		}
		errMu.Unlock()
		failOne.Do(func() { close(failed) })
	}
	spawn := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail(fn())
		}()
	}
	var https []*http.Server
	serveHTTP := func(ln net.Listener, h http.Handler, readHeader time.Duration) {
		hs := &http.Server{Handler: h, ReadHeaderTimeout: readHeader, IdleTimeout: time.Minute,
			BaseContext: func(net.Listener) context.Context { return serveCtx }}
		https = append(https, hs)
		spawn(func() error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	// Listeners first, so that a bad address fails before anything runs.
	var metricsLn, pageLn net.Listener
	if d.Config.Metrics != "" {
		if metricsLn, err = net.Listen("tcp", d.Config.Metrics); err != nil {
			return fmt.Errorf("metrics listener on %s: %w", d.Config.Metrics, err)
		}
	}
	if d.Config.RestorePage.Listen != "" {
		if pageLn, err = net.Listen("tcp", d.Config.RestorePage.Listen); err != nil {
			if metricsLn != nil {
				metricsLn.Close()
			}
			return fmt.Errorf("restore page listener on %s: %w (set [restore_page] listen, or \"\" to disable it)", d.Config.RestorePage.Listen, err)
		}
	}
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.MetricsHandler())
		serveHTTP(metricsLn, mux, 5*time.Second)
		d.MetricsAddr = metricsLn.Addr()
		d.Log.Info("metrics", "addr", metricsLn.Addr().String())
	}
	if pageLn != nil {
		page := &RestorePage{Store: d.Store, ServerKey: d.Server.PublicKey(), Log: d.Log,
			CacheBytes: int64(d.Config.RestorePage.CacheBytes), Concurrent: d.Config.RestorePage.Concurrent}
		serveHTTP(pageLn, page.Handler(), 10*time.Second)
		d.PageAddr = pageLn.Addr()
		announce := d.Config.RestorePage.URL
		if announce == "" {
			announce = fmt.Sprintf(":%d", pageLn.Addr().(*net.TCPAddr).Port)
		}
		d.Server.SetRestorePage(announce)
		d.Log.Info("restore page", "addr", pageLn.Addr().String(), "announced", announce)
	}
	adminCtx, stopAdmin := context.WithCancel(serveCtx)
	defer stopAdmin()
	adminServed = true
	spawn(func() error {
		return admin.ServeListener(adminCtx, &admin.Service{S: d.Store, Live: true, Lifecycle: d.RunLifecycle, Link: d.StaffLink,
			LinkLifetime: time.Duration(d.Config.RestorePage.StaffLink), Admission: func() proto.AdmissionStatus { return d.Server.Admission(true) }, Sync: d.adminSync()}, adminLn)
	})
	spawn(func() error { return d.Server.Serve(serveCtx, pc) })
	// The nightly run stops at the signal, at its next safe point (every
	// step of the lifecycle checks its context between batches).
	nightCtx, stopNight := context.WithCancel(ctx)
	defer stopNight()
	if h, m, ok, _ := d.Config.lifecycleAt(); ok {
		spawn(func() error { d.nightly(nightCtx, h, m); return nil })
	}
	if d.offsite != nil {
		spawn(func() error { d.offsiteLoop(nightCtx); return nil })
	}
	d.Log.Info("xs-backupd ready", "listen", d.Addr.String(), "data", d.Config.Data,
		"server_key", proto.Fingerprint(d.Server.PublicKey()), "admin_socket", sock, "registration", d.Config.Registration, "max_sessions", d.Config.Admission.MaxSessions)
	close(d.Ready)
	notifySystemd("READY=1")
	select {
	case <-ctx.Done():
	case <-failed:
	}
	notifySystemd("STOPPING=1")
	d.Log.Info("shutting down: requests in progress may finish", "grace", ShutdownGrace)
	stopNight()
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	if err := d.Server.Shutdown(grace); err != nil {
		d.Log.Warn("shutdown: uploads still running were cut off", "err", err)
	}
	for _, hs := range https {
		if err := hs.Shutdown(grace); err != nil {
			d.Log.Warn("shutdown: page requests still running were cut off", "err", err)
			hs.Close()
		}
	}
	stopAdmin() // admin.Serve lets calls in progress finish within its own grace
	stopServing()
	wg.Wait()
	d.Log.Info("stopped")
	errMu.Lock()
	defer errMu.Unlock()
	return runErr
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
	tok := d.Server.SignLink(StaffLinkClaims(u, time.Now().Add(lifetime).Truncate(time.Second)))
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
