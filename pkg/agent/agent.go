// Package agent is the laptop side of xs-backup as a library: the state a
// laptop keeps (its key, the pinned server key, the file cache, the last
// good backup), registration, the timer's run with its cheap checks first,
// and restores. cmd/xo-backup is a thin wrapper around it.
package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// State is a laptop's xs-backup state directory.
type State struct {
	Dir string
}

// DefaultStateDir is where state lives on a Sugar laptop.
func DefaultStateDir() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".sugar", "default", "xs-backup")
}

// DefaultSource is the Sugar Journal datastore.
func DefaultSource() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".sugar", "default", "datastore")
}

// Registration is what registering recorded.
type Registration struct {
	Server    string    `json:"server"`
	ServerKey string    `json:"server_key"` // hex
	Serial    string    `json:"serial"`
	Nickname  string    `json:"nickname,omitempty"`
	Approved  bool      `json:"approved"`
	When      time.Time `json:"registered"`
	// Key is this laptop's key fingerprint: staff compare it before they
	// approve (xs-admin pending, xs-admin approve SERIAL --key KEY).
	Key string `json:"key,omitempty"`
	// KeyChange: the serial was known with another key (a reflash); the
	// laptop waits until staff approve this key, then continues its backups.
	KeyChange bool `json:"key_change,omitempty"`
	// Continued: a claim code gave this laptop the serial's backups
	// (Snapshots of them); restore them with xo-backup restore --all.
	Continued bool `json:"continued,omitempty"`
	Snapshots int  `json:"snapshots,omitempty"`
}

// LastRun records the last good backup.
type LastRun struct {
	Time     time.Time `json:"time"` // on this laptop's clock
	Snapshot string    `json:"snapshot"`
	// ServerTime is when it was made on the school server's clock (zero
	// in a record older than this field): a laptop clock behind it was
	// set back or reset since.
	ServerTime time.Time `json:"server_time,omitzero"`
}

// clockNote is what a run learnt of this laptop's clock: the school
// server's clock minus this laptop's, measured during the boot Boot (the
// kernel's boot ID). A laptop whose clock battery died starts each boot at
// the same wrong date; within one boot its clock runs on, so the offset
// holds until the next boot.
type clockNote struct {
	Boot   string        `json:"boot"`
	Offset time.Duration `json:"offset"`
}

func (s State) clockNote() clockNote {
	var n clockNote
	readJSON(s.path("clock.json"), &n)
	return n
}

// noteClock records the server's time as seen now, when it tells more
// than the note already kept (another boot, or an offset a minute off).
func (s State) noteClock(boot string, server, now time.Time) {
	if boot == "" || server.IsZero() {
		return
	}
	n := clockNote{Boot: boot, Offset: server.Sub(now)}
	if old := s.clockNote(); old.Boot == n.Boot && (old.Offset-n.Offset).Abs() < time.Minute {
		return
	}
	writeJSON(s.path("clock.json"), n) // a hint: without it the next run asks the server again
}

// BootID returns the kernel's ID of this boot ("" where there is none).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || len(b) > 64 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (s State) path(name string) string { return filepath.Join(s.Dir, name) }

// Key returns the laptop's key, creating it on first use.
func (s State) Key() (ed25519.PrivateKey, error) {
	seed, err := s.seed()
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// seed returns the seed of the laptop's key, creating the key on first use.
// Deriving the key from it costs a scalar multiplication (and, the first
// time in a process, a table of multiples): Dial leaves that to the
// handshake, which needs it only when it cannot resume a session.
func (s State) seed() ([]byte, error) {
	b, err := readState(s.path("key"))
	if errors.Is(err, os.ErrNotExist) {
		key, err := proto.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return nil, err
		}
		return key.Seed(), writeAtomic(s.path("key"), proto.EncodeKey(key))
	}
	if err != nil && !errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is damaged; remove it and register again", s.path("key"))
	}
	return seed, nil
}

// Registration returns the recorded registration, or an error saying to register.
func (s State) Registration() (*Registration, error) {
	var r Registration
	b, err := readState(s.path("server.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotRegistered
	}
	if err == nil {
		err = json.Unmarshal(b, &r)
	} else if !errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("this laptop's registration %s is damaged (%v): register with the school server again (its backups stay on the server; staff may have to approve the laptop)", s.path("server.json"), err)
	}
	return &r, nil
}

// ErrNotRegistered: the laptop has not registered with a server yet.
var ErrNotRegistered = errors.New("this laptop is not registered with a school server")

// ErrNoSerial: no serial was given and this machine has no XO firmware data
// to read one from.
var ErrNoSerial = errors.New("no XO serial number found (/proc/device-tree/mfg-data/SN)")

// LastRun returns the last good backup (zero if none).
func (s State) LastRun() LastRun {
	var l LastRun
	readJSON(s.path("last.json"), &l)
	return l
}

func (s State) cachePath() string { return s.path("cache") }

// Slot is the slot the server last reserved for this laptop, on the laptop's
// own clock (zero if none is waiting).
func (s State) Slot() time.Time { return s.slot().Slot }

// slotNote is a reserved slot and when, on this laptop's clock, it was
// saved (zero in a file older than that field).
type slotNote struct {
	Slot  time.Time
	Saved time.Time `json:",omitzero"`
}

func (s State) slot() slotNote {
	var v slotNote
	readJSON(s.path("slot.json"), &v)
	return v
}

func (s State) saveSlot(t, now time.Time) error {
	return writeJSON(s.path("slot.json"), slotNote{Slot: t, Saved: now})
}

func (s State) clearSlot() { os.Remove(s.path("slot.json")) }

// maxStateFile caps what is read of a small state file (key, server.json,
// last.json, slot.json, clock.json, restore-from): each is well under a
// KiB, and a damaged one of gigabytes must not take the laptop's memory.
const maxStateFile = 1 << 20

// readState reads a small state file, at most maxStateFile bytes of it
// (atomicfile.ErrTooLarge beyond).
func readState(path string) ([]byte, error) { return atomicfile.ReadCapped(path, maxStateFile) }

func readJSON(path string, v any) error {
	b, err := readState(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s is damaged (%v); remove it", path, err)
	}
	return nil
}

// writeAtomic writes a state file atomically and durably: its loss would
// mean registering again (key, server.json), a missed slot (slot.json) or
// reading every file again (cache).
func writeAtomic(path string, b []byte) error {
	return atomicfile.WriteFile(path, b, 0o600)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, b)
}

// ReadSerial returns the laptop's serial number from the XO's firmware data.
func ReadSerial() (string, error) {
	b, err := os.ReadFile("/proc/device-tree/mfg-data/SN")
	if err != nil {
		return "", ErrNoSerial
	}
	return strings.TrimRight(strings.TrimSpace(string(b)), "\x00"), nil
}

// RegisterOptions configure Register.
type RegisterOptions struct {
	Server   string // host or host:port (default port 7457)
	Serial   string // "" reads the XO serial
	Nickname string
	// Claim is a one-time claim code from staff (xs-admin claim-code).
	Claim string
}

// DefaultPort is the server's default UDP port.
const DefaultPort = "7457"

func withPort(addr string) string {
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		return addr + ":" + DefaultPort
	}
	return addr
}

// Register registers the laptop with a server and pins its key.
func Register(ctx context.Context, st State, o RegisterOptions) (*Registration, error) {
	if o.Server == "" {
		return nil, errkind.Errorf(errkind.BadRequest, "no server address (HOST[:PORT]) given")
	}
	if o.Serial == "" {
		sn, err := ReadSerial()
		if err != nil {
			return nil, err
		}
		o.Serial = sn
	}
	key, err := st.Key()
	if err != nil {
		return nil, err
	}
	addr := withPort(o.Server)
	res, err := proto.RegisterWith(ctx, addr, key, proto.RegisterRequest{Serial: o.Serial, Nickname: o.Nickname, Claim: o.Claim})
	if err != nil {
		return nil, err
	}
	reg := &Registration{Server: addr, ServerKey: hex.EncodeToString(res.ServerKey), Serial: res.Serial,
		Nickname: o.Nickname, Approved: res.Approved, When: time.Now().UTC(),
		Key: proto.Fingerprint(key.Public().(ed25519.PublicKey)), KeyChange: res.KeyChange, Continued: res.Continued, Snapshots: res.Snapshots}
	if err := writeJSON(st.path("server.json"), reg); err != nil {
		return nil, err
	}
	if reg.Continued || reg.KeyChange || reg.Snapshots > 0 {
		// The serial's backups from before (a reflash): until they are
		// restored, an empty Journal is not backed up over them.
		if err := writeAtomic(st.path(restorePending), []byte("restore --all brings this laptop's Journal back\n")); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// restorePending is the state file that says the laptop registered as a
// serial with backups (a reflash) and has not restored them yet: Run does
// not back up an empty Journal meanwhile, which would become the latest
// backup, the one restoring the whole Journal takes. A restore of the whole
// Journal, or a backup of a Journal with files, removes it.
const restorePending = "restore-pending"

// restoreFrom is the state file holding the ID of the newest backup made
// before a reflash, pinned by the first backup run after it (before that
// run commits anything): the backup `restore --all` brings back, though the
// child's new work (or a half restored Journal the timer backed up) is the
// latest by then. A restore of the whole Journal from it that finishes
// removes it.
const restoreFrom = "restore-from"

// restoreProgress lists what an interrupted `restore --all` wrote whole
// (restore.Options.ResumeFile): the next run does not fetch it again.
const restoreProgress = "restore-progress"

// restoreFromID returns the pinned backup ("" if none).
func (s State) restoreFromID() string {
	b, err := readState(s.path(restoreFrom))
	if err != nil || len(b) > 64 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// RestorePending reports whether the laptop registered as a serial that
// has backups and has neither restored them (RestoreOptions.All) nor backed
// up a Journal with files since.
func (s State) RestorePending() bool {
	_, err := os.Lstat(s.path(restorePending))
	return err == nil
}

// Dial connects to the registered server with the laptop's key, checking
// the server's key against the pinned one; idle is
// proto.ClientConfig.IdleTimeout (0: the default). It fails with
// ErrNotRegistered if the laptop has not registered. The caller closes the
// client. The connection resumes the TLS session of the last one when the
// server still accepts its ticket (kept in the state directory, bound to
// both keys): no certificates and no signatures, and the laptop's key is
// derived only for a full handshake.
func Dial(ctx context.Context, st State, idle time.Duration) (*proto.Client, *Registration, error) {
	reg, err := st.Registration()
	if err != nil {
		return nil, nil, err
	}
	c, err := dial(ctx, st, reg, idle)
	return c, reg, err
}

// dial is Dial with the registration already read (a run reads it first,
// to end at once if the laptop is not registered).
func dial(ctx context.Context, st State, reg *Registration, idle time.Duration) (*proto.Client, error) {
	seed, err := st.seed()
	if err != nil {
		return nil, err
	}
	sk, err := hex.DecodeString(reg.ServerKey)
	if err != nil || len(sk) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s is damaged; register again", st.path("server.json"))
	}
	return proto.Dial(ctx, proto.ClientConfig{Addr: reg.Server, ServerKey: sk, IdleTimeout: idle,
		LoadKey:  func() (ed25519.PrivateKey, error) { return ed25519.NewKeyFromSeed(seed), nil },
		Sessions: newSessionFile(st.path(sessionName), seed, sk)})
}

// removeLeftovers removes what a run killed while writing its state (a
// power cut, an empty battery, SIGKILL at shutdown) left behind: the
// temporary files of the cache, last.json, slot.json, clock.json,
// restore-from and the TLS session (not the key's, server.json's or
// restore-pending's: a registration, which takes no lock, may be writing
// them).
// Called with the lock held, so no run is writing them.
func (s State) removeLeftovers() {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		for _, prefix := range []string{".cache.tmp-", ".last.json.tmp-", ".slot.json.tmp-", ".clock.json.tmp-",
			"." + restoreFrom + ".tmp-", sessionName + ".tmp"} {
			if strings.HasPrefix(n, prefix) {
				os.Remove(s.path(n))
			}
		}
	}
}

// waitLock takes the run lock, waiting (up to lockWait) while a backup
// run holds it.
func (s State) waitLock(ctx context.Context) (release func(), err error) {
	deadline := time.Now().Add(lockWait)
	for {
		release, ok, err := s.lock()
		if err != nil || ok {
			return release, err
		}
		if time.Now().After(deadline) {
			return nil, errors.New("a backup run has held this laptop's lock for a long while; try again when it has finished")
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// lockWait is how long a restore of the whole Journal waits for a backup
// run to finish.
const lockWait = 30 * time.Minute

// lock takes the run lock; ok is false if another run holds it.
func (s State) lock() (release func(), ok bool, err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(s.path("lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if fi, lerr := os.Lstat(s.path("lock")); err != nil && lerr == nil && !fi.Mode().IsRegular() {
		// Damage (a directory or a link in its place): the lock holds no
		// data, only the open file locks, so it is made again rather than
		// failing every run.
		os.RemoveAll(s.path("lock"))
		f, err = os.OpenFile(s.path("lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	}
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false, nil
	}
	return func() { f.Close() }, true, nil
}

// OnLowBattery reports whether the laptop runs on battery below threshold
// percent, reading /sys/class/power_supply (or dir, for tests). The
// laptop's own batteries count together (two of 23 Wh at 10% and 100% are
// 55%, weighed by their energy or charge when the kernel gives it, else by
// capacity alone); a device's battery (a wireless mouse's, scope
// "Device") is not the laptop's. It is on battery when one of them
// discharges and no charger is online.
func OnLowBattery(dir string, threshold int) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	discharging, onAC := false, false
	var pct, n float64    // capacities, for batteries without energy figures
	var now, full float64 // energy (or charge) figures
	for _, e := range ents {
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name(), name))
			return strings.TrimSpace(string(b))
		}
		switch read("type") {
		case "Mains", "USB":
			if read("online") == "1" {
				onAC = true
			}
		case "Battery":
			if read("scope") == "Device" {
				continue
			}
			if read("status") == "Discharging" {
				discharging = true
			}
			if bn, bf, ok := batteryFigures(read); ok {
				now, full = now+bn, full+bf
				continue
			}
			if c, err := strconv.Atoi(read("capacity")); err == nil && c >= 0 && c <= 100 {
				pct, n = pct+float64(c), n+1
			}
		}
	}
	if !discharging || onAC {
		return false
	}
	switch {
	case full > 0 && n == 0:
		return now/full*100 < float64(threshold)
	case n > 0 && full == 0:
		return pct/n < float64(threshold)
	case n > 0:
		// Some with figures, some without: each battery as one.
		return (now/full*100+pct)/(n+1) < float64(threshold)
	}
	return false
}

// batteryFigures returns a battery's energy now and when full (or its
// charge, for batteries that report that instead).
func batteryFigures(read func(string) string) (now, full float64, ok bool) {
	for _, unit := range []string{"energy", "charge"} {
		n, err1 := strconv.ParseFloat(read(unit+"_now"), 64)
		f, err2 := strconv.ParseFloat(read(unit+"_full"), 64)
		if err1 == nil && err2 == nil && f > 0 && n >= 0 && n <= 2*f {
			return min(n, f), f, true
		}
	}
	return 0, 0, false
}
