// Package store is a school server's chunk store: the content-addressed
// pack files that hold every student's backed-up data once, a Badger index
// over them, and the users and snapshots that refer to that data.
//
// A program embeds a store with [Open], registers laptops with
// [Store.AddUser], backs a directory up into it with [Store.Target] and
// backup.Run, and gets files back with [Store.Restore], [Store.Lookup] and
// [Store.FileReader]. The daemon offers the same operations to laptops over
// the network with pkg/proto. All methods of [Store] are safe for concurrent
// use. One process at a time may open a store for writing ([ErrLocked]);
// several read-only opens ([Options.ReadOnly]) may share a stopped store.
//
// # Blobs, trees and snapshots
//
// Everything a backup stores is a blob (see pkg/blob), named by a
// [blob.Ref]: its type and the BLAKE3-256 hash of its uncompressed bytes
// (a chunk.ID). There are two types, in separate name spaces:
//
//   - a chunk is a piece of a file's content, cut by content-defined
//     chunking with the store's chunker parameters ([Store.Params]; fixed
//     when the store is created, recorded in xs-store.json, never changed);
//   - a tree is one directory encoded by pkg/manifest: names, modes, times,
//     sizes, each file's chunk list and each subdirectory's tree ID.
//
// A [Snapshot] is a root tree ID plus what the server records about it: the
// server-assigned commit time, statistics and pin. An unchanged directory
// encodes to the same tree and so costs nothing in a later snapshot.
//
// [Store.Put] recomputes the hash of every uploaded blob, decompresses what
// arrives compressed, and decodes trees with manifest.Decode, so no upload
// can store bytes under another blob's name ([ErrHashMismatch]) or a tree
// that a restore could not trust ([ErrInvalid]). A batch with one bad blob
// stores nothing.
//
// # Files on disk
//
// A store is one directory:
//
//	xs-store.json                        format version, creation time, chunker parameters
//	lock                                 flock(2) held by the process that has the store open
//	packs/NN/SSSSSSSSSSSSSSSS.pack       pack files (sequence number in hex; NN its low byte);
//	                                     with a Remote, only those not uploaded yet
//	packs/high                           with a Remote: the highest pack number ever created
//	users/UUUUUUUUUUUUUUUU.json          one file per user (user ID in hex)
//	users/UUUUUUUUUUUUUUUU.json.copy     its second copy (the laptop's key is only here)
//	snapshots/UUUUUUUUUUUUUUUU/ID.json   one file per snapshot of that user
//	index/                               the Badger index
//	index.damaged-TIME/                  an index OpenForRepair moved aside
//	*.damaged                            a user or snapshot file found damaged, kept beside its rebuilt copy
//
// Pack files hold the bytes of every blob. They are append-only: a record
// is a fixed header (record magic, type, compression flag, stored and raw
// sizes, the blob's ID, a CRC-32C over header and data) followed by the
// stored bytes; the exact layout is documented in internal/pack. A new pack is
// started at every Open and whenever the current one reaches
// [Options.PackSize]. Because each record carries its ID and checksum, a
// scan of the packs alone finds every intact blob: past a damaged record it
// goes on where the header says the next one starts, or at the next record
// magic whose record passes its CRC, so a damaged byte costs only the record
// that holds it. A blob is written once for the whole school, whoever
// uploads it.
//
// Users and snapshots are small JSON files, each written atomically
// (temporary file, fsync, rename, fsync of the directory) and all loaded
// into memory by Open. They are the source of truth for who exists and
// which snapshots exist; the index never holds the only copy.
//
// The Badger index is derived state: it can be rebuilt from the pack files
// and the user and snapshot files ([Store.Repair]). Its keys (listed in
// index.go) map each blob to its pack, offset, sizes and owner count; each
// (user, blob) pair to that user's hold on it; each user to their usage;
// each snapshot whose references have been counted to its root; and each
// unfinished reference-counting job to its saved cursor. Its caches and
// memtables are capped by [Options.IndexMemory].
//
// # Holds, private dedup and quota
//
// A user holds a blob while one of their snapshots references it (directly
// or through a tree) or while it is a pending upload: uploaded by them with
// Put and not yet referenced by a committed snapshot. Holds are what make
// cross-user dedup private:
//
//   - [Store.Need] answers "already have it" only for blobs this user
//     holds. A blob that only other users hold is "needed" exactly like one
//     nobody has; when it arrives, Put verifies its hash and stores nothing
//     new, but the user now holds it. The answer does not depend on what
//     other students have.
//   - [Store.Commit] requires every blob of the snapshot to exist and to be
//     held by the committing user, so a manifest cannot claim another
//     user's chunks by naming their IDs ([ErrNotOwned], which is
//     blob.ErrNotHeld).
//
// A user's [Usage] is the stored size of the distinct blobs they hold;
// a blob shared with others counts in full for each of them, so one user's
// figure never depends on another's. [Store.Put] refuses an upload that
// would take the user over their hard quota ([ErrOverQuota]), charging
// every blob they do not hold yet, whether or not the store already has it.
// The soft quota and pins ([Store.SetPin]) are recorded here for the
// retention and quota policies that delete snapshots.
//
// # Reference counting
//
// References are counted hierarchically (refs.go): a snapshot references its
// root tree; when a user's reference count of a tree goes from 0 to 1, the
// tree's children gain a reference, and when it drops to 0 they lose one. So
// committing an unchanged Journal costs one counter update and a changed one
// only the trees on the path to the change; deleting a snapshot
// ([Store.DeleteSnapshot]) undoes the same walk. Owner counts and usage
// change when a hold starts or ends.
//
// Counting a large snapshot may need more updates than one Badger
// transaction can hold, so it runs as a job recorded in the index: each
// transaction applies a batch of counter updates together with the walk's
// cursor, and a job interrupted by a crash resumes exactly where its last
// batch committed. Deleting a snapshot drops references only; blobs nobody
// holds stay in their packs until garbage collection removes them.
//
// # Crash safety
//
// Every write is ordered so that a crash (kill -9, power loss) at any point
// leaves a store that Open brings back to a consistent state:
//
//  1. Put appends the records to a pack and fsyncs it before it commits the
//     index entries that point at them (the index writes synchronously), and
//     returns only after that commit: an acknowledged upload survives.
//  2. Commit validates the tree, then writes the snapshot file atomically.
//     That file is the commit point: once it is on disk the snapshot exists.
//  3. It then records, in one index transaction, that the snapshot is being
//     counted and the job that counts it, and runs the job.
//  4. Only then is the snapshot returned (acknowledged) to the client.
//
// Open reconciles the index with the snapshot files: a snapshot whose file
// exists but whose references were never counted gets a counting job, one
// whose file was deleted but whose references are still counted gets an
// undoing job, and unfinished jobs run to completion.
//
// # Lifecycle and garbage collection
//
// [Store.Lifecycle] is the nightly run: [Store.Retention] applies each
// user's [Policy] (default [DefaultPolicy]: every snapshot of the last 30
// days, then the newest of each calendar month; the latest and pinned
// snapshots always stay), [Store.EnforceQuota] deletes the oldest unpinned
// snapshots of users over their soft quota (never the latest),
// [Store.ExpirePending] releases uploads older than
// [Options.PendingExpiry] that no snapshot references, [Store.Scrub] reads
// back a share of the packs, and [Store.GC] deletes blobs nobody holds and
// compacts pack files. Each takes the time
// as a parameter and has a dry run.
//
// Nothing a running backup relies on disappears. The server brackets each
// backup session with [Store.BeginSession]; the steps that take holds away
// from a user skip users in a session (they are reported busy and handled
// next time), so a blob Need answered "held" is still held at Commit. GC
// removes only blobs whose owner count is zero, re-reading the count inside
// the deleting transaction: Badger aborts it if an upload touched the same
// entry, and an upload that finds its blob swept writes it again. Compaction
// first closes the pack being written and waits for uploads in flight, then
// copies the live records of packs below [Options.CompactBelow] live
// fraction, fsyncs them, repoints the index, and only then removes the old
// pack; a reader that looked a blob up in between retries. Small packs are
// merged. A crash at any step leaves every blob readable from one of its
// copies, and the next run finishes the work.
//
// # Damage, healing, check and repair
//
// A damaged byte costs at most the blob that holds it (damage.go). A blob
// whose stored copy fails its checksum or hash, or is gone, stays in the
// index marked lost, with its owner count: reference counts, usage and
// garbage collection go on as if it were there, and nothing next to it is
// touched. The store learns of damage from every read (restores, commits,
// [Store.Check] with ReadData, compaction) and from [Store.Scrub], which the
// nightly lifecycle runs over 1/[Options.ScrubDays] of the packs, plus every
// stored copy a new upload was deduplicated against. [Store.Need] asks every
// holder of a lost blob to send it again, [Store.DamagedHeld] tells a
// laptop's session which blobs those are (backup.Run then reads the files
// they came from even when unchanged), and the first verified upload
// replaces the lost copy: every snapshot that uses it is whole again. A tree
// that was lost when a reference walk needed to descend into it records the
// walk it owes; healing it runs that walk. [Store.Damaged] lists what waits.
//
// Directory trees need no laptop to heal: each also has a copy in the index
// (treecopy.go), as file systems keep two copies of their metadata. A
// damaged tree reads from its copy, and check and the scrub write it back
// into a pack: the files below an old snapshot's directory, which no laptop
// has any more, stay reachable when the tree's pack is lost. A pack file
// gone or cut short is found by check and the scrub from the index (every
// record it should hold is marked lost at once, so one backup of each
// laptop heals every level below a lost tree).
//
// [Store.Check] walks every snapshot, confirms that its blobs exist (with
// [CheckOptions.ReadData], reads each back and re-hashes it) and recounts
// every hold, owner count and usage figure from scratch, reporting each
// difference as a [Problem]. It records the damage it reads, and whether the
// index disagrees with the snapshots: then garbage collection refuses to run
// until [Store.Repair] (or a clean check). Repair drops the index,
// re-indexes every intact pack record, indexes damaged records and blobs
// snapshots use that no pack holds as lost, and recounts every snapshot's
// references; pending uploads are forgotten (laptops upload them again).
// When a snapshot's tree cannot be read, what is below it cannot be
// counted: garbage collection keeps every blob nobody was found to hold
// until every such tree is healed or deleted. [OpenForRepair] opens a store
// whose index will not open at all (a table cut short, its directory
// deleted), moving it aside; [Open] refuses such an index with
// [ErrIndexDamaged] rather than starting a new one. A damaged user or
// snapshot file does not stop Open: a user comes back whole from its second
// copy (users/ID.json.copy), a snapshot is rebuilt from the root the index
// recorded for it, and without a copy a user keeps its ID (and backups)
// under a placeholder serial ([Store.MetaDamage]).
//
// Compaction removes a pack only when every record in it is accounted for
// (account.go): copied, indexed elsewhere, or garbage the store counted
// (swept blobs, uploads never indexed, the last packs of a run that stopped
// uncleanly). A pack holding anything else is kept and GC pauses, because
// the index must have lost entries. [Store.ReadBlob] and restores never
// return data that fails its checksum or hash ([ErrCorrupt]).
//
// # Disk space
//
// Badger crashes the process when its disk fills, so the store stops
// writing first: before appending to a pack, Put checks that the write
// leaves at least [Options.Reserve] bytes free (default 256 MiB; negative
// disables the check) and fails with [ErrStorageFull] otherwise, as it does
// when the file system reports that it is full. The free-space figure is
// cached and refreshed every second, or sooner when it nears the reserve,
// so the check costs nothing per chunk.
//
// # Packs on an object store
//
// With [Options.Remote] set (pkg/store/s3 implements it for S3-compatible
// stores: Garage, Ceph RGW, SeaweedFS, MinIO, AWS) the pack files live in
// a bucket instead of packs/. The same rules hold, redone for objects,
// which have no rename and no append and whose listing may lag:
//
//   - Packs are written here first, by the same append-and-fsync writer
//     (so Put's acknowledgement means what it means locally: the records
//     are on this server's disk), and uploaded whole once sealed (full at
//     [Options.PackSize], 16 MiB by default on a Remote; or rolled). An
//     object is written once, under a pack number never used before (the
//     highest ever created is kept in packs/high, and before a pack is
//     started its name is looked up in the bucket, so a lagging listing
//     cannot make the store reuse one), and never rewritten.
//   - [Store.Commit] rolls the pack being written and uploads every sealed
//     pack not yet in the bucket before it writes the snapshot file: a
//     snapshot is acknowledged only when every pack it needs is in the
//     bucket. If an upload fails, the commit fails and nothing is
//     acknowledged; the packs stay here and are uploaded by the next
//     commit or Open.
//   - The local copy of a pack is removed only after its upload is
//     confirmed (a Stat shows the object with the local size and the
//     SHA-256 kept as its metadata). Open uploads whatever a crash left
//     here, or just removes the copy when the object is already whole.
//   - The user and snapshot files and xs-store.json are also copied to the
//     bucket (under meta/) when written, and removed there when removed;
//     Open puts right what a crash left different. Open on an empty
//     directory whose Remote holds a store fetches them, so
//     [OpenForRepair] and [Store.Repair] rebuild a store from the bucket
//     alone. What stays only local: the Badger index (derived: Repair
//     rebuilds it from the packs in the bucket), the lock, packs/high and
//     the packs not yet uploaded (uploads no snapshot acknowledged yet).
//   - Compaction waits until every pack it considers is in the bucket,
//     copies live records to new packs, uploads those before the index
//     points at them, and only then deletes the old objects. No object is
//     deleted that an upload in progress may need.
//   - Reads take the local copy when there is one and otherwise fetch byte
//     ranges (never whole packs): a restore's batch of blobs is looked up
//     first and the records of one pack that lie close together are read in
//     one ranged GET, several in parallel ([Options.RemoteParallel]); a
//     single read also reads 1 MiB ahead. Records read are kept in a cache
//     bounded in bytes ([Options.RemoteCache]).
//   - A failing object store (unreachable, refusing, throttling: the
//     Remote retries what is worth retrying) is an error, never damage: no
//     blob is marked lost because a read failed, and a scrub stops with the
//     error. [MigrateToRemote] and [MigrateToLocal] move an existing
//     store's packs (resumable; each pack hashed after it is moved).
//
// # Testing hooks
//
// [Options.FS] replaces the file system (to inject I/O errors and failed
// fsyncs) and [Options.Hook] is called at the [HookPoints] of the write
// paths, so that tests can crash the store at each step above.
package store
