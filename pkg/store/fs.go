package store

import "github.com/xs-backup/xs-backup/pkg/store/internal/fsys"

// FS is the file system the store keeps its pack files, users and snapshots
// in (see Options.FS). Tests wrap the real one to inject I/O errors, short
// writes and failed fsyncs; every such fault must surface as an error,
// never as a corrupt store. Names are slash-separated paths relative to the
// store directory.
type FS = fsys.FS

// File is an open file of an FS.
type File = fsys.File

// DirFS returns the FS of the operating system rooted at dir.
func DirFS(dir string) FS { return fsys.Dir(dir) }
