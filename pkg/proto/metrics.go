package proto

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"
)

// Metrics counts what a Server does. WriteTo renders them in the Prometheus
// text exposition format, so a daemon can serve them on /metrics.
type Metrics struct {
	connsActive atomic.Int64
	sessions    atomic.Int64
	refused     atomic.Int64
	bytesIn     atomic.Int64
	blobsIn     atomic.Int64
	commits     atomic.Int64
	// limited counts connections and requests refused by a per-device cap;
	// commitsLimited the commits refused by the per-laptop rate.
	limited        atomic.Int64
	commitsLimited atomic.Int64
	errs           [256]atomic.Int64
	adm            admitter
	pace           *pacer
}

// NewMetrics returns zeroed metrics.
func NewMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) errorOf(k Kind) { m.errs[k].Add(1) }

// Snapshot of the counters, for tests and status output.
type MetricValues struct {
	ConnsActive, SessionsStarted, Refused, BytesReceived, BlobsReceived, Commits int64
	Limited, CommitsLimited                                                      int64
	SessionsActive, SlotsWaiting                                                 int
	SlotsIssued                                                                  int64
	Errors                                                                       map[string]int64
	// Admission is the queue and the adaptive limit (without the queue's
	// list); PacedRate the upload rate the server paces to, in bytes per
	// second (+Inf: unpaced), and QueueDelay the queueing delay it measured.
	Admission  AdmissionStatus
	PacedRate  float64
	QueueDelay time.Duration
}

// Values returns the current counter values.
func (m *Metrics) Values() MetricValues {
	v := MetricValues{ConnsActive: m.connsActive.Load(), SessionsStarted: m.sessions.Load(), Refused: m.refused.Load(),
		BytesReceived: m.bytesIn.Load(), BlobsReceived: m.blobsIn.Load(), Commits: m.commits.Load(), Errors: map[string]int64{},
		Limited: m.limited.Load(), CommitsLimited: m.commitsLimited.Load()}
	if m.adm != nil {
		v.Admission = m.adm.status(false)
		v.SessionsActive, v.SlotsWaiting, v.SlotsIssued = v.Admission.Running, v.Admission.Waiting, v.Admission.Issued
	}
	if m.pace != nil {
		v.PacedRate, v.QueueDelay = m.pace.status()
		if v.PacedRate >= maxPace {
			v.PacedRate = math.Inf(1)
		}
	}
	for k := range m.errs {
		if n := m.errs[k].Load(); n > 0 {
			v.Errors[Kind(k).String()] = n
		}
	}
	return v
}

// WriteTo writes the metrics in Prometheus text format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	v := m.Values()
	var b bytes.Buffer
	g := func(name, help, typ string, val any) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, val)
	}
	g("xs_connections_active", "Open laptop connections.", "gauge", v.ConnsActive)
	g("xs_sessions_active", "Backup sessions in progress.", "gauge", v.SessionsActive)
	g("xs_sessions_waiting", "Laptops waiting for a place (held or told when to come back).", "gauge", v.SlotsWaiting)
	a := v.Admission
	g("xs_admission_limit", "Sessions admission lets run at once now (adaptive).", "gauge", a.Limit)
	g("xs_admission_held", "Hellos held open, waiting for a place.", "gauge", a.Held)
	g("xs_admission_running_work_bytes", "Bytes the running sessions expected to send.", "gauge", a.RunningWork)
	g("xs_admission_waiting_work_bytes", "Bytes the waiting laptops expect to send.", "gauge", a.WaitingWork)
	g("xs_admission_drain_sessions_per_second", "Sessions finished per second (measured, smoothed).", "gauge", a.DrainPerSec)
	g("xs_admission_drain_bytes_per_second", "Bytes received per second while sessions ran (measured, smoothed).", "gauge", a.DrainBytes)
	g("xs_admission_expired_total", "Waiting laptops that never came back and gave their place up.", "counter", a.Expired)
	g("xs_pacing_rate_bytes_per_second", "Upload rate the server paces to (+Inf: unpaced).", "gauge", v.PacedRate)
	g("xs_queueing_delay_seconds", "Queueing delay measured on the laptops' paths (median).", "gauge", v.QueueDelay.Seconds())
	if h := a.wait; h.counts != nil {
		fmt.Fprintf(&b, "# HELP xs_admission_wait_seconds Time from a laptop's first hello to its session.\n# TYPE xs_admission_wait_seconds histogram\n")
		var cum int64
		for i, ub := range h.bounds {
			cum += h.counts[i]
			fmt.Fprintf(&b, "xs_admission_wait_seconds_bucket{le=\"%g\"} %d\n", ub, cum)
		}
		fmt.Fprintf(&b, "xs_admission_wait_seconds_bucket{le=\"+Inf\"} %d\nxs_admission_wait_seconds_sum %g\nxs_admission_wait_seconds_count %d\n", h.n, h.sum, h.n)
	}
	g("xs_sessions_started_total", "Backup sessions granted.", "counter", v.SessionsStarted)
	g("xs_slots_issued_total", "Slots handed out instead of a session.", "counter", v.SlotsIssued)
	g("xs_connections_refused_total", "Connections refused at authentication.", "counter", v.Refused)
	g("xs_received_bytes_total", "Frame bytes received from laptops.", "counter", v.BytesReceived)
	g("xs_received_blobs_total", "Blobs received from laptops.", "counter", v.BlobsReceived)
	g("xs_commits_total", "Snapshots committed.", "counter", v.Commits)
	g("xs_commits_limited_total", "Commits refused by the per-laptop commit rate.", "counter", v.CommitsLimited)
	g("xs_limited_total", "Connections and requests refused by a per-device cap (connections, memory, registrations).", "counter", v.Limited)
	fmt.Fprintf(&b, "# HELP xs_errors_total Requests failed, by kind.\n# TYPE xs_errors_total counter\n")
	for k := range m.errs {
		if n := m.errs[k].Load(); n > 0 {
			fmt.Fprintf(&b, "xs_errors_total{kind=%q} %d\n", Kind(k).String(), n)
		}
	}
	n, err := w.Write(b.Bytes())
	return int64(n), err
}
