package server

import (
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/xs-backup/xs-backup/internal/units"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

//go:embed web
var webFiles embed.FS

var pages = template.Must(template.ParseFS(webFiles, "web/*.html"))

// RestorePage serves the students' restore page: a link signed by a
// laptop's key (or by the server's, for staff) shows that laptop's backup
// dates, then the Journal entries of one backup, each downloadable as a
// Journal Entry Bundle or as the raw file. Everything is rendered on the
// server (no JavaScript), small enough for the Sugar Browse activity.
type RestorePage struct {
	Store     *store.Store
	ServerKey ed25519.PublicKey
	Now       func() time.Time // default time.Now
	Log       *slog.Logger
	// CacheBytes bounds the memory of the Journal listings kept (default
	// 64 MiB); Concurrent bounds the listings and downloads worked on at
	// once (default 4): more are answered 503 with Retry-After.
	CacheBytes int64
	Concurrent int

	once  sync.Once
	cache *listingCache
	busy  chan struct{} // a token per page or download in progress
}

// Handler returns the page's HTTP handler.
func (p *RestorePage) Handler() http.Handler {
	p.once.Do(func() {
		if p.CacheBytes <= 0 {
			p.CacheBytes = 64 << 20
		}
		if p.Concurrent <= 0 {
			p.Concurrent = 4
		}
		p.cache = newListingCache(p.CacheBytes)
		p.busy = make(chan struct{}, p.Concurrent)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		p.render(w, http.StatusOK, "index.html", page{Title: "Get your work back"})
	})
	mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		b, _ := webFiles.ReadFile("web/style.css")
		w.Write(b)
	})
	mux.HandleFunc("GET /r/{token}/{$}", p.dates)
	mux.HandleFunc("GET /r/{token}/s/{snap}/{$}", p.limited(p.entries))
	mux.HandleFunc("GET /r/{token}/s/{snap}/{kind}/{uid}", p.limited(p.download))
	return secureHeaders(mux)
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		// The link is the key: never send it on as a Referer, never cache.
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'none'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title string
	Who   string
	Base  string // /r/TOKEN/
	Snap  string // /r/TOKEN/s/SNAP/
	// dates
	Snapshots []dateRow
	// entries
	Day     string
	Entries []entryRow
	// refusals
	Heading, Message string
}

type dateRow struct {
	ID, Day, Clock, Size string
	Pinned               bool
	PinReason            string
}

type entryRow struct {
	UID, Title, Activity, When, Size, Color, Initial string
	Preview, HasData                                 bool
}

func (p *RestorePage) render(w http.ResponseWriter, status int, name string, data page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil && p.Log != nil {
		p.Log.Warn("restore page", "err", err)
	}
}

func (p *RestorePage) refuse(w http.ResponseWriter, status int, heading, msg string) {
	p.render(w, status, "refused.html", page{Title: heading, Heading: heading, Message: msg})
}

// user checks the link and returns whose backups it shows.
func (p *RestorePage) user(w http.ResponseWriter, r *http.Request) (*store.User, bool) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	claims, err := proto.VerifyLink(r.PathValue("token"), now(), func(serial string, byServer bool) (ed25519.PublicKey, error) {
		if byServer {
			return p.ServerKey, nil
		}
		u, err := p.Store.UserBySerial(serial)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(u.PublicKey), nil
	})
	switch {
	case errors.Is(err, proto.ErrLinkExpired):
		p.refuse(w, http.StatusForbidden, "This link has expired", "Links to your backups work for one hour, so that nobody else can use yours later.")
		return nil, false
	case err != nil:
		p.refuse(w, http.StatusForbidden, "This link does not work", "It was not made by a laptop of this school, or it was changed on the way.")
		return nil, false
	}
	u, err := p.Store.UserBySerial(claims.Serial)
	if err != nil || u.Revoked {
		p.refuse(w, http.StatusForbidden, "This link does not work", "This laptop may no longer get backups from the school server.")
		return nil, false
	}
	return u, true
}

func who(u *store.User) string {
	if u.Nickname != "" {
		return u.Nickname
	}
	return u.Serial
}

func (p *RestorePage) dates(w http.ResponseWriter, r *http.Request) {
	u, ok := p.user(w, r)
	if !ok {
		return
	}
	base := "/r/" + r.PathValue("token") + "/"
	snaps := p.Store.Snapshots(u.ID)
	rows := make([]dateRow, 0, len(snaps))
	for i := len(snaps) - 1; i >= 0; i-- {
		sn := snaps[i]
		t := sn.Time.Local()
		rows = append(rows, dateRow{ID: string(sn.ID), Day: t.Format("Monday 2 January 2006"), Clock: t.Format("15:04"),
			Size: units.Bytes(sn.Size), Pinned: sn.Pinned, PinReason: sn.PinReason})
	}
	p.render(w, http.StatusOK, "dates.html", page{Title: "Your backups", Who: who(u), Base: base, Snapshots: rows})
}

// snapshot resolves the snapshot of a link's user, or refuses.
func (p *RestorePage) snapshot(w http.ResponseWriter, r *http.Request, u *store.User) (*store.Snapshot, bool) {
	id := store.SnapshotID(r.PathValue("snap"))
	sn, err := p.Store.Snapshot(u.ID, id)
	if err != nil || !store.ValidSnapshotID(id) {
		p.refuse(w, http.StatusNotFound, "This backup is not one of yours", "Go back to the list of your backups and pick a day.")
		return nil, false
	}
	return sn, true
}

// limited runs h if fewer than Concurrent pages and downloads are in
// progress, else answers 503 with Retry-After: memory and CPU stay bounded
// however many children (or scripts) ask at once.
func (p *RestorePage) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case p.busy <- struct{}{}:
			defer func() { <-p.busy }()
			h(w, r)
		default:
			w.Header().Set("Retry-After", "5")
			p.refuse(w, http.StatusServiceUnavailable, "The school server is busy", "Many people are getting their work back right now. Wait a few seconds and try again.")
		}
	}
}

// journal lists a snapshot's Journal, from the cache when it can.
func (p *RestorePage) journal(ctx context.Context, sn *store.Snapshot) (fs.FS, []journal.Entry, error) {
	fsys := restore.SnapshotFS(ctx, p.Store, sn.Root)
	if ents, ok := p.cache.get(sn.Root); ok {
		return fsys, ents, nil
	}
	ents, err := journal.Read(fsys)
	if errors.Is(err, journal.ErrTooManyEntries) {
		err = nil // show what fits
	}
	if err == nil {
		p.cache.put(sn.Root, ents)
	}
	return fsys, ents, err
}

// verify reads the file at name of fsys through once, so that every chunk
// is checked before the first byte of a download (whose headers promise
// a complete document) is sent.
func verify(fsys fs.FS, name string) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// damaged answers a download of a document whose data on the server is
// damaged or missing, naming an older backup that holds it intact.
func (p *RestorePage) damaged(w http.ResponseWriter, r *http.Request, sn *store.Snapshot, e *journal.Entry, cause error) {
	if p.Log != nil {
		p.Log.Warn("restore page: damaged document", "uid", e.UID, "snapshot", sn.ID, "err", cause)
	}
	msg := "Its copy on the school server is damaged, so it cannot be downloaded from this backup. Please tell your teacher."
	older, err := restore.NewIntactChecker(p.Store).FindOlder(r.Context(), p.Store.OlderSnapshots(sn), []string{e.DataPath})
	if err == nil && older != "" {
		if o, err := p.Store.Snapshot(sn.User, store.SnapshotID(older)); err == nil {
			msg = "Its copy in this backup is damaged, but the backup of " + o.Time.Local().Format("Monday 2 January 2006, 15:04") +
				" has it intact: go back to the list of your backups and pick that day."
		}
	}
	p.refuse(w, http.StatusInternalServerError, "This document is damaged", msg)
}

func (p *RestorePage) entries(w http.ResponseWriter, r *http.Request) {
	u, ok := p.user(w, r)
	if !ok {
		return
	}
	sn, ok := p.snapshot(w, r, u)
	if !ok {
		return
	}
	_, ents, err := p.journal(r.Context(), sn)
	if err != nil {
		p.refuse(w, http.StatusInternalServerError, "This backup cannot be read", "Please tell your teacher: the school server could not read this backup ("+err.Error()+").")
		return
	}
	base := "/r/" + r.PathValue("token") + "/"
	rows := make([]entryRow, 0, len(ents))
	for _, e := range ents {
		row := entryRow{UID: e.UID, Title: e.Title, Activity: journal.ActivityName(e.Activity),
			Preview: e.PreviewPath != "", HasData: e.DataPath != ""}
		if !e.Time.IsZero() {
			row.When = e.Time.Local().Format("2 Jan 2006 15:04")
		}
		if e.Size > 0 {
			row.Size = units.Bytes(e.Size)
		}
		row.Initial, row.Color = badge(row.Activity, row.Title)
		rows = append(rows, row)
	}
	t := sn.Time.Local()
	p.render(w, http.StatusOK, "entries.html", page{Title: "Backup of " + t.Format("2 January 2006"), Who: who(u), Base: base,
		Snap: base + "s/" + string(sn.ID) + "/", Day: t.Format("Monday 2 January 2006, 15:04"), Entries: rows})
}

// badge is the letter and colour class shown for an entry without a preview.
func badge(activity, title string) (string, string) {
	name := activity
	if name == "" {
		name = title
	}
	r, _ := utf8.DecodeRuneInString(name)
	if r == utf8.RuneError {
		r = '?'
	}
	h := fnv.New32a()
	h.Write([]byte(activity))
	return string(unicode.ToUpper(r)), fmt.Sprint(h.Sum32() % 8) // style.css has .c0 to .c7
}

func (p *RestorePage) download(w http.ResponseWriter, r *http.Request) {
	u, ok := p.user(w, r)
	if !ok {
		return
	}
	sn, ok := p.snapshot(w, r, u)
	if !ok {
		return
	}
	fsys, ents, err := p.journal(r.Context(), sn)
	if err != nil {
		p.refuse(w, http.StatusInternalServerError, "This backup cannot be read", err.Error())
		return
	}
	uid := r.PathValue("uid")
	var e *journal.Entry
	for i := range ents {
		if ents[i].UID == uid {
			e = &ents[i]
		}
	}
	if e == nil {
		p.refuse(w, http.StatusNotFound, "This document is not in that backup", "Go back and pick it from the list.")
		return
	}
	if k := r.PathValue("kind"); (k == "x" || k == "f") && e.DataPath != "" {
		if err := verify(fsys, e.DataPath); errors.Is(err, blob.ErrDamaged) {
			p.damaged(w, r, sn, e, err)
			return
		} else if err != nil {
			p.refuse(w, http.StatusInternalServerError, "This backup cannot be read", err.Error())
			return
		}
	}
	hd := w.Header()
	switch r.PathValue("kind") {
	case "x":
		hd.Set("Content-Type", "application/vnd.olpc-journal-entry")
		hd.Set("Content-Disposition", attachment(journal.BundleName(*e)))
		err = journal.WriteBundle(w, fsys, *e)
	case "f":
		if e.DataPath == "" {
			p.refuse(w, http.StatusNotFound, "This document has no file", "Get it as a Journal entry instead.")
			return
		}
		ct := e.MimeType
		if ct == "" || strings.ContainsAny(ct, "\r\n") {
			ct = "application/octet-stream"
		}
		hd.Set("Content-Type", ct)
		hd.Set("Content-Disposition", attachment(journal.FileName(*e)))
		if e.Size >= 0 {
			hd.Set("Content-Length", fmt.Sprint(e.Size))
		}
		err = journal.WriteFile(w, fsys, *e)
	case "p":
		if e.PreviewPath == "" {
			http.NotFound(w, r)
			return
		}
		hd.Set("Content-Type", "image/png")
		var b []byte
		if b, err = fs.ReadFile(fsys, e.PreviewPath); err == nil && len(b) <= 1<<20 {
			w.Write(b)
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		// Headers are gone: the download is cut short, never completed
		// with wrong bytes.
		if p.Log != nil {
			p.Log.Warn("restore page download", "serial", u.Serial, "uid", uid, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// attachment is a Content-Disposition for an ASCII-safe file name.
func attachment(name string) string {
	safe := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '/' {
			return '_'
		}
		return r
	}, name)
	return `attachment; filename="` + safe + `"`
}
