package offsite

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Mothership says how a school server reaches its mothership.
type Mothership struct {
	// Addr is the mothership's UDP address, host:port.
	Addr string
	// School is this school's name, its account on the mothership.
	School string
	// Key is the school server's own key: the mothership knows the school
	// by it.
	Key ed25519.PrivateKey
	// Pinned, if set, is the mothership's public key as its staff gave it;
	// otherwise the key seen at registration is pinned in the state.
	Pinned ed25519.PublicKey
	// Rate caps the bytes per second sent (0: no cap beyond the
	// mothership's own pacing).
	Rate int64
}

// mothershipKeyErr reports a mothership that presented a key other than the
// one pinned for it. It is proto.ErrServerKeyChanged (errors.Is), whose own
// text speaks of a laptop and its school server.
type mothershipKeyErr struct{ addr, want string }

func (e *mothershipKeyErr) Error() string {
	return "the mothership at " + e.addr + " presents a key other than " + e.want
}

func (e *mothershipKeyErr) Unwrap() error { return proto.ErrServerKeyChanged }

// Register asks the mothership to take this school. Its staff approve the
// school (as a school's staff approve a laptop); until then Sync fails with
// errkind.ErrNotApproved. The mothership's key is pinned in state.
func Register(ctx context.Context, m Mothership, state *State) (proto.RegisterResult, error) {
	res, err := proto.Register(ctx, m.Addr, m.Key, m.School, "school "+m.School)
	if err != nil {
		return res, err
	}
	if m.Pinned != nil && !m.Pinned.Equal(res.ServerKey) {
		return res, fmt.Errorf("%w: the mothership at %s presents key %s, not the configured %s", errkind.ErrPermission,
			m.Addr, proto.Fingerprint(res.ServerKey), proto.Fingerprint(m.Pinned))
	}
	state.mu.Lock()
	state.Mothership = res.ServerKey
	state.mu.Unlock()
	return res, state.Save(nil)
}

// Sync replicates st to the mothership over the network: everything not yet
// confirmed off-site, only the chunks the mothership lacks for this school,
// at most m.Rate bytes a second. A school not yet registered registers first.
// The outcome is recorded in state (LastSync or LastError).
func Sync(ctx context.Context, st *store.Store, m Mothership, state *State, opts Options) (rep *Report, err error) {
	defer func() {
		state.mu.Lock()
		if err != nil {
			state.LastError = err.Error()
		} else {
			state.LastSync, state.LastError = time.Now().UTC(), ""
		}
		state.mu.Unlock()
		if serr := state.Save(st); err == nil {
			err = serr
		}
	}()
	if opts.School == "" {
		opts.School = m.School
	}
	state.mu.Lock()
	pinned := state.Mothership
	state.mu.Unlock()
	if pinned == nil {
		if _, err := Register(ctx, m, state); err != nil {
			return nil, fmt.Errorf("register with the mothership: %w", err)
		}
		pinned = state.Mothership
	}
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: m.Addr, Key: m.Key, ServerKey: pinned, Streams: 2})
	if errors.Is(err, proto.ErrServerKeyChanged) {
		return nil, &mothershipKeyErr{m.Addr, "the one this school pinned when it registered: someone may be impersonating it; if it was really rebuilt with a new key, ask its staff"}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the mothership: %w", err)
	}
	defer c.Close()
	lag := state.Lag(st)
	c.Expect = proto.Work{Bytes: lag.Bytes, Files: int64(lag.Snapshots)}
	g, err := c.Hello(ctx, "backup")
	if err != nil {
		return nil, fmt.Errorf("the mothership refused the sync: %w", err)
	}
	if !g.Granted {
		return nil, errkind.Errorf(errkind.Busy, "the mothership is busy; it asks this school to come back at %s", g.Slot.Local().Format(time.DateTime))
	}
	sink := &netSink{c: c, rate: m.Rate, start: time.Now()}
	rep, err = Replicate(ctx, st, sink, state, opts)
	if err == nil {
		err = c.Bye(ctx)
	}
	return rep, err
}

// netSink replicates through a proto.Client session, pacing Put to rate.
type netSink struct {
	c     *proto.Client
	rate  int64
	start time.Time
	sent  int64
}

func (n *netSink) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	return n.c.Need(ctx, refs)
}

func (n *netSink) Put(ctx context.Context, blobs []blob.Blob) error {
	if n.rate > 0 {
		// Keep the average since the start at or under the cap.
		due := n.start.Add(time.Duration(float64(n.sent) / float64(n.rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	if err := n.c.Put(ctx, blobs); err != nil {
		return err
	}
	for i := range blobs {
		n.sent += int64(len(blobs[i].Data))
	}
	return nil
}

func (n *netSink) Commit(ctx context.Context, root chunk.ID, info manifest.CommitInfo) error {
	_, err := n.c.CommitWith(ctx, root, info)
	return err
}
