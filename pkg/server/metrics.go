package server

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/xs-backup/xs-backup/internal/version"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The daemon's /metrics is one Prometheus registry (no global one) of
// collectors that read their figures when scraped:
//
//   - protoCollector: the protocol's counters and admission (proto.Metrics);
//   - lifeCollector: what the nightly lifecycle did;
//   - storeCollector: each laptop's last backup, laptops pending approval
//     or over their soft quota, the store's size and the free space
//     against the reserve, read from the store at most every
//     StoreMetricsTTL;
//   - xs_build_info, and the standard Go runtime and process collectors.
//
// README.md lists the metrics; dist/prometheus/alerts.yml alerts on them.

// StoreMetricsTTL is how long the store's figures on /metrics are reused:
// Prometheus scrapes every 15 to 60 s, and reading every laptop's usage and
// listing the pack files more often would be wasted work.
const StoreMetricsTTL = 15 * time.Second

// notBackedUpDays are the ages xs_laptops_not_backed_up counts laptops over.
var notBackedUpDays = []int{1, 7, 30}

func newRegistry(d *Daemon) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	now := d.Config.Now
	if now == nil {
		now = time.Now
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "xs_build_info",
		Help:        "Always 1; the labels say which build of xs-backupd runs.",
		ConstLabels: prometheus.Labels{"version": version.String(), "goversion": runtime.Version()}})
	build.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
		newProtoCollector(d.Metrics),
		newLifeCollector(&d.life),
		newStoreCollector(d.Store, now, StoreMetricsTTL),
	)
	if d.offsite != nil {
		reg.MustRegister(&offsiteCollector{d: d, now: now})
	}
	return reg
}

// MetricsHandler serves the daemon's metrics in the Prometheus formats
// (what the metrics listener serves on /metrics).
func (d *Daemon) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// WriteMetrics writes the daemon's metrics in the Prometheus text format.
func (d *Daemon) WriteMetrics(w io.Writer) error {
	mfs, err := d.registry.Gather()
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if eerr := enc.Encode(mf); eerr != nil {
			return eerr
		}
	}
	return err
}

// scalar is one unlabelled metric read from a V.
type scalar[V any] struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	val  func(*V) float64
}

func gauge[V any](name, help string, val func(*V) float64) scalar[V] {
	return scalar[V]{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, val}
}

func counter[V any](name, help string, val func(*V) float64) scalar[V] {
	return scalar[V]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, val}
}

func describe[V any](ch chan<- *prometheus.Desc, list []scalar[V]) {
	for _, s := range list {
		ch <- s.desc
	}
}

func collect[V any](ch chan<- prometheus.Metric, v *V, list []scalar[V]) {
	for _, s := range list {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.val(v))
	}
}

// protoCollector reads proto.Metrics at scrape time. The names are those
// of the hand-written exposition it replaced, so dashboards keep working.
type protoCollector struct {
	m          *proto.Metrics
	scalars    []scalar[proto.MetricValues]
	wait, errs *prometheus.Desc
}

func newProtoCollector(m *proto.Metrics) *protoCollector {
	type v = proto.MetricValues
	return &protoCollector{m: m,
		scalars: []scalar[v]{
			gauge("xs_connections_active", "Open laptop connections.", func(v *v) float64 { return float64(v.ConnsActive) }),
			gauge("xs_sessions_active", "Backup sessions in progress.", func(v *v) float64 { return float64(v.SessionsActive) }),
			gauge("xs_sessions_waiting", "Laptops waiting for a place (held or told when to come back).", func(v *v) float64 { return float64(v.SlotsWaiting) }),
			gauge("xs_admission_limit", "Sessions admission lets run at once now (adaptive).", func(v *v) float64 { return float64(v.Admission.Limit) }),
			gauge("xs_admission_held", "Hellos held open, waiting for a place.", func(v *v) float64 { return float64(v.Admission.Held) }),
			gauge("xs_admission_running_work_bytes", "Bytes the running sessions expected to send.", func(v *v) float64 { return float64(v.Admission.RunningWork) }),
			gauge("xs_admission_waiting_work_bytes", "Bytes the waiting laptops expect to send.", func(v *v) float64 { return float64(v.Admission.WaitingWork) }),
			gauge("xs_admission_drain_sessions_per_second", "Sessions finished per second (measured, smoothed).", func(v *v) float64 { return v.Admission.DrainPerSec }),
			gauge("xs_admission_drain_bytes_per_second", "Bytes received per second while sessions ran (measured, smoothed).", func(v *v) float64 { return v.Admission.DrainBytes }),
			counter("xs_admission_expired_total", "Waiting laptops that never came back and gave their place up.", func(v *v) float64 { return float64(v.Admission.Expired) }),
			gauge("xs_pacing_rate_bytes_per_second", "Upload rate the server paces to (+Inf: unpaced).", func(v *v) float64 { return v.PacedRate }),
			gauge("xs_queueing_delay_seconds", "Queueing delay measured on the laptops' paths (median).", func(v *v) float64 { return v.QueueDelay.Seconds() }),
			counter("xs_sessions_started_total", "Backup sessions granted.", func(v *v) float64 { return float64(v.SessionsStarted) }),
			counter("xs_slots_issued_total", "Slots handed out instead of a session.", func(v *v) float64 { return float64(v.SlotsIssued) }),
			counter("xs_connections_refused_total", "Connections refused at authentication.", func(v *v) float64 { return float64(v.Refused) }),
			counter("xs_received_bytes_total", "Frame bytes received from laptops.", func(v *v) float64 { return float64(v.BytesReceived) }),
			counter("xs_received_blobs_total", "Blobs received from laptops.", func(v *v) float64 { return float64(v.BlobsReceived) }),
			counter("xs_commits_total", "Snapshots committed.", func(v *v) float64 { return float64(v.Commits) }),
			counter("xs_commits_limited_total", "Commits refused by the per-laptop commit rate.", func(v *v) float64 { return float64(v.CommitsLimited) }),
			counter("xs_requests_abandoned_total", "Requests the laptop gave up before their answer (interrupted, hung up): many while the server is slow say laptops time out waiting.", func(v *v) float64 { return float64(v.Abandoned) }),
			counter("xs_limited_total", "Connections and requests refused by a per-device cap (connections, memory, registrations).", func(v *v) float64 { return float64(v.Limited) }),
			counter("xs_address_checks_total", "Initial packets of new connections answered with a QUIC Retry (prove your address first: new connections came faster than the server's rate, or from an address with too many handshakes in progress or started too fast); retransmissions each count.", func(v *v) float64 { return float64(v.AddressChecks) }),
			counter("xs_handshakes_refused_total", "Initial packets of new connections refused: their proved address had too many handshakes in progress or started them too fast; retransmissions each count.", func(v *v) float64 { return float64(v.HandshakesRefused) }),
		},
		wait: prometheus.NewDesc("xs_admission_wait_seconds", "Time from a laptop's first hello to its session.", nil, nil),
		errs: prometheus.NewDesc("xs_errors_total", "Requests failed, by kind.", []string{"kind"}, nil),
	}
}

func (c *protoCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.scalars)
	ch <- c.wait
	ch <- c.errs
}

func (c *protoCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.m.Values()
	collect(ch, &v, c.scalars)
	buckets, sum, n := v.Admission.WaitHistogram()
	ch <- prometheus.MustNewConstHistogram(c.wait, n, sum, buckets)
	// Every kind, zeros included, so that rate() sees the first error.
	for k := range 256 {
		if kind := errkind.Kind(k); kind.Valid() {
			ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(v.Errors[kind.String()]), kind.String())
		}
	}
}

// lifeCollector reads the lifecycle's figures at scrape time.
type lifeCollector struct {
	l       *lifeStats
	scalars []scalar[lifeValues]
}

func newLifeCollector(l *lifeStats) *lifeCollector {
	type v = lifeValues
	return &lifeCollector{l: l, scalars: []scalar[v]{
		counter("xs_lifecycle_runs_total", "Nightly lifecycle runs (scheduled or by hand).", func(v *v) float64 { return float64(v.runs) }),
		counter("xs_lifecycle_failures_total", "Lifecycle runs that ended with an error.", func(v *v) float64 { return float64(v.failures) }),
		gauge("xs_lifecycle_last_success_timestamp_seconds", "When the lifecycle last completed (0: not since the daemon started).", func(v *v) float64 { return float64(v.lastSuccess) }),
		gauge("xs_lifecycle_last_duration_seconds", "How long the last lifecycle run took.", func(v *v) float64 { return v.lastDuration.Seconds() }),
		counter("xs_lifecycle_snapshots_deleted_total", "Snapshots deleted by retention and soft quota.", func(v *v) float64 { return float64(v.snapshotsDeleted) }),
		counter("xs_lifecycle_uploads_expired_total", "Abandoned pending uploads released.", func(v *v) float64 { return float64(v.uploadsExpired) }),
		counter("xs_lifecycle_users_busy_total", "Users skipped because they were backing up.", func(v *v) float64 { return float64(v.usersSkippedBusy) }),
		counter("xs_scrub_bytes_total", "Bytes of pack files read back and verified by the nightly scrub.", func(v *v) float64 { return float64(v.scrubbedBytes) }),
		counter("xs_scrub_damaged_total", "Damaged blobs found by the nightly scrub.", func(v *v) float64 { return float64(v.scrubDamaged) }),
		counter("xs_gc_blobs_deleted_total", "Blobs garbage collection removed.", func(v *v) float64 { return float64(v.blobsDeleted) }),
		counter("xs_gc_packs_rewritten_total", "Pack files compaction rewrote.", func(v *v) float64 { return float64(v.packsRewritten) }),
		counter("xs_gc_bytes_reclaimed_total", "Disk bytes compaction gave back.", func(v *v) float64 { return float64(v.bytesReclaimed) }),
	}}
}

func (c *lifeCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch, c.scalars) }

func (c *lifeCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.l.values()
	collect(ch, &v, c.scalars)
}

// storeFigures are what storeCollector read from the store last.
type storeFigures struct {
	laptops  []laptopFigure
	pending  int
	overSoft int
	space    store.Space
	spaceOK  bool
	damaged  int
	damageOK bool
}

// laptopFigure is one laptop that is expected to back up (approved, not
// revoked): its latest snapshot's time, zero if it never backed up.
type laptopFigure struct {
	serial     string
	registered time.Time
	last       time.Time
}

// storeCollector reads the store's figures at most every ttl; the ages
// are computed at each scrape from the cached times.
type storeCollector struct {
	st  *store.Store
	now func() time.Time // the store's clock, for the ages
	ttl time.Duration

	mu     sync.Mutex // guards the two fields below
	cached storeFigures
	readAt time.Time // by the wall clock; zero: never read

	age, notBackedUp, never, laptops, pending, overSoft *prometheus.Desc
	size, free, reserve, damaged                        *prometheus.Desc
}

func newStoreCollector(st *store.Store, now func() time.Time, ttl time.Duration) *storeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &storeCollector{st: st, now: now, ttl: ttl,
		age:         d("xs_laptop_last_backup_age_seconds", "Seconds since each laptop's latest backup (laptops that backed up at least once).", "serial"),
		notBackedUp: d("xs_laptops_not_backed_up", "Laptops with no backup in the last N days (counting from registration for a laptop that never backed up).", "days"),
		never:       d("xs_laptops_never_backed_up", "Approved laptops that have no backup yet."),
		laptops:     d("xs_laptops", "Laptops expected to back up (approved, not revoked)."),
		pending:     d("xs_laptops_pending_approval", "Registrations waiting for staff (new laptops and key changes): xs-admin pending."),
		overSoft:    d("xs_laptops_over_soft_quota", "Laptops holding more than their soft quota (the nightly run deletes old snapshots)."),
		size:        d("xs_store_size_bytes", "Bytes the store takes on disk, by part (packs: the data; index: the Badger index).", "part"),
		free:        d("xs_store_free_bytes", "Bytes free for the store on the data file system."),
		reserve:     d("xs_store_reserve_bytes", "Free bytes the store never writes into (reserve in xs-backup.toml; 0: no reserve)."),
		damaged:     d("xs_store_damaged_blobs", "Blobs with no intact copy on the server, waiting for a laptop to send them again."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.age, c.notBackedUp, c.never, c.laptops, c.pending, c.overSoft, c.size, c.free, c.reserve, c.damaged} {
		ch <- d
	}
}

func (c *storeCollector) figures() storeFigures {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.readAt.IsZero() && time.Since(c.readAt) < c.ttl {
		return c.cached
	}
	ctx := context.Background()
	var f storeFigures
	for _, u := range c.st.Users() {
		if u.Revoked || !u.Approved {
			continue
		}
		lf := laptopFigure{serial: u.Serial, registered: u.Created}
		if sn, err := c.st.Snapshot(u.ID, "latest"); err == nil {
			lf.last = sn.Time
		}
		f.laptops = append(f.laptops, lf)
		if q := c.st.QuotaOf(u.ID); q.Soft > 0 {
			if use, err := c.st.Usage(ctx, u.ID); err == nil && use.Bytes > q.Soft {
				f.overSoft++
			}
		}
	}
	f.pending = c.st.Pending()
	sp, err := c.st.Space()
	f.space, f.spaceOK = sp, err == nil
	if dmg, err := c.st.Damaged(ctx); err == nil {
		f.damaged, f.damageOK = len(dmg), true
	}
	c.cached, c.readAt = f, time.Now()
	return f
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.figures()
	now := c.now()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	over := make([]int, len(notBackedUpDays))
	never := 0
	for _, l := range f.laptops {
		since := l.last
		if since.IsZero() {
			never++
			since = l.registered
		} else {
			g(c.age, max(now.Sub(l.last).Seconds(), 0), l.serial)
		}
		for i, days := range notBackedUpDays {
			if now.Sub(since) > time.Duration(days)*24*time.Hour {
				over[i]++
			}
		}
	}
	for i, days := range notBackedUpDays {
		g(c.notBackedUp, float64(over[i]), strconv.Itoa(days))
	}
	g(c.never, float64(never))
	g(c.laptops, float64(len(f.laptops)))
	g(c.pending, float64(f.pending))
	g(c.overSoft, float64(f.overSoft))
	if f.spaceOK {
		g(c.size, float64(f.space.PackBytes), "packs")
		g(c.size, float64(f.space.IndexBytes), "index")
		g(c.free, float64(f.space.Free))
		g(c.reserve, float64(f.space.Reserve))
	}
	if f.damageOK {
		g(c.damaged, float64(f.damaged))
	}
}
