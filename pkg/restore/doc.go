// Package restore reads snapshots back: it walks their manifest trees,
// presents a snapshot as a read-only io/fs.FS (SnapshotFS), writes a whole
// snapshot or chosen paths to a directory (Restore), to a tar stream
// (WriteTar), and checks whether a path of an older snapshot is intact
// (IntactChecker).
//
// It reads blobs through a Source: the server's store itself
// (store.Store implements it) or a school server over the network
// (pkg/agent). Every chunk is re-hashed before its bytes are used, no name
// in a manifest can make Restore write outside its target (every write goes
// through an os.Root), and damage costs only what it touches: a file with a
// damaged chunk, or the contents of a directory whose tree is damaged, is
// left out and named in Result.Damaged (with the newest older snapshot that
// holds it intact, when Options.Older lists the candidates), every other
// file is written, and a file is only ever written under a temporary name
// and renamed when whole.
//
// The package depends only on the blob, chunk and manifest packages, so
// that the store can offer restores without depending on the backup side.
package restore
