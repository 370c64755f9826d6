package server

import (
	"context"
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

// values are the lifecycle's figures for /metrics, in metricsTable's order.
func (l *lifeStats) values() lifeValues {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := lifeValues{runs: l.runs, failures: l.failures, lastDuration: l.lastDuration, snapshotsDeleted: l.snapshotsDeleted,
		uploadsExpired: l.uploadsExpired, usersSkippedBusy: l.usersSkippedBusy, scrubbedBytes: l.scrubbedBytes, scrubDamaged: l.scrubDamaged,
		blobsDeleted: l.blobsDeleted, packsRewritten: l.packsRewritten, bytesReclaimed: l.bytesReclaimed}
	if !l.lastSuccess.IsZero() {
		v.lastSuccess = l.lastSuccess.Unix()
	}
	return v
}

type lifeValues struct {
	runs, failures, lastSuccess                        int64
	lastDuration                                       time.Duration
	snapshotsDeleted, uploadsExpired, usersSkippedBusy int64
	scrubbedBytes, scrubDamaged                        int64
	blobsDeleted, packsRewritten, bytesReclaimed       int64
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
	scrub := scrubOf(rep.Scrub)
	d.Log.Info("lifecycle done", "duration_ms", rep.DurationMS,
		"retention_deleted", rep.Retention.Deleted, "quota_deleted", rep.Quota.Deleted,
		"uploads_expired", rep.Expired.Holds, "uploads_restamped", rep.Expired.Restamped, "blobs_deleted", rep.GC.BlobsDeleted,
		"packs_rewritten", rep.GC.PacksRewritten, "bytes_reclaimed", rep.GC.BytesReclaimed,
		"kept_below_damaged_trees", rep.GC.KeptBelowDamagedTrees, "trees_restored", scrub.TreesRestored, "meta_copies_put", scrub.MetaCopiesPut)
	return rep, nil
}

// scrubOf is what the night's scrub reported (zero if it did not run).
func scrubOf(r *store.ScrubReport) store.ScrubReport {
	if r == nil {
		return store.ScrubReport{}
	}
	return *r
}
