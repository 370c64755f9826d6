package admin

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/internal/pathutil"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// EntryRow is one Journal entry in `xs-admin ls`.
type EntryRow struct {
	UID      string    `json:"uid"`
	Title    string    `json:"title"`
	Activity string    `json:"activity,omitempty"`
	Time     time.Time `json:"time,omitzero"`
	Size     int64     `json:"size"`
	MimeType string    `json:"mime_type,omitempty"`
	Problems []string  `json:"problems,omitempty"`
}

// FileRow is one file in `xs-admin ls --files`.
type FileRow struct {
	Path  string    `json:"path"`
	Type  string    `json:"type"`
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
}

// Listing is the output of `xs-admin ls`.
type Listing struct {
	Serial   string     `json:"serial"`
	Snapshot SnapshotID `json:"snapshot"`
	Time     time.Time  `json:"time"`
	Entries  []EntryRow `json:"entries,omitempty"`
	Files    []FileRow  `json:"files,omitempty"`
}

// SnapshotID names a snapshot in admin output.
type SnapshotID = store.SnapshotID

// ResolveSnapshot finds a user's snapshot from what staff type: "" or
// "latest", a snapshot ID, a date (2026-10-31: the last snapshot of that
// day or before, local time) or an RFC 3339 time (the last one at or before).
func ResolveSnapshot(s *store.Store, user store.UserID, spec string) (*store.Snapshot, error) {
	until, err := snapshotUntil(spec)
	if err != nil {
		return nil, err
	}
	if until.IsZero() {
		if spec == "" {
			spec = "latest"
		}
		return s.Snapshot(user, store.SnapshotID(spec))
	}
	snaps := s.Snapshots(user)
	for i := len(snaps) - 1; i >= 0; i-- {
		if !snaps[i].Time.After(until) {
			return snaps[i], nil
		}
	}
	return nil, fmt.Errorf("%w: no snapshot on or before %s", store.ErrNotFound, spec)
}

// CheckSnapshotSpec reports whether spec names a snapshot the way
// ResolveSnapshot reads it (without looking for it): "", latest, an ID, a
// date or an RFC 3339 time.
func CheckSnapshotSpec(spec string) error {
	_, err := snapshotUntil(spec)
	return err
}

// snapshotUntil reads a snapshot spec: zero for "", latest or an ID, else
// the time the snapshot wanted is the last one at or before.
func snapshotUntil(spec string) (time.Time, error) {
	if spec == "" || spec == "latest" || store.ValidSnapshotID(store.SnapshotID(spec)) {
		return time.Time{}, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", spec, time.Local); err == nil {
		return t.AddDate(0, 0, 1).Add(-time.Nanosecond), nil
	}
	if t, err := time.Parse(time.RFC3339, spec); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %q is not a snapshot (an ID, latest, a date like 2026-10-31 or a time like 2026-10-31T18:00:00Z)", ErrInvalid, spec)
}

// open resolves the user and snapshot of a listing or restore.
func (s *Service) open(ctx context.Context, serial, snapshot string) (*store.User, *store.Snapshot, fs.FS, error) {
	u, err := s.user(serial)
	if err != nil {
		return nil, nil, nil, err
	}
	sn, err := ResolveSnapshot(s.S, u.ID, snapshot)
	if err != nil {
		return nil, nil, nil, err
	}
	return u, sn, restore.SnapshotFS(ctx, s.S, sn.Root), nil
}

func entryRows(ents []journal.Entry) []EntryRow {
	rows := make([]EntryRow, 0, len(ents))
	for _, e := range ents {
		rows = append(rows, EntryRow{UID: e.UID, Title: e.Title, Activity: journal.ActivityName(e.Activity),
			Time: e.Time, Size: e.Size, MimeType: e.MimeType, Problems: e.Problems})
	}
	return rows
}

// List lists a snapshot's Journal entries, or with Files its raw tree.
func (s *Service) List(ctx context.Context, r ListRequest) (*Listing, error) {
	u, sn, fsys, err := s.open(ctx, r.Serial, r.Snapshot)
	if err != nil {
		return nil, err
	}
	out := &Listing{Serial: u.Serial, Snapshot: sn.ID, Time: sn.Time}
	if r.Files {
		out.Files = []FileRow{}
		err := s.S.Walk(ctx, sn.Root, func(p string, e *manifest.Entry) error {
			if len(out.Files) >= restore.MaxItems {
				return restore.ErrTooManyItems // a tree naming its subtrees over and over
			}
			out.Files = append(out.Files, FileRow{Path: p, Type: e.Type.String(), Size: e.Size, MTime: time.Unix(0, e.MTime)})
			return nil
		})
		return out, err
	}
	ents, err := readJournal(fsys)
	if err != nil {
		return nil, fmt.Errorf("read the Journal of snapshot %s: %w", sn.ID, err)
	}
	out.Entries = entryRows(ents)
	return out, nil
}

// entryPaths are the paths of the snapshot that make up a Journal entry.
func entryPaths(fsys fs.FS, e journal.Entry) []string {
	if e.Layout == "current" {
		return []string{path.Join(e.UID[:2], e.UID)}
	}
	var ps []string
	for _, p := range []string{"store/" + e.UID, "store/" + e.UID + ".metadata", "store/preview/" + e.UID} {
		if _, err := fs.Stat(fsys, p); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// selection returns the chosen entries of a snapshot (every path if none
// are chosen: nil entries).
func (s *Service) selection(fsys fs.FS, r ExportRequest) ([]journal.Entry, error) {
	if len(r.Entries) == 0 && len(r.Titles) == 0 {
		return nil, nil
	}
	ents, err := readJournal(fsys)
	if err != nil {
		return nil, err
	}
	chosen := journal.Match(ents, r.Entries, r.Titles)
	if len(chosen) == 0 {
		return nil, fmt.Errorf("%w: no Journal entry of this snapshot matches the entries %q or titles %q", store.ErrNotFound, r.Entries, r.Titles)
	}
	return chosen, nil
}

// The formats Export writes (ExportRequest.Format).
const (
	// FormatTar is a tar of the snapshot (or of the chosen entries' files,
	// in the datastore layout).
	FormatTar = "tar"
	// FormatXOJ is a tar of one Journal Entry Bundle (.xoj) per chosen entry.
	FormatXOJ = "xoj"
	// FormatRaw is a tar of each chosen entry's data file, named from its
	// title and type.
	FormatRaw = "raw"
)

// Export writes a user's snapshot (or the chosen entries) to w as a tar
// stream in r.Format. start is called once, before the first byte, with the
// number of content bytes to come (for a progress bar). A damaged or
// missing file (or entry, for xoj and raw) is left out of the archive,
// which stays complete and well-formed; Export then returns a
// *restore.DamagedError naming each one left out and, where there is one,
// the newest older snapshot of the user that holds it intact.
func (s *Service) Export(ctx context.Context, r ExportRequest, start func(total int64), w io.Writer) error {
	_, sn, fsys, err := s.open(ctx, r.Serial, r.Snapshot)
	if err != nil {
		return err
	}
	chosen, err := s.selection(fsys, r)
	if err != nil {
		return err
	}
	var damaged []damagedItem
	switch r.Format {
	case "", FormatTar:
		var paths []string
		total := sn.Size
		if chosen != nil {
			total = 0
			for _, e := range chosen {
				paths = append(paths, entryPaths(fsys, e)...)
				total += max(e.Size, 0)
			}
		}
		start(total)
		st, err := restore.WriteTar(w, fsys, paths)
		if !errors.Is(err, blob.ErrDamaged) {
			return err
		}
		for _, d := range st.Damaged {
			damaged = append(damaged, damagedItem{d, []string{d.Path}})
		}
	case FormatXOJ, FormatRaw:
		if chosen == nil {
			if chosen, err = readJournal(fsys); err != nil {
				return err
			}
		}
		var total int64
		for _, e := range chosen {
			total += max(e.Size, 0)
		}
		start(total)
		if damaged, err = writeEntries(w, fsys, chosen, r.Format); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown export format %q", ErrInvalid, r.Format)
	}
	if len(damaged) == 0 {
		return nil
	}
	ic := restore.NewIntactChecker(s.S)
	older := s.S.OlderSnapshots(sn)
	out := make([]restore.DamagedFile, len(damaged))
	for i, d := range damaged {
		out[i] = d.DamagedFile
		if out[i].OlderSnapshot, err = ic.FindOlder(ctx, older, d.paths); err != nil {
			return err
		}
	}
	return &restore.DamagedError{Files: out}
}

// damagedItem is a file or entry an export left out, with the snapshot
// paths it is made of.
type damagedItem struct {
	restore.DamagedFile
	paths []string
}

// writeEntries writes each entry as a bundle or raw file into a tar stream,
// with unique names. An entry whose data is damaged or missing is left
// out and returned; any other error ends the stream.
func writeEntries(w io.Writer, fsys fs.FS, ents []journal.Entry, format string) ([]damagedItem, error) {
	tw := newEntryTar(w)
	sort.SliceStable(ents, func(i, j int) bool { return ents[i].Time.After(ents[j].Time) })
	var damaged []damagedItem
	for _, e := range ents {
		var err error
		name := ""
		if format == FormatXOJ {
			name = journal.UnicodeBundleName(e)
			err = tw.add(name, e.Time, func(w io.Writer) error { return journal.WriteBundle(w, fsys, e) })
		} else if e.DataPath != "" {
			name = journal.UnicodeFileName(e)
			err = tw.add(name, e.Time, func(w io.Writer) error { return journal.WriteFile(w, fsys, e) })
		}
		var ge *genError
		if errors.As(err, &ge) && errors.Is(err, blob.ErrDamaged) {
			damaged = append(damaged, damagedItem{restore.DamagedFile{Path: name, Err: fmt.Sprintf("%s (%s): %v", e.Title, e.UID, ge.err)},
				entryPaths(fsys, e)})
			continue
		}
		if err != nil {
			return damaged, fmt.Errorf("%s (%s): %w", e.Title, e.UID, err)
		}
	}
	return damaged, tw.close()
}

// entryTar writes generated files (bundles) into a tar: each is produced
// into a temporary file first, since a tar header needs the size.
type entryTar struct {
	tw   *tar.Writer
	used map[string]bool
}

func newEntryTar(w io.Writer) *entryTar {
	return &entryTar{tw: tar.NewWriter(w), used: map[string]bool{}}
}

func (t *entryTar) add(name string, mtime time.Time, gen func(io.Writer) error) error {
	f, err := os.CreateTemp("", "xs-export-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := gen(f); err != nil {
		return &genError{err} // nothing written to the archive yet
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Unique also where case does not count (the FAT or exFAT of a USB
	// stick, NTFS, macOS): "Mi dibujo" and "mi dibujo" are one file there.
	base, ext := strings.TrimSuffix(name, path.Ext(name)), path.Ext(name)
	for i := 2; t.used[strings.ToLower(name)]; i++ {
		name = fmt.Sprintf("%s-%d%s", base, i, ext)
	}
	t.used[strings.ToLower(name)] = true
	if mtime.IsZero() {
		mtime = time.Now()
	}
	if err := t.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.Copy(t.tw, f)
	return err
}

func (t *entryTar) close() error { return t.tw.Close() }

// genError is a failure to produce a file, before its header was written.
type genError struct{ err error }

func (e *genError) Error() string { return e.err.Error() }
func (e *genError) Unwrap() error { return e.err }

// readJournal lists a snapshot's Journal; past journal.MaxEntries it keeps
// the entries it has (a listing that is partial beats no listing).
func readJournal(fsys fs.FS) ([]journal.Entry, error) {
	ents, err := journal.Read(fsys)
	if errors.Is(err, journal.ErrTooManyEntries) {
		err = nil
	}
	return ents, err
}

// CheckDestination refuses a restore's destination inside the store's data
// directory or holding it (directly, through a symbolic link or "..", a
// bind mount): a laptop's files written there could replace the server's
// key or sit among its packs, and a laptop names its own files.
func CheckDestination(data, dest string) error {
	if pathutil.Overlap(data, dest) {
		return errkind.Errorf(errkind.BadRequest, "%s is, holds or lies inside the store's directory %s: restore somewhere else (a USB stick, /tmp/restore)", dest, data)
	}
	return nil
}
