package backup

import (
	"context"
	"io"
	"io/fs"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// The read side of this package moved to pkg/restore, so that the store
// can restore without importing the backup side. These names keep programs
// written against the earlier API compiling.

// Source is restore.Source.
//
// Deprecated: use restore.Source.
type Source = restore.Source

// RestoreOptions is restore.Options.
//
// Deprecated: use restore.Options.
type RestoreOptions = restore.Options

// RestoreProgress is restore.Progress.
//
// Deprecated: use restore.Progress.
type RestoreProgress = restore.Progress

// RestoreResult is restore.Result.
//
// Deprecated: use restore.Result.
type RestoreResult = restore.Result

// DamagedFile is restore.DamagedFile.
//
// Deprecated: use restore.DamagedFile.
type DamagedFile = restore.DamagedFile

// Restore is restore.Restore.
//
// Deprecated: use restore.Restore.
func Restore(ctx context.Context, src Source, root chunk.ID, target string, opts RestoreOptions) (*RestoreResult, error) {
	return restore.Restore(ctx, src, root, target, opts)
}

// Walk is restore.Walk.
//
// Deprecated: use restore.Walk.
func Walk(ctx context.Context, src Source, root chunk.ID, fn func(p string, e *manifest.Entry) error) error {
	return restore.Walk(ctx, src, root, fn)
}

// Lookup is restore.Lookup.
//
// Deprecated: use restore.Lookup.
func Lookup(ctx context.Context, src Source, root chunk.ID, p string) (*manifest.Entry, error) {
	return restore.Lookup(ctx, src, root, p)
}

// SnapshotFS is restore.SnapshotFS.
//
// Deprecated: use restore.SnapshotFS.
func SnapshotFS(ctx context.Context, src Source, root chunk.ID) fs.FS {
	return restore.SnapshotFS(ctx, src, root)
}

// WriteTar is restore.WriteTar.
//
// Deprecated: use restore.WriteTar.
func WriteTar(w io.Writer, fsys fs.FS, paths []string) (restore.TarStats, error) {
	return restore.WriteTar(w, fsys, paths)
}
