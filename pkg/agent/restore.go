package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/xs-backup/xs-backup/internal/pathutil"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// netSource reads blobs from the server for a restore.
type netSource struct {
	c     *proto.Client
	codec *chunk.Codec
}

// NewSource returns a restore.Source that reads blobs from the server
// through c, decompressing them with codec (which must stay open while the
// source is used): restore.Restore, restore.SnapshotFS and restore.Walk work on
// it as they do on a store.
func NewSource(c *proto.Client, codec *chunk.Codec) restore.Source {
	return &netSource{c: c, codec: codec}
}

// Fetch implements restore.Source. A blob the server does not have (not
// found, though a snapshot references it) is as lost as a damaged one: the
// error then matches blob.ErrDamaged, and the restore goes on without the
// files that use it.
func (n *netSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	err := n.fetch(ctx, refs, fn)
	if errors.Is(err, proto.ErrNotFound) && !errors.Is(err, blob.ErrDamaged) {
		err = fmt.Errorf("%w: %w", blob.ErrDamaged, err)
	}
	return err
}

func (n *netSource) fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	return n.c.Fetch(ctx, refs, func(b blob.Blob) error {
		raw := b.Data
		if b.Compressed {
			var err error
			if raw, err = n.codec.Decompress(nil, b.Data, b.RawLen); err != nil {
				return fmt.Errorf("%w: %s: %v", blob.ErrDamaged, b.Ref, err)
			}
		}
		return fn(b.Ref, raw)
	})
}

// Snapshots lists this laptop's snapshots on the server, oldest first.
func Snapshots(ctx context.Context, st State) ([]proto.SnapshotInfo, error) {
	c, _, err := Dial(ctx, st, 0)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Snapshots(ctx)
}

// ErrNoSnapshot: the server has no snapshot of this laptop by that ID.
var ErrNoSnapshot = errors.New("the server has no backup of this laptop with that ID")

// ErrNotEmpty: a restore of the whole Journal (All) found its target not
// empty and Overwrite not set.
var ErrNotEmpty = errors.New("the restore target is not empty")

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Snapshot is a snapshot ID or "latest" (default).
	Snapshot string
	// Target is where files go (default: the Journal itself, see All).
	Target string
	// Paths restricts the restore to these paths; empty means everything.
	Paths []string
	// All restores the whole snapshot into Target (default the Journal),
	// refusing a non-empty target unless Overwrite is set.
	All bool
	// Overwrite allows replacing existing files.
	Overwrite bool
	// Journal says Target is a Sugar datastore (the Journal's directory):
	// after writing files there, Restore asks Sugar to index them
	// (journal.RequestReindex), or Sugar's Journal would not list them. It
	// is implied for All without a Target, and for any Target where Sugar
	// has run (journal.IsDatastore).
	Journal  bool
	Progress func(restore.Progress)
}

// Restore brings files back from the server. Files whose data on the
// server is damaged or missing are left out (never written in part) and
// listed in the result, with the newest older snapshot that holds each
// intact; the error is then a *restore.DamagedError. A restore cut off by
// ctx says it was interrupted and wraps ctx's error, at whatever step.
func Restore(ctx context.Context, st State, o RestoreOptions) (*restore.Result, *proto.SnapshotInfo, error) {
	res, sn, re, err := restoreRun(ctx, st, o)
	if err != nil && ctx.Err() != nil {
		// Cut off (while connecting, waiting, listing or writing): not
		// QUIC's word for the streams it cancelled.
		var damaged *restore.DamagedError
		if !errors.As(err, &damaged) {
			err = fmt.Errorf("restore interrupted before any file was written: %w", ctx.Err())
			if res != nil && res.Files > 0 {
				err = fmt.Errorf("restore interrupted after %d files: %w", res.Files, ctx.Err())
			}
		}
	}
	switch {
	case re == nil:
	case err == nil:
		err = re
	default:
		err = errors.Join(err, re)
	}
	return res, sn, err
}

// restoreRun restores; re says Sugar could not be asked to list what it
// wrote into the Journal.
func restoreRun(ctx context.Context, st State, o RestoreOptions) (_ *restore.Result, _ *proto.SnapshotInfo, re *ReindexError, _ error) {
	if o.Target == "" {
		if !o.All {
			return nil, nil, nil, errors.New("no restore target: set Target, or All to restore the whole Journal into place")
		}
		o.Target = DefaultSource()
		o.Journal = true
	}
	o.Journal = o.Journal || journal.IsDatastore(o.Target)
	if pathutil.Overlap(st.Dir, o.Target) {
		return nil, nil, nil, errkind.Errorf(errkind.BadRequest, "%s is, holds or lies inside this laptop's state directory %s (its key and registration): restore somewhere else", o.Target, st.Dir)
	}
	if o.All && !o.Overwrite {
		empty, err := emptyJournal(o.Target)
		if err == nil && !empty {
			return nil, nil, nil, fmt.Errorf("%w: %s (restoring the whole Journal over it could mix two Journals)", ErrNotEmpty, o.Target)
		}
		// A new Journal's own files (Sugar's "version", its index) are
		// no Journal to mix with: the snapshot's version replaces it.
		o.Overwrite = err == nil
	}
	if o.All {
		// The timer's run waits meanwhile: it would back up a half
		// restored Journal (and take the day's backup with it).
		release, err := st.waitLock(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		defer release()
	}
	c, _, err := Dial(ctx, st, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	defer c.Close()
	// Restores take part in admission (and go first: a child is waiting).
	for {
		g, err := c.Hello(ctx, "restore")
		if err != nil {
			return nil, nil, nil, err
		}
		if g.Granted {
			break
		}
		select {
		case <-time.After(max(g.Slot.Sub(g.ServerTime), time.Second)):
		case <-ctx.Done():
			return nil, nil, nil, ctx.Err()
		}
	}
	sns, err := c.Snapshots(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(sns) == 0 {
		return nil, nil, nil, errors.New("the server has no backups of this laptop yet")
	}
	at := -1
	want := o.Snapshot
	if o.All && (want == "" || want == "latest") {
		// After a reflash, the backup from before it, even if the child's
		// new work (or a half restored Journal) was backed up since.
		if id := st.restoreFromID(); id != "" && slices.ContainsFunc(sns, func(s proto.SnapshotInfo) bool { return s.ID == id }) {
			want = id
		}
	}
	if want == "" || want == "latest" {
		at = len(sns) - 1
	} else {
		for i := range sns {
			if sns[i].ID == want {
				at = i
			}
		}
		if at < 0 {
			return nil, nil, nil, fmt.Errorf("%w: %s", ErrNoSnapshot, want)
		}
	}
	sn := &sns[at]
	if o.All && st.RestorePending() && st.restoreFromID() == "" {
		// The first restore after a reflash, before any backup: its
		// backup stays the one to restore until one restores it whole.
		if err := writeAtomic(st.path(restoreFrom), []byte(sn.ID+"\n")); err != nil {
			return nil, nil, nil, err
		}
	}
	var older []restore.OlderSnapshot // newest first; the list is oldest first
	for i := at - 1; i >= 0; i-- {
		if sns[i].Time.Before(sn.Time) {
			older = append(older, restore.OlderSnapshot{ID: sns[i].ID, Root: sns[i].Root})
		}
	}
	codec, err := chunk.NewCodec()
	if err != nil {
		return nil, nil, nil, err
	}
	defer codec.Close()
	ropts := restore.Options{Paths: o.Paths, Overwrite: o.Overwrite, Progress: o.Progress, Older: older}
	if o.All && len(o.Paths) == 0 {
		// Run again after an interruption (the lid closed, the wifi
		// lost), it fetches only what the last run did not write whole.
		ropts.ResumeFile = st.path(restoreProgress)
	}
	res, err := restore.Restore(ctx, &netSource{c: c, codec: codec}, sn.Root, o.Target, ropts)
	var damaged *restore.DamagedError
	if o.All && len(o.Paths) == 0 && (err == nil || errors.As(err, &damaged)) {
		os.Remove(st.path(restorePending))
		if err == nil && st.restoreFromID() == sn.ID {
			// Whole. (With files left out for damage, the pin stays: a
			// later restore --all takes them once they heal.)
			os.Remove(st.path(restoreFrom))
		}
	}
	if o.Journal && res != nil && res.Files > 0 {
		// Even when cut off or with files left out: what was written is
		// whole, and the child should see it.
		if rerr := journal.RequestReindex(o.Target); rerr != nil {
			re = &ReindexError{Target: o.Target, Files: res.Files, Err: rerr}
		}
	}
	return res, sn, re, err
}

// ReindexError: files were restored into the Journal, but Sugar could not
// be asked to list them (journal.RequestReindex); the restore itself
// succeeded, or failed with the error beside it (errors.Join).
type ReindexError struct {
	Target string
	Files  int64
	Err    error
}

func (e *ReindexError) Error() string {
	if errors.Is(e.Err, journal.ErrOldLayout) {
		return fmt.Sprintf("%d files restored into %s, which holds Sugar 0.82's Journal layout: Sugar 0.82 lists those entries as they are, a newer Sugar does not (on a newer Sugar, download their documents from the restore page: xo-backup restore-link)", e.Files, e.Target)
	}
	return fmt.Sprintf("%d files restored into %s, but Sugar will not list them until its index is rebuilt: %v (remove %s and restart Sugar)",
		e.Files, e.Target, e.Err, filepath.Join(e.Target, "version"))
}

func (e *ReindexError) Unwrap() error { return e.Err }

// emptyJournal reports whether dir holds no Journal entry: nothing but what
// a freshly started Sugar writes in an empty datastore (its "version" file,
// and its index and flags, which backups leave out).
func emptyJournal(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.Name() == "version" && e.Type().IsRegular() || backup.JournalExclude(e.Name(), e.IsDir()) {
			continue
		}
		return false, nil
	}
	return true, nil
}
