package offsite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Files of the school's registry, the snapshot (origin user 0) that carries
// what a rebuilt server needs besides the laptops' snapshots.
const (
	RegUsers  = "users.json"        // every laptop registration ([]store.User)
	RegStore  = "store.json"        // the store's chunker parameters (RegistryInfo)
	RegSealed = "server.key.sealed" // the server key sealed with the recovery passphrase
	RegPub    = "server.pub"        // the server's public key, hex
	// RegRecovery is the public half of the recovery key derived from the
	// kit's passphrase (hex): a new machine holding the passphrase proves
	// with it to the mothership that it speaks for the school.
	RegRecovery = "recovery.pub"
)

// RegistryInfo is the registry's store.json.
type RegistryInfo struct {
	School string       `json:"school"`
	Params chunk.Params `json:"params"`
}

// Options tune a replication.
type Options struct {
	// School is the school's name (its account on the mothership).
	School string
	// KeyDir holds server.key.sealed and server.pub, copied into the
	// registry when present ("": none).
	KeyDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Progress, if set, is called after each snapshot.
	Progress func(done, total int)
	// NoConfirm leaves state as it is: an export's bundle is confirmed only
	// by the receipt of its import.
	NoConfirm bool
}

// Replicate sends every snapshot of st that state does not know to be
// off-site, and a new copy of the registry when it changed, to sink. Each
// snapshot is confirmed in state (and state saved) as soon as the sink
// committed it, so an interrupted run resumes with the next one; blobs the
// sink already holds are not sent again (for the mothership, including
// those of an interrupted snapshot). A snapshot whose blobs are damaged here
// is reported in Failed and the run goes on.
func Replicate(ctx context.Context, st *store.Store, sink Sink, state *State, opts Options) (*Report, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	start := time.Now()
	rep := &Report{}
	r := newReplicator(st, sink, rep)
	items := Pending(st, state.confirmedCopy())
	var committed []error // of the current group, by index in it
	for i, it := range items {
		info := manifest.CommitInfo{Host: it.Snap.Host, Source: it.Snap.Source, Origin: it.Origin()}
		if i%groupSnapshots == 0 {
			// Send what the next snapshots lack in one walk: a round trip
			// per directory level for the whole group instead of for each
			// snapshot, which on a 200 ms satellite link was most of a
			// night's sync. Then commit the group's snapshots, several at
			// once: a commit is a round trip too.
			group := items[i:min(len(items), i+groupSnapshots)]
			perr := r.prefetch(ctx, group)
			if perr != nil && !isLocalDamage(perr) {
				rep.Took = time.Since(start)
				return rep, perr
			}
			if perr != nil {
				// A blob damaged here: the group's snapshots are sent one
				// by one below, and only those that need the blob fail. (A
				// mothership refuses an incomplete commit, but a bundle
				// cannot know: it would list a snapshot it lacks blobs of,
				// and the whole stick would be refused at import.)
				committed = make([]error, len(group))
				for j := range committed {
					committed[j] = blob.ErrNotHeld
				}
			} else {
				committed = commitAll(ctx, sink, group)
			}
		}
		err := committed[i%groupSnapshots]
		if errors.Is(err, blob.ErrNotHeld) {
			err = r.sendSnapshot(ctx, it.Snap.Root, info)
		}
		if err != nil && (isLocalDamage(err) || refused(err)) {
			// This snapshot alone: the others, and the registry, still go.
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s %s: %v", it.Serial, it.Snap.ID, err))
			r.drop()
			continue
		}
		if err != nil {
			rep.Took = time.Since(start)
			return rep, fmt.Errorf("snapshot %s of %s: %w", it.Snap.ID, it.Serial, err)
		}
		rep.Snapshots++
		if !opts.NoConfirm {
			state.confirm(it.Key(), opts.Now().UTC())
			if err := state.Save(nil); err != nil {
				return rep, err
			}
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(items))
		}
	}
	sent, err := sendRegistry(ctx, st, r, state, opts)
	rep.Registry = sent
	rep.Took = time.Since(start)
	if err != nil {
		return rep, fmt.Errorf("registry: %w", err)
	}
	if opts.NoConfirm {
		return rep, nil
	}
	return rep, state.Save(st)
}

// refused tells a snapshot the mothership refuses as it is (a request it
// calls invalid) from a failure of the link: sent again, it is refused
// again, and it must not stop every later snapshot and the registry.
func refused(err error) bool {
	return errors.Is(err, errkind.ErrBadRequest)
}

// isLocalDamage tells a blob this server cannot read (damaged or lost here)
// from a failure of the link or the mothership.
func isLocalDamage(err error) bool {
	var le *localErr
	return errors.As(err, &le)
}

type localErr struct{ err error }

func (e *localErr) Error() string { return e.err.Error() }
func (e *localErr) Unwrap() error { return e.err }

// sendRegistry backs up the registry (a small directory written to a
// temporary place with fixed times, so an unchanged registry has the same
// root) and commits it unless the mothership already has that root.
func sendRegistry(ctx context.Context, st *store.Store, r *replicator, state *State, opts Options) (bool, error) {
	dir, err := os.MkdirTemp("", "xs-registry-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	if err := WriteRegistry(dir, st, opts.School, opts.KeyDir); err != nil {
		return false, err
	}
	now := opts.Now().UTC()
	state.mu.Lock()
	seq := state.RegistrySeq + 1
	state.mu.Unlock()
	t := &registryTarget{sink: r.sink, have: state.Registry, info: manifest.CommitInfo{Source: "registry",
		Origin: &manifest.Origin{User: 0, Serial: "", Snapshot: string(store.NewSnapshotID(now)), Time: now, Seq: seq}}}
	if _, err := backup.Run(ctx, dir, t, backup.Options{Params: st.Params()}); err != nil {
		return false, err
	}
	if t.sent {
		state.mu.Lock()
		state.RegistrySeq = max(state.RegistrySeq, seq)
		if !opts.NoConfirm {
			state.Registry = t.root
		}
		state.mu.Unlock()
	}
	return t.sent, nil
}

// WriteRegistry writes the registry files of st into dir: every user, the
// store's parameters and, from keyDir, the sealed server key and the public
// key.
func WriteRegistry(dir string, st *store.Store, school, keyDir string) error {
	users, err := json.MarshalIndent(st.Users(), "", " ")
	if err != nil {
		return err
	}
	info, _ := json.MarshalIndent(RegistryInfo{School: school, Params: st.Params()}, "", " ")
	files := map[string][]byte{RegUsers: users, RegStore: info}
	if keyDir != "" {
		for _, name := range []string{RegSealed, RegPub, RegRecovery} {
			b, err := atomicfile.ReadCapped(filepath.Join(keyDir, name), 1<<20)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			files[name] = b
		}
	}
	fixed := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
		if err := os.Chtimes(p, fixed, fixed); err != nil {
			return err
		}
	}
	return os.Chtimes(dir, fixed, fixed)
}

// registryTarget adapts a Sink to backup.Target for the registry, leaving
// out the commit when the mothership has the same root.
type registryTarget struct {
	sink Sink
	have chunk.ID
	info manifest.CommitInfo
	root chunk.ID
	sent bool
}

func (t *registryTarget) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	return t.sink.Need(ctx, refs)
}
func (t *registryTarget) Put(ctx context.Context, blobs []blob.Blob) error {
	return t.sink.Put(ctx, blobs)
}
func (t *registryTarget) Commit(ctx context.Context, root chunk.ID) (string, error) {
	t.root = root
	if root == t.have {
		return "", nil
	}
	if err := t.sink.Commit(ctx, root, t.info); err != nil {
		return "", err
	}
	t.sent = true
	return t.info.Origin.Snapshot, nil
}

// StoreSink replicates into a store as one user: a mothership importing a
// school's bundle (the user is the school's account).
type StoreSink struct {
	S    *store.Store
	User store.UserID
}

// Need implements Sink.
func (k *StoreSink) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	return k.S.Need(ctx, k.User, refs)
}

// Put implements Sink.
func (k *StoreSink) Put(ctx context.Context, blobs []blob.Blob) error {
	return k.S.Put(ctx, k.User, blobs)
}

// Commit implements Sink.
func (k *StoreSink) Commit(ctx context.Context, root chunk.ID, info manifest.CommitInfo) error {
	_, err := k.S.Commit(ctx, k.User, root, info)
	return err
}

// commitsInFlight is how many commits Replicate has in flight at once.
const commitsInFlight = 8

// commitAll commits the snapshots of group, commitsInFlight at a time, and
// returns each one's error.
func commitAll(ctx context.Context, sink Sink, group []Item) []error {
	errs := make([]error, len(group))
	sem := make(chan struct{}, commitsInFlight)
	var wg sync.WaitGroup
	for i, it := range group {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			info := manifest.CommitInfo{Host: it.Snap.Host, Source: it.Snap.Source, Origin: it.Origin()}
			errs[i] = sink.Commit(ctx, it.Snap.Root, info)
		}()
	}
	wg.Wait()
	return errs
}
