package proto

import (
	"math"
	"sync/atomic"
	"time"
)

// Metrics counts what a Server does. Values reads them; the daemon
// (pkg/server) turns them into Prometheus metrics at scrape time, so this
// package, which the laptops' program uses too, does not depend on the
// Prometheus client.
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
	// abandoned counts requests the laptop gave up before their answer
	// (interrupted, a sibling stream failed, it hung up).
	abandoned atomic.Int64
	errs      [256]atomic.Int64
	adm       admitter
	pace      *pacer
	hs        *handshakes
}

// NewMetrics returns zeroed metrics.
func NewMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) errorOf(k Kind) { m.errs[k].Add(1) }

// MetricValues are the counters at one moment (Metrics.Values), for tests
// and status output.
type MetricValues struct {
	ConnsActive, SessionsStarted, Refused, BytesReceived, BlobsReceived, Commits int64
	Limited, CommitsLimited, Abandoned                                           int64
	// AddressChecks counts the Initial packets of new connections answered
	// with a QUIC Retry (prove your address first; a connection's
	// retransmissions each count), HandshakesRefused those refused because
	// their proved address had too many handshakes in progress or started
	// them too fast.
	AddressChecks, HandshakesRefused int64
	SessionsActive, SlotsWaiting     int
	SlotsIssued                      int64
	Errors                           map[string]int64
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
		Limited: m.limited.Load(), CommitsLimited: m.commitsLimited.Load(), Abandoned: m.abandoned.Load()}
	if m.adm != nil {
		v.Admission = m.adm.status(false)
		v.SessionsActive, v.SlotsWaiting, v.SlotsIssued = v.Admission.Running, v.Admission.Waiting, v.Admission.Issued
	}
	if m.hs != nil {
		_, v.AddressChecks, v.HandshakesRefused = m.hs.counts()
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

// WaitHistogram is the histogram of the time from a laptop's first hello
// to its session, in seconds: the cumulative count of waits at most each
// upper bound (+Inf left out), their sum and their number.
func (a AdmissionStatus) WaitHistogram() (buckets map[float64]uint64, sum float64, count uint64) {
	h := a.wait
	buckets = make(map[float64]uint64, len(h.bounds))
	var cum int64
	for i, ub := range h.bounds {
		if i < len(h.counts) {
			cum += h.counts[i]
		}
		buckets[ub] = uint64(cum)
	}
	return buckets, h.sum, uint64(h.n)
}
