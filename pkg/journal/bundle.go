package journal

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// WriteFile writes the entry's data file to w. An entry without one gives an
// error wrapping [fs.ErrNotExist].
func WriteFile(w io.Writer, fsys fs.FS, e Entry) error {
	if e.DataPath == "" {
		return fmt.Errorf("journal: entry %q has no data file: %w", e.UID, fs.ErrNotExist)
	}
	f, err := fsys.Open(e.DataPath)
	if err != nil {
		return fmt.Errorf("journal: entry %q: %w", e.UID, err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("journal: entry %q: %w", e.UID, err)
	}
	return nil
}

// WriteBundle writes the entry to w as a Journal Entry Bundle (.xoj): a zip
// holding <uid>/_metadata.json (e.Metadata as a JSON object, with "uid" set
// to e.UID and no "preview"), <uid>/<uid> (the data file, streamed from
// fsys; left out if the entry has none) and <uid>/preview/<uid> (the preview
// PNG, if the entry has one of at most 1 MiB that can be read; else empty:
// Sugar 0.120's importer fails on a bundle without that member, handing the
// text it reads for a missing preview to dbus.ByteArray). Data already
// compressed (JPEG, PNG, Ogg, video, zip, PDF, EPUB...) is stored, the rest
// deflated. An entry whose uid cannot name a zip directory (empty, or with
// '/', '\', "..", control characters) gives an error before anything is
// written.
func WriteBundle(w io.Writer, fsys fs.FS, e Entry) error {
	if !validUID(e.UID) {
		return fmt.Errorf("journal: uid %q cannot name a bundle", e.UID)
	}
	meta := make(map[string]string, len(e.Metadata)+1)
	for k, v := range e.Metadata {
		if k != "preview" && validKey(k) {
			meta[k] = v
		}
	}
	meta["uid"] = e.UID
	var data fs.File
	if e.DataPath != "" {
		f, err := fsys.Open(e.DataPath)
		if err != nil {
			return fmt.Errorf("journal: entry %q: %w", e.UID, err)
		}
		defer f.Close()
		data = f
	}
	var preview []byte
	if e.PreviewPath != "" {
		// A preview is only a picture: one that cannot be read is left out.
		preview, _ = readCapped(fsys, e.PreviewPath, defaultLimits.preview)
	}

	zw := zip.NewWriter(w)
	modified := e.Time.UTC()
	if modified.Year() < 1980 || modified.Year() > 2107 {
		modified = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	create := func(name string, method uint16) (io.Writer, error) {
		h := &zip.FileHeader{Name: e.UID + "/" + name, Method: method, Modified: modified}
		h.SetMode(0o644)
		return zw.CreateHeader(h)
	}
	mw, err := create("_metadata.json", zip.Deflate)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(mw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(meta); err != nil {
		return err
	}
	if data != nil {
		method := zip.Deflate
		if compressedType(e.MimeType) {
			method = zip.Store
		}
		dw, err := create(e.UID, method)
		if err != nil {
			return err
		}
		if _, err := io.Copy(dw, data); err != nil {
			return fmt.Errorf("journal: entry %q: %w", e.UID, err)
		}
	}
	pw, err := create("preview/"+e.UID, zip.Store)
	if err != nil {
		return err
	}
	if _, err := pw.Write(preview); err != nil {
		return err
	}
	return zw.Close()
}

// compressedType reports whether data of this MIME type is compressed
// already, so that deflating it again would only cost time.
func compressedType(mimeType string) bool {
	t := mediaType(mimeType)
	switch t {
	case "image/jpeg", "image/png", "image/gif", "image/webp", "audio/ogg", "audio/mpeg",
		"application/zip", "application/pdf", "application/epub+zip", "application/gzip",
		"application/x-gzip", "application/vnd.olpc-sugar", "application/vnd.olpc-journal-entry":
		return true
	}
	return strings.HasPrefix(t, "video/") || strings.HasPrefix(t, "application/vnd.oasis.opendocument.")
}

// validUID reports whether uid can name a bundle's top directory and its
// members: UTF-8 without '/', '\', "..", control characters, at most 255
// bytes.
func validUID(uid string) bool {
	return validKey(uid) && !strings.Contains(uid, "..")
}

// Bundle is the content of a Journal Entry Bundle.
type Bundle struct {
	UID      string            // the top directory
	Metadata map[string]string // the text values of _metadata.json (numbers as text)
	Data     []byte            // the data file; nil if the bundle has none
	Preview  []byte            // the preview PNG; nil if the bundle has none (or an empty one)
}

// bundleLimits cap what ReadBundle accepts; tests shrink them.
type bundleLimits struct {
	files   int   // members of the zip
	data    int64 // bytes of the data file
	meta    int64 // bytes of _metadata.json
	preview int64 // bytes of the preview
}

var defaultBundleLimits = bundleLimits{files: 64, data: 512 << 20, meta: 1 << 20, preview: 1 << 20}

// ReadBundle parses a Journal Entry Bundle of size bytes. It accepts a zip
// of at most 64 members, all under one top directory named after a valid
// uid, with a _metadata.json (a JSON object of at most 1 MiB), at most one
// data file of at most 512 MiB and one preview of at most 1 MiB; sizes are
// checked in the zip headers and again while reading. Other members are
// ignored, but their paths must be safe too.
func ReadBundle(r io.ReaderAt, size int64) (*Bundle, error) {
	return readBundle(r, size, defaultBundleLimits)
}

func readBundle(r io.ReaderAt, size int64, lim bundleLimits) (*Bundle, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("journal: bundle: %w", err)
	}
	if len(zr.File) > lim.files {
		return nil, fmt.Errorf("journal: bundle: more than %d files", lim.files)
	}
	b := &Bundle{}
	var meta, data, preview *zip.File
	for _, f := range zr.File {
		top, rest, ok := strings.Cut(f.Name, "/")
		if !ok || !validUID(top) {
			return nil, fmt.Errorf("journal: bundle: %q is not under a <uid>/ directory", f.Name)
		}
		if b.UID == "" {
			b.UID = top
		} else if top != b.UID {
			return nil, fmt.Errorf("journal: bundle: more than one top directory (%q, %q)", b.UID, top)
		}
		if strings.ContainsAny(f.Name, "\\\x00") || !fs.ValidPath(strings.TrimSuffix(f.Name, "/")) {
			return nil, fmt.Errorf("journal: bundle: unsafe path %q", f.Name)
		}
		var slot **zip.File
		switch {
		case strings.HasSuffix(f.Name, "/"):
			continue // a directory
		case rest == "_metadata.json":
			slot = &meta
		case rest == b.UID:
			slot = &data
		case rest == "preview/"+b.UID:
			slot = &preview
		default:
			continue
		}
		if *slot != nil {
			return nil, fmt.Errorf("journal: bundle: %q twice", f.Name)
		}
		*slot = f
	}
	if meta == nil {
		return nil, errors.New("journal: bundle: no _metadata.json")
	}
	mb, err := readMember(meta, lim.meta)
	if err != nil {
		return nil, err
	}
	if b.Metadata, err = parseMetadataJSON(mb, lim.meta); err != nil {
		return nil, fmt.Errorf("journal: bundle: _metadata.json: %w", err)
	}
	if data != nil {
		if b.Data, err = readMember(data, lim.data); err != nil {
			return nil, err
		}
	}
	if preview != nil {
		if b.Preview, err = readMember(preview, lim.preview); err != nil {
			return nil, err
		}
		if len(b.Preview) == 0 {
			b.Preview = nil // what WriteBundle writes for an entry without one
		}
	}
	return b, nil
}

// readMember reads a zip member of at most max bytes, by its header and by
// what it really holds.
func readMember(f *zip.File, max int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, fmt.Errorf("journal: bundle: %q larger than %d bytes", f.Name, max)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("journal: bundle: %q: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("journal: bundle: %q: %w", f.Name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("journal: bundle: %q larger than %d bytes", f.Name, max)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}
