package server

import (
	"bytes"
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
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

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
	// once (default 4), half of them (at least one) for one user: more are
	// answered 503 with Retry-After.
	CacheBytes int64
	Concurrent int

	once  sync.Once
	cache *listingCache
	busy  chan struct{} // a token per page or download in progress
	// mu guards perUser: the places each user's requests hold.
	mu      sync.Mutex
	perUser map[store.UserID]int
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
		p.perUser = map[store.UserID]int{}
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pg := newPage(r)
		pg.Title = pg.L.T("index.title")
		p.render(w, http.StatusOK, "index.html", pg)
	})
	mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		b, _ := webFiles.ReadFile("web/style.css")
		w.Write(b)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		p.refuse(w, r, http.StatusNotFound, "err.notfound.h", "err.notfound.m", false)
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
	L     *locale    // the page's language: {{.L.T "key"}}
	Q     string     // "?lang=xx" when the language was chosen on the page, for its links
	Langs []langLink // the language switch
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
	NewLink          bool // advise asking for a new link
}

// Home is the link to the list of backups, or to the start page without
// a link.
func (pg page) Home() string {
	if pg.Base == "" {
		return "/" + pg.Q
	}
	return pg.Base + pg.Q
}

// langLink is one language of the switch: this page in that language.
type langLink struct {
	Tag, Name, Dir, Href string
	Current              bool
}

// newPage starts the page for a request in the request's language, with a
// switch to the others that keeps the link (the signed path) as it is.
func newPage(r *http.Request) page {
	l, chosen := requestLocale(r)
	pg := page{L: l}
	if chosen {
		pg.Q = "?" + langParam + "=" + l.Tag
	}
	for _, tag := range localeTags {
		o := locales[tag]
		pg.Langs = append(pg.Langs, langLink{Tag: tag, Name: o.Name, Dir: o.Dir,
			Href: r.URL.EscapedPath() + "?" + langParam + "=" + tag, Current: o == l})
	}
	return pg
}

type dateRow struct {
	ID, Day, Clock, Size string
	Pinned               bool
	PinReason            string
}

type entryRow struct {
	UID, Title, Activity, When, Size, Color, Initial string
	// Path is UID escaped for a URL's path: a uid is a file name, and
	// "#", "?" or "%2e" in one must not change where its link leads.
	Path             string
	Preview, HasData bool
}

func (p *RestorePage) render(w http.ResponseWriter, status int, name string, data page) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Language", data.L.Tag)
	hd.Add("Vary", "Accept-Language")
	// Into a buffer first: a template error is a 500, not half a page.
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		if p.Log != nil {
			p.Log.Warn("restore page", "page", name, "err", err)
		}
		http.Error(w, "restore page: "+name+" failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// refuse answers with an error page: the heading's message key and the
// message, in the request's language; newLink advises asking for a new
// link (for a link that no longer works).
func (p *RestorePage) refuse(w http.ResponseWriter, r *http.Request, status int, heading, msg string, newLink bool) {
	pg := newPage(r)
	pg.Heading = pg.L.T(heading)
	pg.Title, pg.Message, pg.NewLink = pg.Heading, pg.L.T(msg), newLink
	if tok := r.PathValue("token"); tok != "" && !newLink {
		pg.Base = "/r/" + tok + "/"
	}
	p.render(w, status, "refused.html", pg)
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
		p.refuse(w, r, http.StatusForbidden, "err.expired.h", "err.expired.m", true)
		return nil, false
	case err != nil:
		p.refuse(w, r, http.StatusForbidden, "err.badlink.h", "err.badlink.m", true)
		return nil, false
	}
	serial, id, staff := strings.Cut(claims.Serial, "\x00")
	u, err := p.Store.UserBySerial(serial)
	if err != nil || u.Revoked || (claims.ByServer && (!staff || id != u.ID.String())) {
		// A staff link names the history it was made for, not only the
		// serial: a serial given a new history since (another child) is
		// not what it opens.
		p.refuse(w, r, http.StatusForbidden, "err.badlink.h", "err.revoked.m", true)
		return nil, false
	}
	return u, true
}

// StaffLinkClaims are the claims of a staff restore link for u's backups,
// valid until expires, for the server's key to sign: they name the serial
// and the history (user ID) the link opens.
func StaffLinkClaims(u *store.User, expires time.Time) proto.LinkClaims {
	return proto.LinkClaims{Serial: u.Serial + "\x00" + u.ID.String(), Expires: expires, ByServer: true}
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
	pg := newPage(r)
	pg.Title, pg.Who, pg.Base = pg.L.T("dates.title"), who(u), "/r/"+r.PathValue("token")+"/"
	pg.Snapshots = dateRows(pg.L, p.Store.Snapshots(u.ID))
	p.render(w, http.StatusOK, "dates.html", pg)
}

// dateRows lists snapshots newest first (ties by ID, so the order is the
// same on every view), each with its day and time. Backups made in the
// same minute (a child pressing twice, a retried run) show seconds so that
// they can be told apart, and any still alike after that a number:
// "10:15:07 (2)" is the later of two made in the same second.
func dateRows(l *locale, snaps []*store.Snapshot) []dateRow {
	snaps = slices.Clone(snaps)
	slices.SortStableFunc(snaps, func(a, b *store.Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(string(b.ID), string(a.ID))
	})
	perMinute := map[string]int{}
	perSecond := map[string]int{}
	for _, sn := range snaps {
		t := sn.Time.Local()
		perMinute[t.Format("2006-01-02 15:04")]++
		perSecond[t.Format("2006-01-02 15:04:05")]++
	}
	seen := map[string]int{} // of a second, counted from the newest
	rows := make([]dateRow, 0, len(snaps))
	for _, sn := range snaps {
		t := sn.Time.Local()
		clock := t.Format("15:04")
		if perMinute[t.Format("2006-01-02 15:04")] > 1 {
			clock = t.Format("15:04:05")
			sec := t.Format("2006-01-02 15:04:05")
			if n := perSecond[sec]; n > 1 {
				clock += fmt.Sprintf(" (%d)", n-seen[sec])
				seen[sec]++
			}
		}
		rows = append(rows, dateRow{ID: string(sn.ID), Day: l.Day(t), Clock: clock,
			Size: units.Bytes(sn.Size), Pinned: sn.Pinned, PinReason: sn.PinReason})
	}
	return rows
}

// snapshot resolves the snapshot of a link's user, or refuses.
func (p *RestorePage) snapshot(w http.ResponseWriter, r *http.Request, u *store.User) (*store.Snapshot, bool) {
	id := store.SnapshotID(r.PathValue("snap"))
	sn, err := p.Store.Snapshot(u.ID, id)
	if err != nil || !store.ValidSnapshotID(id) {
		p.refuse(w, r, http.StatusNotFound, "err.notyours.h", "err.notyours.m", false)
		return nil, false
	}
	return sn, true
}

// limited runs h for the link's user if fewer than Concurrent pages and
// downloads are in progress, and fewer than half of those (at least one)
// for this user, else answers 503 with Retry-After: memory and CPU stay
// bounded however many children (or scripts) ask at once, and one child's
// downloads (or one link in a script) never hold every place.
func (p *RestorePage) limited(h func(http.ResponseWriter, *http.Request, *store.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		busy := func() {
			w.Header().Set("Retry-After", "5")
			p.refuse(w, r, http.StatusServiceUnavailable, "err.busy.h", "err.busy.m", false)
		}
		select {
		case p.busy <- struct{}{}:
			defer func() { <-p.busy }()
		default:
			busy()
			return
		}
		u, ok := p.user(w, r)
		if !ok {
			return
		}
		if r.PathValue("kind") == "p" {
			// A listing's preview images come many at once (a
			// browser asks for six together) and are small: only the
			// page's own bound holds them.
			h(w, r, u)
			return
		}
		if !p.take(u.ID) {
			busy()
			return
		}
		defer p.give(u.ID)
		h(w, r, u)
	}
}

// take holds one of user's places (half of Concurrent, at least one), if
// one is free.
func (p *RestorePage) take(user store.UserID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.perUser[user] >= max(1, p.Concurrent/2) {
		return false
	}
	p.perUser[user]++
	return true
}

// give gives back a place take held.
func (p *RestorePage) give(user store.UserID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.perUser[user]--; p.perUser[user] <= 0 {
		delete(p.perUser, user)
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
	pg := newPage(r)
	pg.Heading = pg.L.T("err.damaged.h")
	pg.Title, pg.Message, pg.Base = pg.Heading, pg.L.T("err.damaged.m"), "/r/"+r.PathValue("token")+"/"
	older, err := restore.NewIntactChecker(p.Store).FindOlder(r.Context(), p.Store.OlderSnapshots(sn), []string{e.DataPath})
	if err == nil && older != "" {
		if o, err := p.Store.Snapshot(sn.User, store.SnapshotID(older)); err == nil {
			t := o.Time.Local()
			pg.Message = pg.L.T("err.damaged.older", pg.L.DayTime(t))
		}
	}
	p.render(w, http.StatusInternalServerError, "refused.html", pg)
}

func (p *RestorePage) entries(w http.ResponseWriter, r *http.Request, u *store.User) {
	sn, ok := p.snapshot(w, r, u)
	if !ok {
		return
	}
	_, ents, err := p.journal(r.Context(), sn)
	if err != nil {
		p.unreadable(w, r, err)
		return
	}
	pg := newPage(r)
	rows := make([]entryRow, 0, len(ents))
	// A uid in both layouts (a laptop upgraded from Sugar 0.82) is one
	// document, listed once: the current layout's, as entry prefers it (one
	// pass: a listing may hold 100,000 entries).
	current := map[string]int{}
	for i := range ents {
		if ents[i].Layout == journal.LayoutCurrent {
			current[ents[i].UID] = i
		}
	}
	listed := map[string]bool{}
	for _, e := range ents {
		if listed[e.UID] {
			continue
		}
		listed[e.UID] = true
		if i, ok := current[e.UID]; ok {
			e = ents[i]
		}
		activity := journal.ActivityName(e.Activity)
		row := entryRow{UID: e.UID, Path: url.PathEscape(e.UID), Title: e.Title, Activity: pg.L.Activity(activity),
			Preview: e.PreviewPath != "", HasData: e.DataPath != ""}
		if !e.Time.IsZero() {
			row.When = pg.L.DateTime(e.Time.Local())
		}
		if e.Size > 0 {
			row.Size = units.Bytes(e.Size)
		}
		row.Initial, row.Color = badge(row.Activity, row.Title, activity)
		rows = append(rows, row)
	}
	t := sn.Time.Local()
	pg.Title, pg.Who, pg.Base = pg.L.T("entries.title", pg.L.Date(t)), who(u), "/r/"+r.PathValue("token")+"/"
	pg.Snap, pg.Day, pg.Entries = pg.Base+"s/"+string(sn.ID)+"/", pg.L.DayTime(t), rows
	p.render(w, http.StatusOK, "entries.html", pg)
}

// unreadable refuses a page or download whose backup could not be read.
func (p *RestorePage) unreadable(w http.ResponseWriter, r *http.Request, err error) {
	pg := newPage(r)
	pg.Heading = pg.L.T("err.unreadable.h")
	pg.Title, pg.Message = pg.Heading, pg.L.T("err.unreadable.m", err.Error())
	p.render(w, http.StatusInternalServerError, "refused.html", pg)
}

// contentType is the Content-Type of a download: the entry's MIME type if
// it is one (a type/subtype with parameters, in printable ASCII), else
// application/octet-stream. A Journal's metadata is the laptop's, and a
// control byte in a header makes the whole answer unreadable.
func contentType(mt string) string {
	for i := 0; i < len(mt); i++ {
		if mt[i] < 0x20 || mt[i] >= 0x7f {
			return "application/octet-stream"
		}
	}
	if t, params, err := mime.ParseMediaType(mt); err == nil && strings.Contains(t, "/") {
		return mime.FormatMediaType(t, params)
	}
	return "application/octet-stream"
}

// badge is the letter and colour class shown for an entry without a
// preview: the first letter of the activity's name (or else of the title)
// and a colour of the activity, the same in every language.
func badge(activity, title, colorKey string) (string, string) {
	name := activity
	if name == "" {
		name = title
	}
	// The first letter or digit: a direction mark or other control
	// shown outside the title's isolation would reorder its row.
	r := '?'
	for _, c := range name {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			r = c
			break
		}
	}
	h := fnv.New32a()
	h.Write([]byte(colorKey))
	return string(unicode.ToUpper(r)), fmt.Sprint(h.Sum32() % 8) // style.css has .c0 to .c7
}

func (p *RestorePage) download(w http.ResponseWriter, r *http.Request, u *store.User) {
	sn, ok := p.snapshot(w, r, u)
	if !ok {
		return
	}
	fsys, ents, err := p.journal(r.Context(), sn)
	if err != nil {
		p.unreadable(w, r, err)
		return
	}
	e := entry(ents, r.PathValue("uid"))
	if e == nil {
		p.refuse(w, r, http.StatusNotFound, "err.notinbackup.h", "err.notinbackup.m", false)
		return
	}
	if k := r.PathValue("kind"); (k == "x" || k == "f") && e.DataPath != "" {
		if err := verify(fsys, e.DataPath); errors.Is(err, blob.ErrDamaged) {
			p.damaged(w, r, sn, e, err)
			return
		} else if err != nil {
			p.unreadable(w, r, err)
			return
		}
	}
	hd := w.Header()
	// A download that does not move is cut: it holds one of the page's few
	// places (limited) while it lasts.
	w = &movingWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	switch r.PathValue("kind") {
	case "x":
		hd.Set("Content-Type", "application/vnd.olpc-journal-entry")
		hd.Set("Content-Disposition", attachment(journal.BundleName(*e), journal.UnicodeBundleName(*e)))
		err = journal.WriteBundle(w, fsys, *e)
	case "f":
		if e.DataPath == "" {
			p.refuse(w, r, http.StatusNotFound, "err.nofile.h", "err.nofile.m", false)
			return
		}
		ct := contentType(e.MimeType)
		hd.Set("Content-Type", ct)
		hd.Set("Content-Disposition", attachment(journal.FileName(*e), journal.UnicodeFileName(*e)))
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
		p.refuse(w, r, http.StatusNotFound, "err.notfound.h", "err.notfound.m", false)
		return
	}
	if err != nil {
		// Headers are gone: the download is cut short, never completed
		// with wrong bytes.
		if p.Log != nil {
			p.Log.Warn("restore page download", "serial", u.Serial, "uid", e.UID, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// attachment is a Content-Disposition (RFC 6266) for a download named
// full, with ascii as the name for browsers that do not read filename*
// (full is percent-encoded as RFC 8187 says):
//
//	attachment; filename="ascii"; filename*=UTF-8''full
//
// so "我的画.png" and "رسمتي.png" download with their real names. Both names
// come sanitised from package journal; ascii is made safe for a quoted
// string again here, and full is percent-encoded whole, so neither can
// break out of the header.
func attachment(ascii, full string) string {
	safe := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '/' {
			return '_'
		}
		return r
	}, ascii)
	h := `attachment; filename="` + safe + `"`
	if full != "" && full != safe {
		h += "; filename*=UTF-8''" + encodeExtValue(full)
	}
	return h
}

// encodeExtValue percent-encodes s as the value-chars of an RFC 8187
// ext-value: every byte but attr-char.
func encodeExtValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// entry finds uid among ents; of a uid in both layouts, the current one.
func entry(ents []journal.Entry, uid string) *journal.Entry {
	var e *journal.Entry
	for i := range ents {
		if ents[i].UID == uid && (e == nil || ents[i].Layout == journal.LayoutCurrent) {
			e = &ents[i]
		}
	}
	return e
}

// stallTimeout is the longest a download's write may wait for the browser
// to take bytes (32 KiB in 10 s: 3 KB/s, slower than any school Wi-Fi).
const stallTimeout = 10 * time.Second

// movingWriter gives each write of a download stallTimeout to complete.
type movingWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (m *movingWriter) Write(p []byte) (int, error) {
	m.rc.SetWriteDeadline(time.Now().Add(stallTimeout))
	return m.ResponseWriter.Write(p)
}
