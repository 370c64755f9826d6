package xsbackup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/xs-backup/xs-backup/internal/pathutil"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// localSerial is the one user a local store made by OpenLocal backs up as.
const localSerial = "local"

// OpenLocal opens the local store in dir, creating it (with the default
// chunker parameters and one local user) if dir holds no store yet. A
// store is used by one process at a time: a second OpenLocal of the same
// dir fails until the first Repo is closed. The file cache that lets
// unchanged files go unread is kept under dir/caches.
func OpenLocal(ctx context.Context, dir string, opts Options) (*Repo, error) {
	s, err := store.Open(ctx, dir, store.Options{Reserve: opts.Reserve})
	if err != nil {
		return nil, fmt.Errorf("xsbackup: open local store: %w", err)
	}
	u, err := s.UserBySerial(localSerial)
	if errors.Is(err, store.ErrNotFound) {
		u, err = s.AddUser(ctx, store.NewUser{Serial: localSerial, Nickname: "local backups", Approved: true})
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("xsbackup: local user: %w", err)
	}
	return &Repo{opts: opts, be: &local{s: s, user: u.ID, dir: dir}}, nil
}

type local struct {
	s    *store.Store
	user store.UserID
	dir  string
}

func snapshotOf(sn *store.Snapshot) Snapshot {
	return Snapshot{ID: string(sn.ID), Time: sn.Time, Files: sn.Files, Size: sn.Size, Pinned: sn.Pinned}
}

// cachePath is the file cache for one source directory.
func (l *local) cachePath(src string) string {
	id := chunk.Sum([]byte(src))
	return filepath.Join(l.dir, "caches", hex.EncodeToString(id[:8]))
}

func (l *local) backup(ctx context.Context, dir string, o Options) (Snapshot, error) {
	cp := l.cachePath(dir)
	cache, err := backup.LoadCache(cp)
	if err != nil {
		cache = backup.NewCache() // damaged: read every file once
	}
	t := l.s.Target(l.user, store.CommitInfo{Host: o.Host, Source: dir})
	if _, err := backup.Run(ctx, dir, t, backup.Options{Params: l.s.Params(), Cache: cache, Exclude: o.Exclude, Progress: o.Progress}); err != nil {
		return Snapshot{}, fmt.Errorf("xsbackup: backup %s: %w", dir, err)
	}
	sn := snapshotOf(t.Last())
	if err := cache.Save(cp); err != nil {
		return sn, fmt.Errorf("xsbackup: snapshot %s is safe, but the file cache could not be saved (the next backup reads every file): %w", sn.ID, err)
	}
	return sn, nil
}

func (l *local) snapshots(ctx context.Context) ([]Snapshot, error) {
	var out []Snapshot
	for _, sn := range l.s.Snapshots(l.user) {
		out = append(out, snapshotOf(sn))
	}
	return out, nil
}

func (l *local) snapshot(id string) (*store.Snapshot, error) {
	if !store.ValidSnapshotID(store.SnapshotID(id)) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	sn, err := l.s.Snapshot(l.user, store.SnapshotID(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return sn, err
}

func (l *local) find(ctx context.Context, id string) (chunk.ID, error) {
	sn, err := l.snapshot(id)
	if err != nil {
		return chunk.ID{}, err
	}
	return sn.Root, nil
}

func (l *local) source() restore.Source { return l.s }

func (l *local) restore(ctx context.Context, id, target string, paths []string) error {
	sn, err := l.snapshot(id)
	if err != nil {
		return err
	}
	_, err = l.s.Restore(ctx, sn, target, store.RestoreOptions{Paths: paths})
	if errors.Is(err, store.ErrInvalid) && pathutil.Overlap(l.s.Dir(), target) {
		err = fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	return err
}

func (l *local) close() error { return l.s.Close() }
