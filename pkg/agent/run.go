package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/xs-backup/xs-backup/internal/units"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// Outcome says how a run ended.
type Outcome string

// Outcomes of Run.
const (
	Done    Outcome = "done"    // a snapshot was committed
	Skipped Outcome = "skipped" // nothing to do now (see Reason)
	Later   Outcome = "later"   // the server gave a slot; come back at Slot
)

// SkipCause says why a run was Skipped.
type SkipCause string

// Why runs are skipped.
const (
	SkipDoneToday     SkipCause = "done-today"     // a backup already completed today
	SkipBattery       SkipCause = "battery"        // on battery below the threshold
	SkipNotRegistered SkipCause = "not-registered" // no registration (ErrNotRegistered)
	SkipUnreachable   SkipCause = "unreachable"    // the server did not answer (proto.ErrUnreachable)
	SkipLocked        SkipCause = "locked"         // another run holds the state directory's lock
	// SkipRestorePending: the Journal is empty and the laptop registered
	// as a serial with backups (a reflash) that were not restored yet
	// (State.RestorePending); Force backs up anyway.
	SkipRestorePending SkipCause = "restore-pending"
)

// RunOptions configure Run.
type RunOptions struct {
	// Source is the directory to back up (default the Sugar Journal).
	Source string
	// Force runs even if a backup already completed today or on low battery,
	// and before a slot the server reserved; it also backs up an empty
	// Journal of a reflashed laptop over its history unless
	// KeepReflashGuard is set.
	Force bool
	// KeepReflashGuard: with Force, still skip (SkipRestorePending) an
	// empty Journal while a reflashed laptop's backups wait to be
	// restored. What a program embedding the library wants: Force for
	// "now", not for "over the history".
	KeepReflashGuard bool
	// PowerSupplyDir and BatteryThreshold (percent) decide "on low battery"
	// (defaults /sys/class/power_supply and 20).
	PowerSupplyDir   string
	BatteryThreshold int
	// MaxSlotWait is the longest the run sleeps for a slot before giving up
	// and leaving it to a later timer run (default 10 minutes). The slot is
	// kept in the state directory: runs before it end at once (Later,
	// without contacting the server), and the first run within MaxSlotWait
	// of it connects and waits for it. The timer must therefore fire more
	// often than MaxSlotWait (the shipped one: every 5 minutes).
	MaxSlotWait time.Duration
	// Exclude overrides backup.JournalExclude.
	Exclude func(rel string, isDir bool) bool
	// Progress, if set, receives the backup's progress.
	Progress func(backup.Progress)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// BootID identifies this boot of the laptop (default BootID).
	BootID func() string
	// Host is recorded with the snapshot.
	Host string
	// IdleTimeout gives up on a server that stopped answering (default
	// 60 s); the next run resumes where this one stopped.
	IdleTimeout time.Duration
}

// RunResult is what Run did.
type RunResult struct {
	Outcome Outcome `json:"outcome"`
	// Skip says why a Skipped run was skipped.
	Skip SkipCause `json:"skip,omitempty"`
	// Reason says in words why the run was skipped or must wait.
	Reason string         `json:"reason,omitempty"`
	Slot   time.Time      `json:"slot,omitempty"`
	Backup *backup.Result `json:"backup,omitempty"`
	// WireSent and WireReceived are the bytes on the QUIC connection.
	WireSent     int64 `json:"wire_bytes_sent"`
	WireReceived int64 `json:"wire_bytes_received"`
	// RoundTrips counts the requests sent to the server (the handshake
	// not included).
	RoundTrips int64             `json:"round_trips"`
	Quota      proto.QuotaStatus `json:"quota"`
}

// Run is what the timer calls every 5 minutes: it exits at once (Skipped)
// when a backup already completed today, on low battery, when not
// registered, when another run holds the lock or when the server is
// unreachable; honours the server's slot (Later, until the slot is within
// MaxSlotWait); and otherwise backs up, sending only what the server lacks.
func Run(ctx context.Context, st State, o RunOptions) (*RunResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = DefaultSource()
	}
	if o.BootID == nil {
		o.BootID = BootID
	}
	if o.PowerSupplyDir == "" {
		o.PowerSupplyDir = "/sys/class/power_supply"
	}
	if o.BatteryThreshold == 0 {
		o.BatteryThreshold = 20
	}
	if o.MaxSlotWait == 0 {
		o.MaxSlotWait = 10 * time.Minute
	}
	if o.Exclude == nil {
		o.Exclude = backup.JournalExclude
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	skip := func(cause SkipCause, reason string) (*RunResult, error) {
		return &RunResult{Outcome: Skipped, Skip: cause, Reason: reason}, nil
	}
	// Cheapest checks first.
	reg, err := st.Registration()
	if err != nil {
		if errors.Is(err, ErrNotRegistered) {
			return skip(SkipNotRegistered, err.Error())
		}
		return nil, err
	}
	now, boot := o.Now(), o.BootID()
	last := st.LastRun()
	// Whether today's backup is done, by this laptop's clock; or, where
	// that clock is behind the server's time of the last backup (set back,
	// or reset at boot by a dead clock battery: every day would be that
	// same wrong day), by the server's, from this boot's offset. Without
	// one (a new boot) the server's hello tells (askDay).
	doneToday, askDay := !last.Time.IsZero() && sameDay(last.Time, now), false
	if !last.ServerTime.IsZero() && now.Before(last.ServerTime.Add(-clockSlack)) {
		doneToday, askDay = false, true
		if n := st.clockNote(); n.Boot != "" && n.Boot == boot {
			doneToday, askDay = sameDay(last.ServerTime, now.Add(n.Offset)), false
		}
	}
	if !o.Force && doneToday {
		return skip(SkipDoneToday, "a backup already completed today (at "+last.Time.Local().Format("15:04")+")")
	}
	if !o.Force && OnLowBattery(o.PowerSupplyDir, o.BatteryThreshold) {
		return skip(SkipBattery, fmt.Sprintf("on battery below %d%%", o.BatteryThreshold))
	}
	if sl := st.slot(); !o.Force && !sl.Slot.IsZero() {
		// A slot more than a day ahead, or saved at a time this clock has
		// not reached again, means the clock jumped: ask again.
		if ahead := sl.Slot.Sub(now); ahead > o.MaxSlotWait && ahead < 24*time.Hour && !now.Before(sl.Saved) {
			return &RunResult{Outcome: Later, Slot: sl.Slot, Reason: waitingReason(sl.Slot)}, nil
		}
	}
	release, ok, err := st.lock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return skip(SkipLocked, "another backup run is in progress")
	}
	defer release()
	st.removeLeftovers()
	if _, err := os.Stat(o.Source); err != nil {
		return nil, fmt.Errorf("backup source: %w", err)
	}

	cache, err := backup.LoadCache(st.cachePath())
	if err != nil {
		// Damaged, or not a file at all: a cache, started afresh (a
		// directory in its place would stop every save).
		os.RemoveAll(st.cachePath())
		cache = backup.NewCache()
	}
	// What this backup expects to send, so that admission can weigh it
	// (a walk with an lstat per file: no content is read).
	var expect proto.Work
	var scan *backup.Scan
	if expect.Bytes, expect.Files, scan, err = backup.EstimateScan(ctx, o.Source, cache, o.Exclude); err != nil {
		return nil, err
	}
	scanned := time.Now()
	pending := st.RestorePending()
	if pending && (!o.Force || o.KeepReflashGuard) && emptyCounts(scan.Dirs(), scan.Files()) {
		return skip(SkipRestorePending, "this laptop's Journal is empty and the school server holds its backups from before it was reflashed: restore them first (the whole Journal); an empty Journal is not backed up over them")
	}

	c, err := dial(ctx, st, reg, o.IdleTimeout)
	if errors.Is(err, proto.ErrUnreachable) {
		return skip(SkipUnreachable, err.Error())
	}
	if err != nil {
		return nil, err
	}
	defer func() { c.Close() }() // the last connection, if the wait needed another
	res := &RunResult{}
	c.Expect = expect
	var g *proto.Grant
	// The server holds a hello open while a place is near and otherwise
	// says when to come back; this run waits, connected, for as long as
	// MaxSlotWait in all.
	waitUntil := o.Now().Add(o.MaxSlotWait)
	for {
		c.HoldFor = max(waitUntil.Sub(o.Now()), time.Millisecond)
		g, err = c.Hello(ctx, "backup")
		if err != nil {
			return nil, err
		}
		st.noteClock(boot, g.ServerTime, o.Now())
		if askDay && !o.Force && sameDay(last.ServerTime, g.ServerTime) {
			c.Bye(ctx)
			return skip(SkipDoneToday, "a backup already completed today, by the school server's clock (this laptop's clock is behind it: "+now.Local().Format("2006-01-02 15:04")+")")
		}
		askDay = false
		res.Quota = g.Quota
		if g.Granted {
			break
		}
		wait := g.Slot.Sub(g.ServerTime)
		if o.Now().Add(wait).After(waitUntil) {
			// On this laptop's clock, which may differ from the server's.
			slot := o.Now().Add(wait)
			res.Outcome, res.Slot, res.Reason = Later, slot, waitingReason(slot)
			res.WireSent, res.WireReceived, res.RoundTrips = c.BytesSent(), c.BytesReceived(), c.RoundTrips()
			if err := st.saveSlot(slot, o.Now()); err != nil {
				return nil, fmt.Errorf("the server reserved a slot at %s but it could not be saved: %w", slot.Local().Format("15:04"), err)
			}
			return res, nil
		}
		select {
		case <-time.After(max(wait, 0)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.Closed() {
			// The server ends a connection quiet for longer than a
			// laptop's default wait (proto.Limits.ConnIdle); a longer
			// MaxSlotWait, or a network that went away, needs another.
			c.Close()
			if c, err = dial(ctx, st, reg, o.IdleTimeout); err != nil {
				return nil, err
			}
			c.Expect = expect
		}
	}
	granted := time.Now()
	st.clearSlot()
	if g.Quota.Hard > 0 && g.Quota.Used >= g.Quota.Hard {
		return nil, fmt.Errorf("%w: this laptop's backups use %s of its %s quota on the school server", proto.ErrOverQuota, units.Bytes(g.Quota.Used), units.Bytes(g.Quota.Hard))
	}
	if pending && st.restoreFromID() == "" {
		// The first backup after a reflash: the newest backup from before
		// it is pinned for restore --all, before this one becomes the latest.
		if err := pinRestoreFrom(ctx, st, c); err != nil {
			return res, err
		}
	}
	c.Info = proto.CommitInfo{Host: o.Host, Source: o.Source}
	c.EndWithCommit = true // hello, uploads if any, commit: no bye
	opts := backup.Options{Params: g.Params, Cache: cache, Exclude: o.Exclude, Progress: o.Progress}
	if !time.Now().After(scanned.Add(maxScanAge)) {
		// The walk that weighed this backup is fresh: the backup uses it
		// instead of walking the Journal again. One that waited for a
		// place in the queue walks again. (A file found changed since the
		// walk when it is read makes backup.Run walk again too: Sugar
		// saved meanwhile, and the entry's new title would otherwise go
		// over its old document.)
		opts.Scan = scan
	}
	// backup.Run starts afresh by itself when the server no longer has what
	// the cache promised (restored, replaced, uploads expired, damaged).
	keep := c.KeepSession(ctx, 10*time.Second)
	br, err := backup.Run(ctx, o.Source, c, opts)
	keep()
	res.WireSent, res.WireReceived, res.RoundTrips = c.BytesSent(), c.BytesReceived(), c.RoundTrips()
	if err != nil {
		return res, err
	}
	res.Outcome, res.Backup = Done, br
	// Today's backup is recorded before the cache is saved: a run that
	// could not save the cache (a full disk) must not make every timer run
	// of the day back up again. On a disk too full even for last.json, the
	// old cache goes to make room: the next run reads every file, but the
	// day's backup is not repeated every 5 minutes. (A directory in
	// last.json's place goes too.)
	last = LastRun{Time: o.Now().UTC(), Snapshot: br.Snapshot, ServerTime: g.ServerTime.Add(time.Since(granted)).UTC()}
	if err := writeJSON(st.path("last.json"), last); err != nil {
		full := true
		if fi, lerr := os.Lstat(st.path("last.json")); lerr == nil && !fi.Mode().IsRegular() {
			os.RemoveAll(st.path("last.json"))
			full = false
		} else {
			os.Remove(st.cachePath())
		}
		if err2 := writeJSON(st.path("last.json"), last); err2 != nil {
			return res, fmt.Errorf("backup %s is safe on the server, but this laptop could not record it (the next run backs up again): %w", br.Snapshot, err)
		}
		if full {
			return res, fmt.Errorf("backup %s is safe on the server, but the laptop's disk is too full for its file cache (removed; the next backup reads every file again): %w", br.Snapshot, err)
		}
	}
	if pending && !emptyCounts(int64(br.Dirs), int64(br.Files)) {
		os.Remove(st.path(restorePending)) // a Journal with files is the latest now
	}
	if err := cache.Save(st.cachePath()); err != nil {
		return res, fmt.Errorf("backup %s is safe on the server, but the file cache could not be saved (the next backup may read files again): %w", br.Snapshot, err)
	}
	c.Bye(ctx)
	res.WireSent, res.WireReceived, res.RoundTrips = c.BytesSent(), c.BytesReceived(), c.RoundTrips()
	return res, nil
}

// pinRestoreFrom records the server's newest backup of this laptop as the
// one restore --all brings back (restoreFrom).
func pinRestoreFrom(ctx context.Context, st State, c *proto.Client) error {
	sns, err := c.Snapshots(ctx)
	if err != nil || len(sns) == 0 {
		return err
	}
	if err := writeAtomic(st.path(restoreFrom), []byte(sns[len(sns)-1].ID+"\n")); err != nil {
		return fmt.Errorf("the backup to restore after the reflash could not be noted in the state directory: %w", err)
	}
	return nil
}

// emptyCounts reports whether a Journal of dirs directories and files
// regular files (those excluded not counted) is empty: no entry (each one
// is a directory), at most Sugar's "version" file.
func emptyCounts(dirs, files int64) bool { return dirs == 0 && files <= 1 }

// clockSlack is how far this laptop's clock may be behind the server's
// time of its last backup before it counts as set back.
const clockSlack = 10 * time.Minute

// maxScanAge is how old the walk made for admission may be for the backup
// to use it instead of walking again.
const maxScanAge = 30 * time.Second

func waitingReason(slot time.Time) string {
	return fmt.Sprintf("the server is busy; it reserved a slot for this laptop at %s (a run before then ends at once)", slot.Local().Format("15:04:05"))
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.Local().Date()
	by, bm, bd := b.Local().Date()
	return ay == by && am == bm && ad == bd
}
