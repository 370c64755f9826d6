package proto

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
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
	adm            *admission
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
}

// Values returns the current counter values.
func (m *Metrics) Values() MetricValues {
	v := MetricValues{ConnsActive: m.connsActive.Load(), SessionsStarted: m.sessions.Load(), Refused: m.refused.Load(),
		BytesReceived: m.bytesIn.Load(), BlobsReceived: m.blobsIn.Load(), Commits: m.commits.Load(), Errors: map[string]int64{},
		Limited: m.limited.Load(), CommitsLimited: m.commitsLimited.Load()}
	if m.adm != nil {
		v.SessionsActive, v.SlotsWaiting, v.SlotsIssued = m.adm.stats()
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
	g("xs_sessions_waiting", "Laptops holding a slot reservation.", "gauge", v.SlotsWaiting)
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
