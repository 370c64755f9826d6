package server

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// lifeStats are the lifecycle's figures for /metrics.
type lifeStats struct {
	mu               sync.Mutex
	runs, failures   int64
	lastSuccess      time.Time
	snapshotsDeleted int64
	bytesReclaimed   int64
	lastDuration     time.Duration
	uploadsExpired   int64
	blobsDeleted     int64
	packsRewritten   int64
	usersSkippedBusy int64
	scrubbedBytes    int64
	scrubDamaged     int64
}

func (l *lifeStats) record(rep *store.LifecycleReport, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs++
	if err != nil {
		l.failures++
	} else {
		l.lastSuccess = time.Now()
	}
	if rep == nil {
		return
	}
	l.lastDuration = time.Duration(rep.DurationMS) * time.Millisecond
	if rep.Retention != nil {
		l.snapshotsDeleted += int64(rep.Retention.Deleted)
		for _, u := range rep.Retention.Users {
			if u.Busy {
				l.usersSkippedBusy++
			}
		}
	}
	if rep.Quota != nil {
		l.snapshotsDeleted += int64(rep.Quota.Deleted)
	}
	if rep.Expired != nil {
		l.uploadsExpired += rep.Expired.Holds
		l.usersSkippedBusy += int64(rep.Expired.Busy)
	}
	if rep.Scrub != nil {
		l.scrubbedBytes += rep.Scrub.BytesRead
		l.scrubDamaged += int64(len(rep.Scrub.Damaged))
	}
	if rep.GC != nil {
		l.bytesReclaimed += rep.GC.BytesReclaimed
		l.blobsDeleted += rep.GC.BlobsDeleted
		l.packsRewritten += int64(rep.GC.PacksRewritten)
	}
}

func (l *lifeStats) writeMetrics(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := func(name, help, typ string, val any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, val)
	}
	g("xs_lifecycle_runs_total", "Nightly lifecycle runs (scheduled or by hand).", "counter", l.runs)
	g("xs_lifecycle_failures_total", "Lifecycle runs that ended with an error.", "counter", l.failures)
	var last int64
	if !l.lastSuccess.IsZero() {
		last = l.lastSuccess.Unix()
	}
	g("xs_lifecycle_last_success_timestamp_seconds", "When the lifecycle last completed.", "gauge", last)
	g("xs_lifecycle_last_duration_seconds", "How long the last lifecycle run took.", "gauge", l.lastDuration.Seconds())
	g("xs_lifecycle_snapshots_deleted_total", "Snapshots deleted by retention and soft quota.", "counter", l.snapshotsDeleted)
	g("xs_lifecycle_uploads_expired_total", "Abandoned pending uploads released.", "counter", l.uploadsExpired)
	g("xs_lifecycle_users_busy_total", "Users skipped because they were backing up.", "counter", l.usersSkippedBusy)
	g("xs_scrub_bytes_total", "Bytes of pack files read back and verified by the nightly scrub.", "counter", l.scrubbedBytes)
	g("xs_scrub_damaged_total", "Damaged blobs found by the nightly scrub.", "counter", l.scrubDamaged)
	g("xs_gc_blobs_deleted_total", "Blobs garbage collection removed.", "counter", l.blobsDeleted)
	g("xs_gc_packs_rewritten_total", "Pack files compaction rewrote.", "counter", l.packsRewritten)
	g("xs_gc_bytes_reclaimed_total", "Disk bytes compaction gave back.", "counter", l.bytesReclaimed)
}

// NextRun returns the first time at hour:minute (local time) after now.
func NextRun(now time.Time, hour, minute int) time.Time {
	t := time.Date(now.Year(), now.Month(), now.Day(), hour, minute, 0, 0, now.Location())
	if !t.After(now) {
		t = time.Date(now.Year(), now.Month(), now.Day()+1, hour, minute, 0, 0, now.Location())
	}
	return t
}

// nightly runs the lifecycle every day at hour:minute until ctx is done.
func (d *Daemon) nightly(ctx context.Context, hour, minute int) {
	for {
		next := NextRun(time.Now(), hour, minute)
		d.Log.Info("lifecycle scheduled", "at", next.Format(time.DateTime))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		d.RunLifecycle(ctx, store.LifecycleOptions{})
	}
}

// RunLifecycle runs the lifecycle at low CPU priority (nice 10, on a thread
// of its own) so that backups keep the CPU they need, and logs and counts
// what it did.
func (d *Daemon) RunLifecycle(ctx context.Context, opts store.LifecycleOptions) (*store.LifecycleReport, error) {
	type result struct {
		rep *store.LifecycleReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread is niced and never unlocked: when this goroutine
		// ends, the runtime retires the thread instead of reusing it.
		runtime.LockOSThread()
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10)
		rep, err := d.Store.Lifecycle(ctx, opts)
		done <- result{rep, err}
	}()
	r := <-done
	d.life.record(r.rep, r.err)
	if r.err != nil {
		d.Log.Error("lifecycle failed; it runs again tomorrow, or run xs-admin lifecycle", "err", r.err)
		return r.rep, r.err
	}
	rep := r.rep
	if rep.Scrub != nil && len(rep.Scrub.Damaged) > 0 {
		d.Log.Error("the scrub found damaged data; laptops that have it send it again at their next backup (xs-admin damaged lists it)",
			"damaged_blobs", len(rep.Scrub.Damaged), "first", rep.Scrub.Damaged[0])
	}
	d.Log.Info("lifecycle done", "duration_ms", rep.DurationMS,
		"retention_deleted", rep.Retention.Deleted, "quota_deleted", rep.Quota.Deleted,
		"uploads_expired", rep.Expired.Holds, "blobs_deleted", rep.GC.BlobsDeleted,
		"packs_rewritten", rep.GC.PacksRewritten, "bytes_reclaimed", rep.GC.BytesReclaimed)
	return rep, nil
}
