// Package xsbackup is xs-backup for other Go programs: back a folder up and
// get files back, into a local store or to this laptop's school server, in
// a few lines.
//
//	repo, err := xsbackup.OpenLocal(ctx, "/var/lib/mytool/backups", xsbackup.Options{})
//	...
//	defer repo.Close()
//	snap, err := repo.Backup(ctx, "/home/me/Documents")
//	...
//	err = repo.Restore(ctx, snap, "/tmp/restored", "letters/grandma.txt")
//
// # Two kinds of Repo, one API
//
// OpenLocal opens (or creates) a store in a directory: the same store a
// school server keeps (pkg/store), with one implicit local user, so there
// is no serial to invent and nothing to approve. Dial reaches the school
// server this laptop registered with (xo-backup register, or Register),
// through the laptop's state directory (pkg/agent): its key, the pinned
// server key, its file cache.
//
// A Repo from Dial backs up as the laptop itself, into the laptop's one
// history on the school server, much as xo-backup run --force does: a
// backup already made today, low battery or a time the server reserved
// for this laptop do not hold a Backup back (a busy server still can:
// ErrBusy). Whatever folder Backup is given becomes the laptop's latest
// backup, the one xo-backup restore brings back by default, and counts as
// the day's backup: the timer's xo-backup run then does not back the
// Journal up again until the next day. Give it the Journal; back up any
// other folder into a store of its own, with OpenLocal.
//
// On both, a *Repo offers:
//
//   - Backup(ctx, dir): back a directory up; returns the Snapshot. Only
//     what changed is read (a file cache is kept with the store, or in the
//     state directory), and only chunks the store lacks are sent. The
//     chunker parameters come from the store or the server; there is
//     nothing to configure. Options.Exclude leaves paths out (use
//     JournalExclude for a Sugar Journal); by default nothing is left out.
//   - Snapshots(ctx): every snapshot, oldest first.
//   - Open(ctx, snapshot): the snapshot as a read-only io/fs.FS, read on
//     demand and verified chunk by chunk; pkg/journal reads a Journal from
//     it (journal.Read lists entries by title, activity and date).
//   - Restore(ctx, snapshot, target, paths...): write the snapshot, or some
//     files and folders of it, under target. Nothing is written outside
//     target, whatever the snapshot or the paths say.
//   - Close.
//
// A Repo is safe for concurrent use. Close waits for the calls in flight;
// after it every call, and every read of a file system from Open, returns
// ErrClosed.
//
// # Errors
//
// ErrNotRegistered (Dial before registering), ErrClosed, ErrNotFound (no
// such snapshot), ErrInvalidPath (a Restore path with "..", a leading "/",
// or empty) and ErrBusy (the server gave the laptop a later slot, another
// backup of this laptop is running, or the backup was skipped: the server
// did not answer, or an empty folder waits for a reflashed laptop's restore)
// can be tested with errors.Is. A restore that left damaged files out
// returns a *restore.DamagedError that lists them, after writing every
// intact file.
//
// # What is underneath
//
// This package adds no storage or protocol logic of its own: a local Repo
// is store.Store with its Target as the destination of backup.Run and its
// Restore; a server Repo is agent.Run, agent.Restore and a proto.Client.
// Use those packages directly for what this one leaves out (staff
// operations, retention, several users in one store, progress of
// restores).
package xsbackup
