package xsbackup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// RegisterOptions configure Register: the server (host or host:port), the
// laptop's serial ("" reads the XO's), a nickname, a claim code from staff.
type RegisterOptions = agent.RegisterOptions

// Registration is what Register recorded in the state directory.
type Registration = agent.Registration

// Register registers this laptop with a school server, as xo-backup
// register does: it creates the laptop's key in stateDir ("" means the
// Sugar default, ~/.sugar/default/xs-backup) if there is none, and pins the
// server's key. Depending on the server's configuration the registration
// may wait for staff approval (Registration.Approved is then false).
func Register(ctx context.Context, stateDir string, o RegisterOptions) (*Registration, error) {
	return agent.Register(ctx, state(stateDir), o)
}

func state(dir string) agent.State {
	if dir == "" {
		dir = agent.DefaultStateDir()
	}
	return agent.State{Dir: dir}
}

// Dial connects to the school server this laptop registered with, using the
// registration in stateDir ("" means the Sugar default, the directory
// xo-backup uses). It fails with an error matching ErrNotRegistered if the
// laptop has not registered: call Register first (or run xo-backup
// register). Backups through the Repo are the laptop's backups: they share
// its history on the server, its file cache and its record of the day's
// backup with xo-backup's timer.
//
// When the server is busy, Backup waits for the slot it reserves if that
// is within 10 minutes (cancel ctx to stop waiting), and otherwise fails
// with ErrBusy. Listing and reading snapshots use one connection opened by
// Dial, and another when it has ended: the server ends one that was quiet
// for a while (30 s after a read, 15 minutes otherwise), and a restarted
// server or a network that went away end it too. A call fails when the
// server cannot be reached again.
func Dial(ctx context.Context, stateDir string, opts Options) (*Repo, error) {
	st := state(stateDir)
	if _, err := st.Registration(); err != nil {
		if errors.Is(err, agent.ErrNotRegistered) {
			return nil, fmt.Errorf("xsbackup: no registration in %s; call xsbackup.Register first: %w", st.Dir, err)
		}
		return nil, fmt.Errorf("xsbackup: %w", err)
	}
	c, _, err := agent.Dial(ctx, st, 0)
	if err != nil {
		return nil, fmt.Errorf("xsbackup: connect to the school server: %w", err)
	}
	codec, err := chunk.NewCodec()
	if err != nil {
		c.Close()
		return nil, err
	}
	return &Repo{opts: opts, be: &remote{st: st, c: c, codec: codec, restores: make(chan struct{}, maxRestores)}}, nil
}

// remote is a school server: backups and restores go through pkg/agent
// (each on its own connection, as xo-backup's), listing and reading
// snapshots through one connection kept open.
type remote struct {
	st    agent.State
	c     *proto.Client
	codec *chunk.Codec

	mu      sync.Mutex // guards the fields below, and c
	reading bool       // the server granted this connection a restore session
	// dialErr is why connecting again failed, at dialFailed.
	dialErr    error
	dialFailed time.Time

	// restores holds a place for each Restore running: each takes a
	// connection of its own, and the server allows a laptop a few
	// (Backup's, the kept one, and these).
	restores chan struct{}
}

// redialPause is how long a failure to connect again is the answer to
// calls on the kept connection, before they try again.
const redialPause = 5 * time.Second

// maxRestores is how many Restores of one Repo run at once; more wait.
const maxRestores = 2

// client returns the kept connection, connecting again when it has ended,
// with the restore session reads need when read is set (asked once per
// connection: restores take part in admission, and go first).
func (r *remote) client(ctx context.Context, read bool) (*proto.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c.Closed() {
		// Calls waiting here while a connection failed share its failure
		// for a while, instead of each waiting as long again.
		if r.dialErr != nil && time.Since(r.dialFailed) < redialPause {
			return nil, r.dialErr
		}
		c, _, err := agent.Dial(ctx, r.st, 0)
		if err != nil {
			err = fmt.Errorf("xsbackup: connect to the school server again: %w", err)
			if ctx.Err() == nil { // not this caller's own cancellation
				r.dialErr, r.dialFailed = err, time.Now()
			}
			return nil, err
		}
		r.c.Close()
		r.c, r.reading, r.dialErr = c, false, nil
	}
	for read && !r.reading {
		g, err := r.c.Hello(ctx, "restore")
		if err != nil {
			return nil, fmt.Errorf("xsbackup: ask the server to read: %w", err)
		}
		if g.Granted {
			r.reading = true
			break
		}
		select {
		case <-time.After(max(g.Slot.Sub(g.ServerTime), 100*time.Millisecond)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return r.c, nil
}

// call runs fn on the kept connection, and once more on a new one when
// the connection ended under it (an idle connection the server ended as
// fn began).
func (r *remote) call(ctx context.Context, read bool, fn func(*proto.Client) error) error {
	c, err := r.client(ctx, read)
	if err != nil {
		return err
	}
	if err = fn(c); err != nil && c.Closed() && ctx.Err() == nil {
		if c, err = r.client(ctx, read); err == nil {
			err = fn(c)
		}
	}
	return err
}

// snapshotList lists the laptop's snapshots over the kept connection.
func (r *remote) snapshotList(ctx context.Context, read bool) ([]proto.SnapshotInfo, error) {
	var sns []proto.SnapshotInfo
	err := r.call(ctx, read, func(c *proto.Client) (err error) {
		sns, err = c.Snapshots(ctx)
		return err
	})
	return sns, err
}

// liveSource fetches over the kept connection, whichever it is when a
// fetch begins: a snapshot opened for reading stays readable after the
// server ended a quiet connection.
type liveSource struct{ r *remote }

func (l liveSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	done := 0       // refs fn took: a fetch again asks for the rest
	var fnErr error // fn's own refusal ends the fetch, whatever the connection
	err := l.r.call(ctx, true, func(c *proto.Client) error {
		if fnErr != nil {
			return fnErr
		}
		return agent.NewSource(c, l.r.codec).Fetch(ctx, refs[done:], func(ref blob.Ref, raw []byte) error {
			if fnErr = fn(ref, raw); fnErr == nil {
				done++
			}
			return fnErr
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

func snapshotInfo(sn proto.SnapshotInfo) Snapshot {
	return Snapshot{ID: sn.ID, Time: sn.Time, Files: sn.Files, Size: sn.Size, Pinned: sn.Pinned}
}

func (r *remote) backup(ctx context.Context, dir string, o Options) (Snapshot, error) {
	ex := o.Exclude
	if ex == nil {
		ex = noExclude
	}
	res, err := agent.Run(ctx, r.st, agent.RunOptions{Source: dir, Force: true, KeepReflashGuard: true, Exclude: ex, Progress: o.Progress, Host: o.Host})
	if err != nil {
		return Snapshot{}, fmt.Errorf("xsbackup: backup %s: %w", dir, busy(err))
	}
	switch res.Outcome {
	case agent.Later:
		return Snapshot{}, fmt.Errorf("%w: the school server reserved a slot at %s; call Backup again then", ErrBusy, res.Slot.Format(time.RFC3339))
	case agent.Skipped:
		return Snapshot{}, fmt.Errorf("%w: backup not done: %s", ErrBusy, res.Reason)
	}
	sns, err := r.snapshotList(ctx, false)
	if err != nil {
		return Snapshot{}, fmt.Errorf("xsbackup: snapshot %s is safe, but listing it failed: %w", res.Backup.Snapshot, err)
	}
	for _, sn := range sns {
		if sn.ID == res.Backup.Snapshot {
			return snapshotInfo(sn), nil
		}
	}
	return Snapshot{ID: res.Backup.Snapshot, Files: res.Backup.Files, Size: res.Backup.BytesScanned}, nil
}

func (r *remote) snapshots(ctx context.Context) ([]Snapshot, error) {
	sns, err := r.snapshotList(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("xsbackup: list snapshots: %w", err)
	}
	var out []Snapshot
	for _, sn := range sns {
		out = append(out, snapshotInfo(sn))
	}
	return out, nil
}

func (r *remote) find(ctx context.Context, id string) (chunk.ID, error) {
	sns, err := r.snapshotList(ctx, true)
	if err != nil {
		return chunk.ID{}, fmt.Errorf("xsbackup: list snapshots: %w", err)
	}
	for _, sn := range sns {
		if sn.ID == id {
			return sn.Root, nil
		}
	}
	return chunk.ID{}, fmt.Errorf("%w: %q", ErrNotFound, id)
}

func (r *remote) source() restore.Source { return liveSource{r} }

func (r *remote) restore(ctx context.Context, id, target string, paths []string) error {
	select {
	case r.restores <- struct{}{}:
		defer func() { <-r.restores }()
	case <-ctx.Done():
		return ctx.Err()
	}
	_, _, err := agent.Restore(ctx, r.st, agent.RestoreOptions{Snapshot: id, Target: target, Paths: paths})
	return busy(err)
}

// busy makes the server's "come back later" answers (too many connections
// of this laptop, the server at capacity) match ErrBusy.
func busy(err error) error {
	if err != nil && !errors.Is(err, ErrBusy) && errkind.Of(err) == errkind.Busy {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return err
}

func (r *remote) close() error {
	r.mu.Lock()
	err := r.c.Close()
	r.mu.Unlock()
	r.codec.Close()
	return err
}
