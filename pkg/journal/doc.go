// Package journal reads the Sugar Journal of an XO laptop from a backup and
// gives its documents back by title: as the raw file with a readable name,
// or as a Journal Entry Bundle (.xoj) that Sugar imports into the Journal.
//
// The datastore (~/.sugar/default/datastore) is read from any [io/fs.FS]
// whose root is the datastore directory: a snapshot on the school server,
// or [os.DirFS] on a directory. Two layouts are read, both in the same
// tree if a laptop was upgraded:
//
// # Current layout (Sugar 0.84 and later)
//
//	<uid[:2]>/<uid>/data              the document (absent for entries without a file)
//	<uid[:2]>/<uid>/metadata/<key>    one file per metadata key; its content is the value
//
// Values are UTF-8 text except preview (a PNG). Common keys are title,
// activity (a bundle id such as org.laptop.TurtleArtActivity), activity_id,
// mime_type, timestamp (Unix seconds, possibly fractional), mtime
// ("2026-09-01T08:00:00.000000"), filesize, uid, keep, title_set_by_user,
// description, tags, preview, icon-color and creation_time. A directory
// counts as an entry only when it sits at XX/<uid>/ with XX == uid[:2];
// everything else at the top (index/, version, checksums/, index_updated,
// ds_clean, temporary files) is ignored.
//
// # Old layout (Sugar 0.82 and earlier)
//
//	store/<uid>            the document
//	store/<uid>.metadata   a JSON object of metadata
//	store/preview/<uid>    the preview PNG
//
// JSON string values are kept, numbers are kept as their literal text and
// other values (true, null, arrays, objects) are left out.
//
// # Damaged entries
//
// Damage never hides a document: an entry whose metadata is missing,
// unreadable, not JSON, too large or unparsable is still listed, with the
// uid as its title and a note in [Entry.Problems]. Only failing to list the
// root makes [Read] fail. Every read is capped: a metadata value over 512 KiB
// (what Sugar itself reads back; a child may paste a story into a
// description)
// is left out, as is anything past 1 MiB of metadata in one entry or past
// 1024 keys; a preview over 1 MiB is ignored; an old-layout .metadata file
// over 1 MiB is treated as damaged; and [Read] stops after [MaxEntries]
// entries, returning them with [ErrTooManyEntries].
//
// # Journal Entry Bundle (.xoj)
//
// A bundle is a zip archive (MIME type application/vnd.olpc-journal-entry)
// whose single top directory is named after the entry's uid:
//
//	<uid>/_metadata.json   JSON object of the text metadata ("uid" set, no "preview")
//	<uid>/<uid>            the document, if the entry has one
//	<uid>/preview/<uid>    the preview PNG, if the entry has one
//
// This is the format of Sugar's sugar3/bundle/journalentrybundle.py: opening
// the file on an XO puts the entry back into its Journal. [WriteBundle]
// writes one and [ReadBundle] parses one with strict limits.
package journal
