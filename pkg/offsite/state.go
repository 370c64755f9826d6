package offsite

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// StateFile is where a school server keeps what it knows is off-site,
// inside its data directory.
const StateFile = "offsite/state.json"

// State is what a school server knows the mothership holds: the snapshots
// the mothership confirmed (a commit it acknowledged over the network, or a
// receipt of an imported bundle), the last copy of the registry it has, and
// the mothership's key, pinned the first time it answered.
type State struct {
	// Mothership is the mothership's public key.
	Mothership ed25519.PublicKey `json:"mothership,omitempty"`
	// Confirmed maps "user/snapshot" to when the mothership confirmed it.
	Confirmed map[string]time.Time `json:"confirmed"`
	// Registry is the root of the registry copy the mothership has.
	Registry chunk.ID `json:"registry"`
	// RegistrySeq numbers the registry copies this school made (in
	// Origin.Seq): the mothership and a rebuild take the highest, not the
	// one the school's clock dated last, nor one a late USB stick brought.
	RegistrySeq int64 `json:"registry_seq,omitempty"`
	// Receipt is the ID of the last bundle a receipt confirmed; the next
	// export is computed against it.
	Receipt string `json:"receipt,omitempty"`
	// Exported lists the bundles this school made whose receipt has not
	// come back, by ID: before a mothership's key is pinned, a receipt
	// counts only for one of them (anyone can sign a receipt).
	Exported map[string]time.Time `json:"exported,omitempty"`
	// LastSync is when the last network sync ended without error,
	// LastError what the last failed one said.
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"`

	mu   sync.Mutex
	path string
}

// states are the states loaded in this process, by path: the daemon's
// replication and a staff export running in it share one, so neither saves
// over what the other learnt.
var (
	statesMu sync.Mutex
	states   = map[string]*State{}
)

// LoadState returns the state kept in the data directory dataDir (an empty
// state if there is none yet). Within a process, every call for a directory
// returns the same State.
func LoadState(dataDir string) (*State, error) {
	p := filepath.Join(dataDir, StateFile)
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	statesMu.Lock()
	defer statesMu.Unlock()
	if s, ok := states[p]; ok {
		return s, nil
	}
	s, err := readState(p)
	if err != nil {
		return nil, err
	}
	states[p] = s
	return s, nil
}

// ForgetState drops dataDir's state from the process's cache (a store
// closed for good, a test's temporary directory).
func ForgetState(dataDir string) {
	p, _ := filepath.Abs(filepath.Join(dataDir, StateFile))
	statesMu.Lock()
	delete(states, p)
	statesMu.Unlock()
}

func readState(p string) (*State, error) {
	s := &State{Confirmed: map[string]time.Time{}, path: p}
	b, err := atomicfile.ReadSmall(p, 256<<20)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: off-site state %s is larger than 256 MiB", errkind.ErrDamaged, p)
	}
	if err != nil {
		return nil, fmt.Errorf("read off-site state: %w", err)
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%w: off-site state %s does not decode (%v); removing it makes the next sync ask the mothership about everything again", errkind.ErrDamaged, p, err)
	}
	if s.Confirmed == nil {
		s.Confirmed = map[string]time.Time{}
	}
	return s, nil
}

// Save writes the state durably, forgetting confirmations of snapshots st no
// longer has (retention deleted them here; the mothership keeps its copy).
// A State not made by LoadState is kept in memory only.
func (s *State) Save(st *store.Store) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st != nil {
		live := map[string]bool{}
		for _, u := range st.Users() {
			for _, sn := range st.Snapshots(u.ID) {
				live[snapKey(u.ID, sn.ID)] = true
			}
		}
		for k := range s.Confirmed {
			if !live[k] {
				delete(s.Confirmed, k)
			}
		}
	}
	if s.path == "" {
		return nil // a State made in memory, not by LoadState: kept there
	}
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return fmt.Errorf("save off-site state: %w", err)
	}
	if err := atomicfile.WriteFile(s.path, b, 0o640); err != nil {
		return fmt.Errorf("save off-site state: %w", err)
	}
	return nil
}

func (s *State) confirm(key string, t time.Time) {
	s.mu.Lock()
	s.Confirmed[key] = t
	s.mu.Unlock()
}

// confirmedCopy returns a copy of the confirmed set.
func (s *State) confirmedCopy() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]time.Time, len(s.Confirmed))
	for k, v := range s.Confirmed {
		c[k] = v
	}
	return c
}

// Lag is what is not off-site yet.
type Lag struct {
	// Snapshots not confirmed by the mothership, and their stored size
	// (an upper bound of what is left to send: chunks they share with
	// what is off-site are not sent again).
	Snapshots int   `json:"snapshots"`
	Bytes     int64 `json:"bytes"`
	// Oldest is the time of the oldest of them (zero: none).
	Oldest time.Time `json:"oldest,omitzero"`
	// LastSync and LastError as in State.
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Confirmed is how many of the school's snapshots are off-site.
	Confirmed int `json:"confirmed"`
}

// Lag reports what of st is not off-site yet.
func (s *State) Lag(st *store.Store) Lag {
	conf := s.confirmedCopy()
	var l Lag
	for _, it := range Pending(st, conf) {
		l.Snapshots++
		l.Bytes += it.Snap.Stored
		if l.Oldest.IsZero() || it.Snap.Time.Before(l.Oldest) {
			l.Oldest = it.Snap.Time
		}
	}
	s.mu.Lock()
	l.LastSync, l.LastError, l.Confirmed = s.LastSync, s.LastError, len(s.Confirmed)
	s.mu.Unlock()
	return l
}
