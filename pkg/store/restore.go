package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/internal/pathutil"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// Fetch implements restore.Source: it reads blobs back, verified. A blob
// that is not in the index at all gives an error matching both
// blob.ErrDamaged and ErrNotFound: a snapshot references it, so to a
// restore it is as lost as a damaged one.
func (s *Store) Fetch(ctx context.Context, refs []blob.Ref, fn func(r blob.Ref, raw []byte) error) error {
	if err := s.isOpen(); err != nil {
		return err
	}
	s.prefetch(ctx, refs)
	for _, r := range refs {
		raw, err := s.ReadBlob(ctx, r)
		if errors.Is(err, ErrNotFound) && !errors.Is(err, blob.ErrDamaged) {
			err = fmt.Errorf("%w: %w", blob.ErrDamaged, err)
		}
		if err != nil {
			return err
		}
		if err := fn(r, raw); err != nil {
			return err
		}
	}
	return nil
}

var _ restore.Source = (*Store)(nil)

// WalkFunc is called by Walk for every entry, with its slash-separated path
// relative to the snapshot root.
type WalkFunc func(p string, e *manifest.Entry) error

// SkipDir may be returned by a WalkFunc for a directory to skip its contents.
var SkipDir = fs.SkipDir

// Walk visits every entry of the tree root, depth first, in name order.
func (s *Store) Walk(ctx context.Context, root chunk.ID, fn WalkFunc) error {
	return restore.Walk(ctx, s, root, fn)
}

// Lookup finds the entry at path p (slash-separated, relative) in the tree root.
func (s *Store) Lookup(ctx context.Context, root chunk.ID, p string) (*manifest.Entry, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	e, err := restore.Lookup(ctx, s, root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return e, err
}

// FileReader returns a reader of a file entry's content. Each chunk is
// verified against its ID before any of its bytes are returned; a damaged
// or missing chunk is an error matching blob.ErrDamaged.
func (s *Store) FileReader(ctx context.Context, e *manifest.Entry) io.Reader {
	return &fileReader{ctx: ctx, s: s, chunks: e.Chunks}
}

type fileReader struct {
	ctx    context.Context
	s      *Store
	chunks []chunk.ID
	buf    []byte
}

func (r *fileReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if len(r.chunks) == 0 {
			return 0, io.EOF
		}
		b, err := r.s.ReadBlob(r.ctx, blob.Ref{Type: blob.Chunk, ID: r.chunks[0]})
		if errors.Is(err, ErrNotFound) && !errors.Is(err, blob.ErrDamaged) {
			err = fmt.Errorf("%w: %w", blob.ErrDamaged, err)
		}
		if err != nil {
			return 0, err
		}
		r.chunks, r.buf = r.chunks[1:], b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// RestoreOptions choose what Restore writes (see restore.Options).
type RestoreOptions = restore.Options

// RestoreResult summarises a restore (see restore.Result).
type RestoreResult = restore.Result

// Restore writes a snapshot (or the chosen paths) under target through an
// os.Root, verifying every chunk; see restore.Restore. A file with damaged
// or missing data is left out and reported, the rest is restored. Unless
// opts.Older is set, the user's older snapshots are searched for an intact
// copy of each file left out. A target that is, holds or lies inside the
// store's own directory is refused (ErrInvalid): a restore there could
// write over the store's key, packs or index.
func (s *Store) Restore(ctx context.Context, snap *Snapshot, target string, opts RestoreOptions) (*RestoreResult, error) {
	if err := s.isOpen(); err != nil {
		return nil, err
	}
	if pathutil.Overlap(s.dir, target) {
		return nil, fmt.Errorf("%w: restore target %s is, holds or lies inside the store's directory %s: restore somewhere else", ErrInvalid, target, s.dir)
	}
	if opts.Older == nil {
		opts.Older = s.OlderSnapshots(snap)
	}
	res, err := restore.Restore(ctx, s, snap.Root, target, opts)
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return res, err
}

// OlderSnapshots lists the snapshots of sn's user older than sn, newest
// first, for restore.Options.Older.
func (s *Store) OlderSnapshots(sn *Snapshot) []restore.OlderSnapshot {
	var out []restore.OlderSnapshot
	snaps := s.Snapshots(sn.User)
	for i := len(snaps) - 1; i >= 0; i-- {
		if snaps[i].ID != sn.ID && compareSnaps(snaps[i], sn) < 0 {
			out = append(out, restore.OlderSnapshot{ID: string(snaps[i].ID), Root: snaps[i].Root})
		}
	}
	return out
}

// Prefetch, when the packs are on an object store (Options.Remote), reads
// the records of refs into the store's cache in parallel ranged reads
// (neighbouring records of a pack in one read), so that reading them one
// by one next costs no round trip each. Without a Remote, and for refs not
// in the index, it does nothing; a failed read is left for the read itself
// to meet and report.
func (s *Store) Prefetch(ctx context.Context, refs []blob.Ref) {
	if s.closed.Load() {
		return
	}
	s.prefetch(ctx, refs)
}

func (s *Store) prefetch(ctx context.Context, refs []blob.Ref) {
	if s.pio.remote == nil || len(refs) < 2 {
		return
	}
	locs := make([]objRec, 0, len(refs))
	s.view(func(txn *badger.Txn) error {
		for _, r := range refs {
			if o, ok, err := getObj(txn, r); err == nil && ok && !o.lost() {
				locs = append(locs, o)
			}
		}
		return nil
	})
	s.pio.prefetch(ctx, locs)
}
