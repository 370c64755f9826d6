package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"golang.org/x/sys/unix"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// FormatVersion is the on-disk format this package writes.
const FormatVersion = 1

// Options configure Open. The zero value opens (or creates) a store with the
// default chunker parameters, the real clock and file system.
type Options struct {
	// Params are the chunker parameters a new store is created with. A store
	// keeps the parameters it was created with for ever: if Params is set and
	// differs from an existing store's, Open fails. Zero means
	// chunk.DefaultParams() for a new store and "whatever it has" for an
	// existing one.
	Params chunk.Params
	// ReadOnly opens the store for reading only (restore, list, check
	// without repair). Several read-only opens may share a stopped store.
	ReadOnly bool
	// Rebuild opens a store being rebuilt from its mothership: uploads
	// and commits skip the laptops' account checks (revoked, waiting for
	// approval, hard quota), so that every laptop's backups come back
	// under the registration it had, whatever that says.
	Rebuild bool
	// Existing refuses to create a store: where dir holds none, Open
	// fails with ErrNotFound and writes nothing there. Staff tools set
	// it, so that a mistyped directory is an error, not a new, empty
	// store that every later command then reads and writes.
	Existing bool
	// Now is the clock (server-assigned snapshot times, pending upload ages).
	// Default time.Now.
	Now func() time.Time
	// Reserve is the free space, in bytes, the store keeps on its file
	// system: writes that would go below it fail with ErrStorageFull.
	// Default 256 MiB; negative disables the check.
	Reserve int64
	// PackSize is the size at which a pack file is closed and a new one
	// started. Default 64 MiB (16 MiB with a Remote).
	PackSize int64
	// FS is where the store's files live. Default DirFS(dir).
	FS FS
	// Hook, if set, is called at named points inside write paths (see
	// HookPoints). It exists for crash and fault-injection tests.
	Hook func(point string)
	// DefaultQuota applies to users without their own quota settings.
	DefaultQuota Quota
	// JobBatch is how many reference-count updates go into one index
	// transaction (default 2000). Tests set it small so that counting one
	// snapshot takes many transactions and a crash can land between them.
	JobBatch int
	// Retention is the retention policy of users without their own.
	// Nil means DefaultPolicy().
	Retention *Policy
	// PendingExpiry is how long an upload no snapshot references is kept
	// for the session that sent it to resume (default 72 hours). An upload
	// stamped while the clock read behind the newest time the store knows
	// (a clock reset to 2000), or ahead of the lifecycle's time, is kept
	// that long from the night the clock is right. (The newest time known
	// is that of the newest snapshot committed here: after one committed
	// while the clock ran years ahead, a later reset to 2000 is not seen.)
	PendingExpiry time.Duration
	// CompactBelow: garbage collection rewrites pack files whose live
	// fraction is below it (default 0.5; 1 rewrites every pack with any
	// garbage, a negative value never rewrites).
	CompactBelow float64
	// ScrubDays: the nightly lifecycle reads back 1/ScrubDays of the pack
	// files, so every pack is verified at least every ScrubDays nights
	// (default 30; negative: no scrub).
	ScrubDays int
	// IndexMemory caps the Badger index's caches and memtables, in bytes
	// (roughly). Default 96 MiB, which keeps a school's index well under
	// the server's memory budget.
	IndexMemory int64
	// Remote, if set, keeps the pack files in an object store (see
	// Remote and pkg/store/s3) instead of the store's directory, which
	// then holds the index, the metadata and the packs being written.
	// Nil (the default) keeps everything in the directory.
	Remote Remote
	// RemoteCache bounds the cache of pack records read from the Remote,
	// in bytes (default 128 MiB).
	RemoteCache int64
	// RemoteParallel limits the ranged reads in flight to the Remote
	// (default 8).
	RemoteParallel int
}

// HookPoints are the points at which Options.Hook is called.
var HookPoints = []string{
	"put:after-pack-write", "put:after-pack-sync", "put:after-index-commit",
	"commit:after-validate", "commit:after-snapshot-file", "commit:after-job-record",
	"commit:before-ack", "refs:after-batch", "delete:after-file-remove",
	"gc:after-sweep-batch", "compact:after-copy-sync", "compact:after-index",
	// Only with Options.Remote:
	"remote:before-upload", "remote:after-upload",
}

// Quota limits a user's stored bytes. Zero fields mean "no limit".
type Quota struct {
	// Soft: over it, the nightly lifecycle deletes the oldest unpinned
	// snapshots (never the latest) until the user is under it again.
	Soft int64 `json:"soft,omitempty"`
	// Hard: an upload that would cross it is refused.
	Hard int64 `json:"hard,omitempty"`
}

// storeConfig is written once, when the store is created.
type storeConfig struct {
	Format  int          `json:"format"`
	Created time.Time    `json:"created"`
	Params  chunk.Params `json:"chunker"`
}

const configName = "xs-store.json"

// Store is a school's chunk store: pack files, a Badger index, users and
// their snapshots, in one directory. Its methods are safe for concurrent use.
//
// Its parts: pack files (format, writer, damage-tolerant scan) live in
// internal/pack, the file system and the durable-write helper in
// internal/fsys; the index (index.go: blob → pack location, owners, holds,
// usage), reference counting (refs.go: commits, deletions and the jobs that
// apply them), users and snapshots (meta.go, identity.go), the lifecycle
// (lifecycle.go, retention.go, quota.go, gc.go), damage (damage.go,
// account.go) and check/repair (check.go) are files of this package that
// share the fields below.
//
// Lock order. A goroutine holding a lock may take only locks further down
// this list, never one above it:
//
//  1. a user's session lock (held by a backup session, tried by the
//     lifecycle's whileIdle)
//  2. gcMu (one garbage collection at a time, and none while Check runs)
//  3. refMu (reference counts: commits, deletions, jobs, GC sweeps) or
//     putMu (uploads, shared; compaction's barrier, exclusive): never both
//     (Put lets go of putMu before it takes refMu to run a healed tree's jobs)
//  4. retryMu (a transaction retrying after repeated conflicts)
//  5. leaves, never held while another lock is taken: mu, sessMu, freeMu,
//     shadowMu, recheckMu, the accounting mutex and the pack writer's own.
type Store struct {
	dir   string
	fsys  FS
	opts  Options
	db    *badger.DB
	codec *chunk.Codec
	packs *pack.Writer
	pio   *packIO
	lock  *os.File
	cfg   storeConfig
	// closed is set by Close: every later call fails with ErrClosed.
	closed atomic.Bool
	// movedAside names the damaged index OpenForRepair moved aside.
	movedAside string
	// marked is what numberingMark holds (nil until the snapshots are
	// loaded: only then is it written, at each start and close), under
	// markMu.
	markMu sync.Mutex
	marked map[string]int64
	loaded bool // the snapshots were loaded: the mark may be written
	// metaDamage lists user and snapshot files Open found damaged.
	metaDamage []MetaDamage

	recheckMu sync.Mutex // guards recheck
	// recheck holds stored copies that uploads were deduplicated against,
	// for the next scrub to verify first.
	recheck map[blob.Ref]objRec

	// writes counts index transactions (Check compares counts only over a
	// stretch with none: backups go on while it runs).
	writes atomic.Uint64

	// refMu serialises changes to reference counts: commits, snapshot
	// deletions, the jobs that apply them, and garbage collection.
	refMu sync.Mutex
	// putMu is held (shared) by uploads from their pack write to their
	// index commit; compaction takes it briefly as a barrier.
	putMu sync.RWMutex
	gcMu  sync.Mutex // one garbage collection at a time
	// retryMu is held by transactions retrying after repeated conflicts.
	retryMu   sync.Mutex
	conflicts atomic.Int64 // transactions retried after a conflict
	// clockHigh is the newest time (Unix seconds) the store knows: its
	// creation and the snapshots it committed (see clockera.go).
	clockHigh atomic.Int64

	mu      sync.RWMutex // guards the fields below
	users   map[UserID]*User
	serials map[string]UserID      // current serial -> user
	snaps   map[UserID][]*Snapshot // sorted by time, oldest first
	nextUID UserID

	sessMu   sync.Mutex // guards sessions
	sessions map[UserID]*sync.RWMutex

	shadowMu   sync.Mutex // guards shadow, shadowSize
	shadow     File
	shadowSize int64
	shadowBuf  []byte // a record's bytes, reused

	freeMu    sync.Mutex // guards freeCache, freeAt
	freeCache int64
	freeAt    time.Time
}

// Open opens the store in dir, creating it if dir has no store yet. It
// finishes any work a crash interrupted (reference counting of snapshots
// committed just before the crash) before it returns.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	return open(ctx, dir, opts, false)
}

// OpenForRepair opens a store for Repair even when its index is too damaged
// to open: the damaged index directory is then moved aside (to
// index.damaged-TIME, named in RepairReport.IndexMovedAside) and a new one
// started. It does not finish interrupted work first (Repair recounts
// everything). The only thing to do with the result is Repair, then Close.
func OpenForRepair(ctx context.Context, dir string, opts Options) (*Store, error) {
	opts.ReadOnly = false
	return open(ctx, dir, opts, true)
}

// exists reports whether path names something (an error other than "not
// there" counts as there: Open then reports it).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func open(ctx context.Context, dir string, opts Options, forRepair bool) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Reserve == 0 {
		opts.Reserve = 256 << 20
	}
	if opts.PackSize <= 0 {
		opts.PackSize = 64 << 20
		if opts.Remote != nil {
			// Smaller packs on an object store: each is uploaded as soon
			// as it is sealed, while the backup goes on, so less is left
			// to upload when the snapshot is committed.
			opts.PackSize = 16 << 20
		}
	}
	if opts.JobBatch <= 0 {
		opts.JobBatch = 2000
	}
	if opts.Retention == nil {
		p := DefaultPolicy()
		opts.Retention = &p
	} else if err := opts.Retention.Validate(); err != nil {
		return nil, err
	}
	if opts.PendingExpiry <= 0 {
		opts.PendingExpiry = 72 * time.Hour
	}
	if opts.ScrubDays == 0 {
		opts.ScrubDays = 30
	}
	if opts.CompactBelow == 0 {
		opts.CompactBelow = 0.5
	}
	if opts.IndexMemory <= 0 {
		opts.IndexMemory = 96 << 20
	}
	if opts.Existing && opts.FS == nil {
		// A bucket's store may have its configuration only in the bucket
		// (loadConfig checks it there), but its local directory exists.
		// A store whose configuration file was lost still has its index
		// or packs (a repair writes the file again).
		probe := []string{dir}
		if opts.Remote == nil {
			probe = []string{filepath.Join(dir, configName), filepath.Join(dir, "index"), filepath.Join(dir, "packs")}
		}
		if !slices.ContainsFunc(probe, exists) {
			return nil, fmt.Errorf("%w: no store in %s", ErrNotFound, dir)
		}
	}
	if !opts.ReadOnly && !opts.Existing {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
	}
	if opts.FS == nil {
		opts.FS = DirFS(dir)
	}
	if opts.Remote != nil {
		opts.FS = &mirrorFS{FS: opts.FS, remote: opts.Remote}
	}
	s := &Store{dir: dir, fsys: opts.FS, opts: opts,
		users: map[UserID]*User{}, sessions: map[UserID]*sync.RWMutex{}, serials: map[string]UserID{}, snaps: map[UserID][]*Snapshot{}}
	if err := s.lockDir(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()
	s.pio = newPackIO(s.fsys, opts.Remote, opts.RemoteCache, opts.RemoteParallel, s.hook)
	if opts.Remote != nil && !opts.ReadOnly {
		if err := s.fetchMeta(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.loadConfig(); err != nil {
		return nil, err
	}
	var err error
	if s.codec, err = chunk.NewCodec(); err != nil {
		return nil, err
	}
	if !forRepair {
		f, err := s.fsys.OpenFile(repairingFile, os.O_RDONLY, 0)
		if err == nil {
			f.Close()
		}
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: an index rebuild (repair) began and did not finish, so the index is not whole: run the repair again", ErrIndexDamaged)
		}
	}
	if !forRepair && !opts.ReadOnly && !exists(filepath.Join(dir, "index")) {
		// A new index would take every blob the snapshots use for lost
		// (and the laptops would send everything again): the index was
		// deleted, or the data directory copied without it.
		if seqs, err := s.pio.list(ctx); err != nil {
			return nil, fmt.Errorf("list packs: %w", err)
		} else if len(seqs) > 0 {
			return nil, fmt.Errorf("%w: the index (%s) is missing, but the store holds %d pack file(s): it must be rebuilt from them", ErrIndexDamaged, filepath.Join(dir, "index"), len(seqs))
		}
	}
	if err := s.openIndex(); err != nil {
		if !forRepair || errors.Is(err, ErrLocked) || errors.Is(err, errkind.ErrPermission) {
			return nil, err // not damage: a rebuild would not help
		}
		aside := fmt.Sprintf("index.damaged-%s", opts.Now().UTC().Format("20060102T150405"))
		if rerr := os.Rename(filepath.Join(dir, "index"), filepath.Join(dir, aside)); rerr != nil {
			return nil, fmt.Errorf("%v; moving it aside failed too: %w", err, rerr)
		}
		s.movedAside = aside
		if err := s.openIndex(); err != nil {
			return nil, err
		}
	}
	if err := s.loadMeta(); err != nil {
		return nil, err
	}
	seqs, err := s.pio.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	next := uint64(1)
	if len(seqs) > 0 {
		next = slices.Max(seqs) + 1
	}
	if opts.Remote != nil {
		// A listing may lag behind the last uploads: never reuse a number.
		next = max(next, s.highSeq()+1)
	}
	s.packs = pack.NewWriter(s.fsys, opts.PackSize, next)
	if opts.Remote != nil && !opts.ReadOnly {
		s.packs.BeforeCreate = s.recordHighSeq
		s.packs.Sealed = s.pio.sealed
		// Packs the last run left staged: uploaded (then the copy goes)
		// or not (then it is uploaded now).
		if err := s.pio.queueLocal(); err != nil {
			return nil, fmt.Errorf("list staged packs: %w", err)
		}
		if err := s.syncMeta(ctx); err != nil {
			return nil, err
		}
	}
	if !opts.ReadOnly && !forRepair {
		if err := s.startAccounting(ctx, seqs); err != nil {
			return nil, fmt.Errorf("pack accounting: %w", err)
		}
		if err := s.reconcile(ctx); err != nil {
			return nil, fmt.Errorf("finish interrupted work: %w", err)
		}
	}
	ok = true
	return s, nil
}

// lockDir takes the store's lock: exclusive for a writer, shared for a
// read-only open (several readers may share a stopped store, but none may
// read while a writer has it: Badger would refuse its index with an error
// that reads like damage).
func (s *Store) lockDir() error {
	flag, how := os.O_RDWR|os.O_CREATE, unix.LOCK_EX
	if s.opts.ReadOnly {
		flag, how = os.O_RDONLY, unix.LOCK_SH
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), flag, 0o640)
	if s.opts.ReadOnly && errors.Is(err, os.ErrNotExist) {
		return nil // never opened for writing (or not a store: loadConfig says so)
	}
	if err != nil {
		return fmt.Errorf("lock store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is open in another process", ErrLocked, s.dir)
		}
		return fmt.Errorf("lock store: %w", err)
	}
	s.lock = f
	return nil
}

func (s *Store) loadConfig() error {
	b, err := fsys.ReadFile(s.fsys, configName, 1<<16)
	if errors.Is(err, os.ErrNotExist) {
		if s.opts.ReadOnly || (s.opts.Existing && !exists(filepath.Join(s.dir, "index")) && !exists(filepath.Join(s.dir, "packs"))) {
			return fmt.Errorf("%w: no store in %s", ErrNotFound, s.dir)
		}
		p := s.opts.Params
		if p == (chunk.Params{}) {
			p = chunk.DefaultParams()
		}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%w: chunker parameters: %v", ErrInvalid, err)
		}
		s.cfg = storeConfig{Format: FormatVersion, Created: s.opts.Now().UTC(), Params: p}
		s.noteTime(s.cfg.Created)
		b, _ := json.MarshalIndent(s.cfg, "", "  ")
		return fsys.WriteFileAtomic(s.fsys, configName, b)
	}
	if err != nil {
		return fmt.Errorf("read store config: %w", err)
	}
	if err := json.Unmarshal(b, &s.cfg); err != nil {
		return fmt.Errorf("%w: %s is damaged (%v); restore it from a copy", ErrCorrupt, configName, err)
	}
	if s.cfg.Format != FormatVersion {
		return fmt.Errorf("store format %d is not supported by this version (wants %d): upgrade xs-backup", s.cfg.Format, FormatVersion)
	}
	if err := s.cfg.Params.Validate(); err != nil {
		// Every laptop would fail its backups with a chunker error that
		// never names this file.
		def, _ := json.Marshal(chunk.DefaultParams())
		return fmt.Errorf("%w: %s is damaged: its chunker parameters are not valid (%v); restore it from a copy (a store made with the default parameters has \"chunker\": %s)", ErrCorrupt, configName, err, def)
	}
	if s.opts.Params != (chunk.Params{}) && s.opts.Params != s.cfg.Params {
		return fmt.Errorf("%w: the store was created with chunker parameters %+v and never changes them; remove the chunker settings from the configuration", ErrInvalid, s.cfg.Params)
	}
	s.noteTime(s.cfg.Created)
	return nil
}

func (s *Store) openIndex() (err error) {
	defer recoverIndex(&err)
	mem := s.opts.IndexMemory
	bo := badger.DefaultOptions(filepath.Join(s.dir, "index")).
		WithSyncWrites(true).
		WithLogger(nil).
		WithReadOnly(s.opts.ReadOnly).
		WithMemTableSize(mem / 6).
		WithNumMemtables(2).
		WithBlockCacheSize(mem / 3).
		WithIndexCacheSize(mem / 6).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithDetectConflicts(true).
		// Verify every block when it is read, so that a damaged index is an
		// error (ErrIndexDamaged: Repair rebuilds it), not data read as if
		// whole. (Not OnTableRead: Badger v4.9 dereferences nil when a table
		// fails that check while opening, which crashes the process.)
		WithChecksumVerificationMode(options.OnBlockRead)
	err = probeIndex(bo.Dir)
	var db *badger.DB
	if err == nil {
		db, err = badger.Open(bo)
	}
	if errors.Is(err, ErrIndexDamaged) {
		return err
	}
	if err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") {
		// Badger's own flock: another process has the index open (Badger
		// formats the cause away, so only its words tell). Not damage.
		return fmt.Errorf("%w: %s is open in another process (%v)", ErrLocked, s.dir, err)
	}
	if err != nil && (errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "permission denied")) {
		// Files another user owns (a staff tool run as root): not damage,
		// and a repair would not help.
		return fmt.Errorf("%w: open index: %v", errkind.ErrPermission, err)
	}
	if err != nil {
		return fmt.Errorf("%w: open index: %v", ErrIndexDamaged, err)
	}
	s.db = db
	return nil
}

// Close flushes and closes the store. Every acknowledged write is already
// durable; Close only releases resources.
func (s *Store) Close() error { return s.closeAll() }

func (s *Store) closeAll() error {
	if !s.closed.Load() {
		s.saveNumbering() // numbers as they are now, for a rollback that may follow
	}
	var errs []error
	if s.packs != nil {
		errs = append(errs, s.packs.Close())
	}
	if s.pio != nil && s.pio.remote != nil {
		// Upload what is staged while there is time; what is left is
		// uploaded at the next Open.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		s.pio.waitUploads(ctx)
		cancel()
		s.pio.close()
	}
	if s.db != nil && !s.closed.Swap(true) {
		s.stopAccounting()
		errs = append(errs, s.db.Close())
	}
	if s.codec != nil {
		s.codec.Close()
	}
	if s.shadow != nil {
		s.shadow.Close()
		s.fsys.Remove("shadow") // its bytes are never read
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return errors.Join(errs...)
}

// Params returns the chunker parameters every client of this store must use.
func (s *Store) Params() chunk.Params { return s.cfg.Params }

// Remote returns the object store holding the packs (Options.Remote), nil
// when they are in the store's directory.
func (s *Store) Remote() Remote { return s.opts.Remote }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) hook(point string) {
	if s.opts.Hook != nil {
		s.opts.Hook(point)
	}
}

// isOpen is ErrClosed once Close has begun: every method that can fail
// checks it first, so a call that races a shutdown gets an answer, not a
// nil index or a stale in-memory view.
func (s *Store) isOpen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

func (s *Store) writable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	return nil
}

// reserveSpace fails with ErrStorageFull if writing n more bytes would eat
// into the reserve. The free-space figure is refreshed at most every 64 MiB
// written or every second, so the check costs nothing per chunk.
func (s *Store) reserveSpace(n int64) error {
	if s.opts.Reserve < 0 {
		return nil
	}
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	now := time.Now()
	if s.freeAt.IsZero() || now.Sub(s.freeAt) > time.Second || s.freeCache < s.opts.Reserve+(64<<20) {
		free, err := s.fsys.Free()
		if err != nil {
			return fmt.Errorf("check free space: %w", err)
		}
		s.freeCache, s.freeAt = int64(min(free, 1<<62)), now
	}
	if s.freeCache-n < s.opts.Reserve {
		return fmt.Errorf("%w: %s has %d MiB free and keeps a reserve of %d MiB",
			ErrStorageFull, s.dir, s.freeCache>>20, s.opts.Reserve>>20)
	}
	s.freeCache -= n
	return nil
}
