package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Remote is an object store that holds the store's pack files (and a copy
// of its user and snapshot files) instead of the store's directory: an
// S3-compatible bucket (pkg/store/s3) or anything an embedder plugs in.
// Object stores have no rename and no append, and a listing may lag behind
// a write, so the store only ever writes an object whole, under a name it
// never wrote before, and never rewrites it (see "Packs on an object store"
// in the package documentation).
//
// Names are slash-separated ("packs/01/0000000000000001.pack"); the Remote
// maps them to its objects (under a prefix, say). Implementations must be
// safe for concurrent use and retry what is worth retrying (timeouts,
// throttling, 5xx) themselves: an error returned is final for that call.
type Remote interface {
	// Put stores size bytes read from r under name, whole: the object
	// appears complete or not at all. sha256 is the hex SHA-256 of the
	// bytes, to be kept with the object and returned by Stat and List.
	Put(ctx context.Context, name string, r io.Reader, size int64, sha256 string) error
	// ReadAt reads len(p) bytes of the object from off (one ranged read)
	// and returns how many it read: fewer only where the object ends. A
	// missing object is an error matching os.ErrNotExist.
	ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error)
	// Stat describes one object; a missing one is an error matching
	// os.ErrNotExist.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List describes every object whose name starts with prefix. It may
	// leave out objects written very recently.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// String names the object store and bucket, for messages.
	String() string
}

// ObjectInfo describes one object of a Remote.
type ObjectInfo struct {
	Name string // as given to Put
	Size int64
	// SHA256 is the hex SHA-256 given to Put ("" if the Remote cannot
	// tell, as some listings do not return it).
	SHA256 string
}

// remoteError marks an error of the object store (unreachable, refusing,
// throttling): not damage, so nothing read through it is marked lost.
type remoteError struct{ err error }

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

func remoteErr(err error) error {
	if err == nil {
		return nil
	}
	var re *remoteError
	if errors.As(err, &re) || errors.Is(err, os.ErrNotExist) || errors.Is(err, context.Canceled) {
		return err
	}
	return &remoteError{err}
}

// isRemoteErr reports whether err came from the object store rather than
// from the bytes read.
func isRemoteErr(err error) bool {
	var re *remoteError
	return errors.As(err, &re)
}

// metaName reports whether a store file is metadata that is mirrored to
// the Remote: the store config, user and snapshot files.
func metaName(name string) bool {
	switch {
	case name == configName:
		return true
	case strings.HasPrefix(name, "users/") && (strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".json.copy")):
		return strings.Count(name, "/") == 1
	case strings.HasPrefix(name, "snapshots/") && strings.HasSuffix(name, ".json"):
		return strings.Count(name, "/") == 2
	}
	return false
}

// remoteMetaPrefix is where the Remote keeps its copy of the metadata.
const remoteMetaPrefix = "meta/"

func describeRemote(r Remote) string { return fmt.Sprintf("object store %s", r) }
