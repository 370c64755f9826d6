package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Entry is one Journal entry found in a datastore.
type Entry struct {
	UID         string
	Title       string            // metadata title; the UID when missing or empty
	Activity    string            // bundle id of the activity that made it ("" if unknown)
	MimeType    string            // metadata mime_type ("" if unknown)
	Time        time.Time         // from timestamp, else mtime, else zero (UTC)
	Size        int64             // size of the data file in bytes; -1 if the entry has no data file
	Metadata    map[string]string // every text metadata value (preview and other binary values left out); never nil
	DataPath    string            // slash path of the data file inside the fs.FS ("" if none)
	PreviewPath string            // slash path of the preview PNG inside the fs.FS ("" if none)
	Layout      string            // "current" or "old"
	Problems    []string          // what could not be read (the entry is still usable)
}

// Layout names, the values of [Entry.Layout].
const (
	LayoutCurrent = "current" // <uid[:2]>/<uid>/{data,metadata/<key>} (Sugar 0.84 and later)
	LayoutOld     = "old"     // store/<uid>, store/<uid>.metadata (Sugar 0.82 and earlier)
)

// MaxEntries is the most entries [Read] lists.
const MaxEntries = 100000

// ErrTooManyEntries is returned by [Read], together with the first
// [MaxEntries] entries it found, when a datastore holds more.
var ErrTooManyEntries = errors.New("journal: too many entries")

// limits caps every read; tests shrink them.
type limits struct {
	entries   int   // entries listed by Read
	value     int64 // bytes of one metadata value
	entryMeta int64 // bytes of all metadata of one entry; of an old .metadata file
	keys      int   // metadata keys of one entry
	preview   int64 // bytes of a preview
	// listMeta is the bytes of metadata one listing keeps for all its
	// entries together: past it, an entry keeps only the keys that name
	// it, cut short (a snapshot's entries can all hold the same megabyte,
	// stored once, and a listing of MaxEntries of them would hold ~100 GiB).
	listMeta int64
}

var defaultLimits = limits{entries: MaxEntries, value: 512 << 10, entryMeta: 1 << 20, keys: 1024, preview: 1 << 20, listMeta: 64 << 20}

// spentValue is how much of a naming key's value an entry keeps once the
// listing's metadata budget is spent.
const spentValue = 80

// spend charges the entry's metadata to what is left of the listing's
// budget; once it is spent, the entry keeps only the keys that name it,
// each cut to spentValue bytes.
func (e *Entry) spend(left *int64) {
	var n int64
	for k, v := range e.Metadata {
		n += int64(len(k) + len(v))
	}
	if n <= *left {
		*left -= n
		return
	}
	dropped := 0
	for k, v := range e.Metadata {
		if keyRank(k) != 0 {
			delete(e.Metadata, k)
			dropped++
			continue
		}
		if len(v) > spentValue {
			cut := spentValue
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
			e.Metadata[k] = v[:cut]
		}
		*left -= int64(len(k) + len(e.Metadata[k]))
	}
	*left = max(*left, 0)
	if e.Title != e.UID {
		e.Title = e.Metadata["title"]
	}
	e.Activity, e.MimeType = e.Metadata["activity"], e.Metadata["mime_type"]
	e.problem("metadata cut short (%d keys left out): this listing's %d MiB of metadata is used up", dropped, defaultLimits.listMeta>>20)
}

// errTooBig is returned by readCapped for a file over its cap.
var errTooBig = errors.New("too large")

// Read lists every entry of both layouts in fsys, newest first (by Time,
// then UID; entries without a time last). Damaged entries are listed too,
// with notes in Problems. The error is non-nil only when the root cannot be
// listed, or with [ErrTooManyEntries] (and the entries found so far).
func Read(fsys fs.FS) ([]Entry, error) { return read(fsys, defaultLimits) }

func read(fsys fs.FS, lim limits) ([]Entry, error) {
	top, more, err := readDir(fsys, ".", lim.entries)
	if err != nil {
		return nil, fmt.Errorf("journal: list the datastore: %w", err)
	}
	var ents []Entry
	full := more
	left := lim.listMeta
	add := func(e Entry) bool {
		if len(ents) >= lim.entries {
			full = true
			return false
		}
		e.spend(&left)
		ents = append(ents, e)
		return true
	}
outer:
	for _, d := range top {
		name := d.Name()
		switch {
		case name == "store" && d.IsDir():
			for _, uid := range oldUIDs(fsys, lim, &full) {
				if !add(readOld(fsys, uid, lim)) {
					break outer
				}
			}
		case len(name) == 2 && d.IsDir():
			// A directory that cannot be listed holds no entry we can name.
			items, more, _ := readDir(fsys, name, lim.entries)
			full = full || more
			for _, it := range items {
				if uid := it.Name(); it.IsDir() && len(uid) >= 2 && uid[:2] == name {
					if !add(readCurrent(fsys, uid, lim)) {
						break outer
					}
				}
			}
		}
	}
	sortEntries(ents)
	if full {
		return ents, fmt.Errorf("%w: listing stopped at %d", ErrTooManyEntries, lim.entries)
	}
	return ents, nil
}

// sortEntries orders entries newest first, then by UID, current layout first.
func sortEntries(ents []Entry) {
	slices.SortStableFunc(ents, func(a, b Entry) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.UID, b.UID); c != 0 {
			return c
		}
		return strings.Compare(a.Layout, b.Layout) // "current" < "old"
	})
}

// oldUIDs lists the uids of the old layout's store directory: every regular
// file, with ".metadata" cut off.
func oldUIDs(fsys fs.FS, lim limits, full *bool) []string {
	items, more, _ := readDir(fsys, "store", 2*lim.entries)
	*full = *full || more
	seen := map[string]bool{}
	var uids []string
	for _, it := range items {
		if !it.Type().IsRegular() {
			continue
		}
		uid := strings.TrimSuffix(it.Name(), ".metadata")
		if uid != "" && !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	slices.Sort(uids)
	return uids
}

// Lookup returns the entry uid of fsys (the current layout's if both
// layouts hold it). An entry that is not there gives an error wrapping
// [fs.ErrNotExist].
func Lookup(fsys fs.FS, uid string) (Entry, error) {
	if validName(uid) {
		if len(uid) >= 2 {
			if fi, err := fs.Stat(fsys, uid[:2]+"/"+uid); err == nil && fi.IsDir() {
				return readCurrent(fsys, uid, defaultLimits), nil
			}
		}
		if !strings.HasSuffix(uid, ".metadata") {
			for _, p := range []string{"store/" + uid, "store/" + uid + ".metadata"} {
				if fi, err := fs.Stat(fsys, p); err == nil && fi.Mode().IsRegular() {
					return readOld(fsys, uid, defaultLimits), nil
				}
			}
		}
	}
	return Entry{}, fmt.Errorf("journal: entry %q: %w", uid, fs.ErrNotExist)
}

// validName reports whether s can be one path element of an fs.FS.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00") && fs.ValidPath(s)
}

func newEntry(uid, layout string) Entry {
	return Entry{UID: uid, Layout: layout, Size: -1, Metadata: map[string]string{}}
}

func (e *Entry) problem(format string, args ...any) {
	e.Problems = append(e.Problems, fmt.Sprintf(format, args...))
}

// setData records the data file p, if it is there.
func (e *Entry) setData(fsys fs.FS, p string) {
	fi, err := fs.Stat(fsys, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		e.problem("data file: %v", err)
	case !fi.Mode().IsRegular():
		e.problem("data file is not a regular file")
	default:
		e.DataPath, e.Size = p, fi.Size()
	}
}

// setPreview records the preview p, if it is there and not too large.
func (e *Entry) setPreview(fsys fs.FS, p string, lim limits) {
	fi, err := fs.Stat(fsys, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		e.problem("preview: %v", err)
	case !fi.Mode().IsRegular():
		e.problem("preview is not a regular file")
	case fi.Size() > lim.preview:
		e.problem("preview larger than %d bytes ignored", lim.preview)
	default:
		e.PreviewPath = p
	}
}

// keyRank puts the keys that name an entry first, so that the per-entry cap
// leaves out the least useful values.
func keyRank(key string) int {
	switch key {
	case "title", "activity", "mime_type", "timestamp", "mtime", "uid":
		return 0
	}
	return 1
}

func readCurrent(fsys fs.FS, uid string, lim limits) Entry {
	e := newEntry(uid, LayoutCurrent)
	dir := uid[:2] + "/" + uid
	e.setData(fsys, dir+"/data")
	items, more, err := readDir(fsys, dir+"/metadata", lim.keys)
	if err != nil {
		e.problem("metadata: %v", err)
	}
	if more {
		e.problem("more than %d metadata keys; the rest left out", lim.keys)
	}
	slices.SortStableFunc(items, func(a, b fs.DirEntry) int { return keyRank(a.Name()) - keyRank(b.Name()) })
	var total int64
	for _, it := range items {
		key, p := it.Name(), dir+"/metadata/"+it.Name()
		if key == "preview" {
			e.setPreview(fsys, p, lim)
			continue
		}
		if !it.Type().IsRegular() {
			e.problem("metadata %q is not a regular file", key)
			continue
		}
		b, err := readCapped(fsys, p, lim.value)
		switch {
		case errors.Is(err, errTooBig):
			e.problem("metadata %q larger than %d bytes left out", key, lim.value)
			continue
		case err != nil:
			e.problem("metadata %q: %v", key, err)
			continue
		case !utf8.ValidString(key) || !utf8.Valid(b):
			e.problem("metadata %q is not UTF-8 text; left out", key)
			continue
		case total+int64(len(b)) > lim.entryMeta:
			e.problem("metadata %q left out: over %d bytes of metadata", key, lim.entryMeta)
			continue
		}
		total += int64(len(b))
		e.Metadata[key] = string(b)
	}
	e.finish()
	return e
}

func readOld(fsys fs.FS, uid string, lim limits) Entry {
	e := newEntry(uid, LayoutOld)
	e.setData(fsys, "store/"+uid)
	b, err := readCapped(fsys, "store/"+uid+".metadata", lim.entryMeta)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.problem("no metadata file")
	case errors.Is(err, errTooBig):
		e.problem("metadata file larger than %d bytes treated as damaged", lim.entryMeta)
	case err != nil:
		e.problem("metadata file: %v", err)
	default:
		m, err := parseMetadataJSON(b, lim.value)
		if err != nil {
			e.problem("metadata file: %v", err)
		}
		e.Metadata = m
	}
	e.setPreview(fsys, "store/preview/"+uid, lim)
	e.finish()
	return e
}

// validKey reports whether a metadata key can be what the current layout
// makes of it, a file name in the entry's metadata directory. An old-layout
// entry's keys come from a JSON object and can be anything, and Sugar's
// datastore writes each key of a bundle it installs as a file, joined to
// that directory without a check: "../../.bashrc" must never reach it.
func validKey(k string) bool {
	if k == "" || k == "." || k == ".." || len(k) > 255 || !utf8.ValidString(k) {
		return false
	}
	for _, r := range k {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return false
		}
	}
	return true
}

// parseMetadataJSON decodes a JSON object of metadata: strings are kept,
// numbers kept as their literal text, other values and "preview" left out.
// The map is never nil; the error says what was left out or why nothing
// could be read.
func parseMetadataJSON(b []byte, maxValue int64) (map[string]string, error) {
	m := map[string]string{}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return m, fmt.Errorf("not a JSON object: %w", err)
	}
	if raw == nil {
		return m, errors.New("not a JSON object: null")
	}
	var big []string
	for k, v := range raw {
		var s string
		switch {
		case k == "preview" || len(v) == 0 || !validKey(k):
			continue
		case v[0] == '"':
			if json.Unmarshal(v, &s) != nil {
				continue
			}
		case v[0] == '-' || v[0] >= '0' && v[0] <= '9':
			s = string(v)
		default:
			continue
		}
		if int64(len(s)) > maxValue {
			big = append(big, k)
			continue
		}
		m[k] = s
	}
	if len(big) > 0 {
		slices.Sort(big)
		return m, fmt.Errorf("values larger than %d bytes left out: %q", maxValue, big)
	}
	return m, nil
}

// finish sets the fields derived from the metadata.
func (e *Entry) finish() {
	e.Title = e.Metadata["title"]
	if strings.TrimSpace(e.Title) == "" {
		e.Title = e.UID
	}
	e.Activity = e.Metadata["activity"]
	e.MimeType = e.Metadata["mime_type"]
	if s, ok := e.Metadata["timestamp"]; ok {
		t, err := parseTimestamp(s)
		if err == nil {
			e.Time = t
			return
		}
		e.problem("timestamp: %v", err)
	}
	if s, ok := e.Metadata["mtime"]; ok {
		t, err := parseMtime(s)
		if err == nil {
			e.Time = t
			return
		}
		e.problem("mtime: %v", err)
	}
}

// Unix seconds of years 1 and 9999, the range time.Time formats sensibly
// (the first instant excluded: it is the zero Time, "no time").
const minUnix, maxUnix = -62135596800, 253402300799

// parseTimestamp parses Unix seconds, possibly fractional ("1725177600.5").
func parseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= minUnix || n > maxUnix {
			return time.Time{}, errors.New("out of range")
		}
		return time.Unix(n, 0).UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, errors.New("not a number of seconds")
	}
	if f <= minUnix || f > maxUnix {
		return time.Time{}, errors.New("out of range")
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64(math.Round((f-sec)*1e9))).UTC(), nil
}

// parseMtime parses Sugar's ISO time ("2026-09-01T08:00:00.000000", taken
// as UTC) or RFC 3339.
func parseMtime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not an ISO date and time")
}

// readCapped reads the file p, or fails with errTooBig if it holds more
// than max bytes.
func readCapped(fsys fs.FS, p string, max int64) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errTooBig
	}
	return b, nil
}

// readDir lists the directory p sorted by name, reading at most max items;
// more reports that there were more.
func readDir(fsys fs.FS, p string, max int) (items []fs.DirEntry, more bool, err error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	d, ok := f.(fs.ReadDirFile)
	if !ok {
		items, err = fs.ReadDir(fsys, p)
	} else {
		for {
			batch, rerr := d.ReadDir(256)
			items = append(items, batch...)
			if len(items) > max || rerr != nil || len(batch) == 0 {
				if rerr != io.EOF {
					err = rerr
				}
				break
			}
		}
	}
	if len(items) > max {
		items, more = items[:max], true
	}
	slices.SortFunc(items, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return items, more, err
}
