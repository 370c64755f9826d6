package server

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
)

// MothershipConfig is the [mothership] section of a school server: where
// its snapshots are replicated.
type MothershipConfig struct {
	// Address is the mothership's host:port ("": no replication).
	Address string `toml:"address"`
	// School is this school's name there (letters, digits, '-', '_', '.').
	School string `toml:"school"`
	// Key is the mothership's public key in hex, as its staff give it;
	// empty pins the key the mothership shows at the first contact.
	Key string `toml:"key"`
	// Rate caps the upload, e.g. "2Mbit" (default: no cap).
	Rate Rate `toml:"rate"`
	// Every is how often replication runs inside the windows (default 1h).
	Every Duration `toml:"every"`
	// Windows are the hours replication may use the link, e.g.
	// [{from = "18:00", to = "06:00"}]; none: any time. A run still going
	// at the end of its window stops and resumes in the next one.
	Windows []struct {
		From string `toml:"from"`
		To   string `toml:"to"`
	} `toml:"windows"`
}

func (m MothershipConfig) validate(role string) error {
	if m.Address == "" {
		return nil
	}
	if role == "mothership" {
		return errors.New("a mothership does not replicate to another mothership: remove [mothership] or the role")
	}
	if m.School == "" {
		return errors.New("school must name this school (its account on the mothership)")
	}
	if _, err := m.pinned(); err != nil {
		return err
	}
	if m.Every < 0 {
		return errors.New("every cannot be negative")
	}
	for _, w := range m.Windows {
		if _, err := parseDayWindow(w.From, w.To); err != nil {
			return err
		}
	}
	return nil
}

func (m MothershipConfig) pinned() (ed25519.PublicKey, error) {
	if m.Key == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimSpace(m.Key))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key must be the mothership's public key: %d hex digits", 2*ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// window reports whether t is inside a window and, if so, when it ends
// (zero: no windows, any time).
func (m MothershipConfig) window(t time.Time) (bool, time.Time) {
	if len(m.Windows) == 0 {
		return true, time.Time{}
	}
	for _, w := range m.Windows {
		dw, _ := parseDayWindow(w.From, w.To) // checked by validate
		if dw.contains(t) {
			return true, dw.end(t)
		}
	}
	return false, time.Time{}
}

// offsiteRunner runs replication for the daemon, one run at a time.
type offsiteRunner struct {
	state *offsite.State
	mu    sync.Mutex // one run at a time
}

func (d *Daemon) mothership() (offsite.Mothership, error) {
	mc := d.Config.Mothership
	pin, err := mc.pinned()
	if err != nil {
		return offsite.Mothership{}, err
	}
	return offsite.Mothership{Addr: mc.Address, School: mc.School, Key: d.key, Pinned: pin, Rate: int64(mc.Rate)}, nil
}

// Sync runs replication to the mothership now (xs-admin sync), or, with
// preview, only reports what is not off-site yet.
func (d *Daemon) Sync(ctx context.Context, preview bool) (*offsite.Report, offsite.Lag, error) {
	o := d.offsite
	if o == nil {
		return nil, offsite.Lag{}, errkind.Errorf(errkind.BadRequest, "this server replicates to no mothership ([mothership] address is not set)")
	}
	if preview {
		return nil, o.state.Lag(d.Store), nil
	}
	if !o.mu.TryLock() {
		return nil, o.state.Lag(d.Store), errkind.Errorf(errkind.Busy, "a replication run is already in progress")
	}
	defer o.mu.Unlock()
	m, err := d.mothership()
	if err != nil {
		return nil, offsite.Lag{}, err
	}
	rep, err := offsite.Sync(ctx, d.Store, m, o.state, offsite.Options{School: m.School, KeyDir: d.Config.Data})
	if rep != nil {
		d.Log.Info("replicated to the mothership", "snapshots", rep.Snapshots, "blobs", rep.Blobs, "bytes", rep.Bytes, "failed", len(rep.Failed), "took", rep.Took)
	}
	return rep, o.state.Lag(d.Store), err
}

// offsiteLoop replicates every Every inside the windows, until ctx ends.
func (d *Daemon) offsiteLoop(ctx context.Context) {
	every := time.Duration(d.Config.Mothership.Every)
	if every <= 0 {
		every = time.Hour
	}
	// Not at once after a start: laptops first, and a restart loop does
	// not become a replication loop.
	next := time.Now().Add(min(every, 5*time.Minute))
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		next = time.Now().Add(every)
		in, end := d.Config.Mothership.window(time.Now())
		if !in {
			continue
		}
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if !end.IsZero() {
			rctx, cancel = context.WithDeadline(ctx, end)
		}
		if _, _, err := d.Sync(rctx, false); err != nil && ctx.Err() == nil {
			d.Log.Warn("replication to the mothership failed; it resumes at the next run", "err", err, "next", next.Format(time.TimeOnly))
		}
		cancel()
	}
}

func (d *Daemon) loadOffsite() error {
	if d.Config.Mothership.Address == "" {
		return nil
	}
	st, err := offsite.LoadState(d.Config.Data)
	if err != nil {
		return err
	}
	d.offsite = &offsiteRunner{state: st}
	return nil
}

// adminSync is Sync for the staff API, nil when there is no mothership.
func (d *Daemon) adminSync() func(context.Context, bool) (*offsite.Report, offsite.Lag, error) {
	if d.offsite == nil {
		return nil
	}
	return d.Sync
}

// offsiteCollector reports the replication lag at scrape time.
type offsiteCollector struct {
	d   *Daemon
	now func() time.Time
}

var offsiteMetrics = []scalar[offsite.Lag]{
	gauge("xs_offsite_pending_snapshots", "Snapshots not yet confirmed by the mothership.",
		func(l *offsite.Lag) float64 { return float64(l.Snapshots) }),
	gauge("xs_offsite_pending_bytes", "Stored size of those snapshots (an upper bound of what is left to send).",
		func(l *offsite.Lag) float64 { return float64(l.Bytes) }),
	gauge("xs_offsite_confirmed_snapshots", "Snapshots the mothership confirmed.",
		func(l *offsite.Lag) float64 { return float64(l.Confirmed) }),
	gauge("xs_offsite_last_success_timestamp_seconds", "When the last replication run succeeded (0: never).",
		func(l *offsite.Lag) float64 {
			if l.LastSync.IsZero() {
				return 0
			}
			return float64(l.LastSync.Unix())
		}),
	gauge("xs_offsite_last_failed", "1 if the last replication run failed.",
		func(l *offsite.Lag) float64 {
			if l.LastError != "" {
				return 1
			}
			return 0
		}),
}

var offsiteOldest = prometheus.NewDesc("xs_offsite_oldest_pending_age_seconds", "Age of the oldest snapshot not yet off-site (0: none).", nil, nil)

func (c *offsiteCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, offsiteMetrics)
	ch <- offsiteOldest
}

func (c *offsiteCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.d.offsite.state.Lag(c.d.Store)
	collect(ch, &l, offsiteMetrics)
	age := 0.0
	if !l.Oldest.IsZero() {
		age = c.now().Sub(l.Oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(offsiteOldest, prometheus.GaugeValue, age)
}
