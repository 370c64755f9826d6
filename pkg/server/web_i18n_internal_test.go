package server

import (
	"fmt"
	"maps"
	"mime"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// formatArgs lists the arguments a fmt format uses as "index:verb",
// sorted: "%s and %d" and "%[2]d y %[1]s" both give [1:s 2:d].
func formatArgs(t *testing.T, f string) []string {
	t.Helper()
	var out []string
	next := 1
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		for i < len(f) && strings.IndexByte("+-# 0123456789.", f[i]) >= 0 {
			i++
		}
		if i < len(f) && f[i] == '[' {
			end := strings.IndexByte(f[i:], ']')
			n, err := strconv.Atoi(f[i+1 : i+max(end, 1)])
			if end < 0 || err != nil {
				t.Fatalf("%q: bad argument index", f)
			}
			next, i = n, i+end+1
		}
		if i >= len(f) {
			t.Fatalf("%q: ends in a verb", f)
		}
		if f[i] == '%' {
			continue
		}
		out = append(out, fmt.Sprintf("%d:%c", next, f[i]))
		next++
	}
	slices.Sort(out)
	return out
}

// TestPageCatalogues: every language has every message of English, no
// other, each with the same format arguments (by index and verb, so a
// translation may reorder them), and its own name and direction.
func TestPageCatalogues(t *testing.T) {
	en := locales["en"]
	names := map[string]string{"en": "English", "es": "Español", "fr": "Français", "pt": "Português", "ar": "العربية", "sw": "Kiswahili"}
	if len(locales) != len(names) {
		t.Fatalf("%d languages, want %d", len(locales), len(names))
	}
	for tag, l := range locales {
		if l.Name != names[tag] {
			t.Errorf("%s: name %q, want %q", tag, l.Name, names[tag])
		}
		if want := map[bool]string{true: "rtl", false: "ltr"}[tag == "ar"]; l.Dir != want {
			t.Errorf("%s: dir %q, want %q", tag, l.Dir, want)
		}
		for _, s := range append(l.months[:], l.weekdays[:]...) {
			if strings.TrimSpace(s) == "" {
				t.Errorf("%s: an empty month or weekday name", tag)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(en.msgs)) {
			m, ok := l.msgs[k]
			if !ok || strings.TrimSpace(m) == "" {
				t.Errorf("%s: no message %q", tag, k)
				continue
			}
			if got, want := formatArgs(t, m), formatArgs(t, en.msgs[k]); !slices.Equal(got, want) {
				t.Errorf("%s: %q has arguments %v, English %v", tag, k, got, want)
			}
			if strings.Contains(m, "xo-backup") || strings.Contains(m, "Terminal") {
				t.Errorf("%s: %q sends a child to a terminal: %q", tag, k, m)
			}
		}
		for k := range l.msgs {
			if _, ok := en.msgs[k]; !ok {
				t.Errorf("%s: message %q is not in English", tag, k)
			}
		}
	}
}

func TestPageDates(t *testing.T) {
	tm := time.Date(2026, 1, 5, 9, 7, 0, 0, time.UTC) // a Monday
	for tag, want := range map[string]string{
		"en": "Monday 5 January 2026, 09:07",
		"es": "lunes, 5 de enero de 2026, 09:07",
		"fr": "lundi 5 janvier 2026 à 09:07",
		"pt": "segunda-feira, 5 de janeiro de 2026, às 09:07",
		"ar": "الاثنين 5 يناير 2026، 09:07",
		"sw": "Jumatatu, 5 Januari 2026, 09:07",
	} {
		if got := locales[tag].DayTime(tm); got != want {
			t.Errorf("%s: %q, want %q", tag, got, want)
		}
	}
	if got := locales["es"].T("entries.title", locales["es"].Date(tm)); got != "Copia del 5 de enero de 2026" {
		t.Errorf("es title: %q", got)
	}
	first := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for tag, want := range map[string]string{"fr": "1er mai 2026", "en": "1 May 2026", "es": "1 de mayo de 2026", "sw": "1 Mei 2026"} {
		if got := locales[tag].Date(first); got != want {
			t.Errorf("%s: %q, want %q", tag, got, want)
		}
	}
	for tag, want := range map[string]string{"en": "Write", "es": "Escribir", "ar": "كتابة", "sw": "Andika"} {
		if got := locales[tag].Activity("Write"); got != want {
			t.Errorf("%s: Write is %q, want %q", tag, got, want)
		}
	}
	if got := locales["es"].Activity("TurtleArt"); got != "TurtleArt" {
		t.Errorf("es: TurtleArt is %q", got)
	}
}

func TestPageNegotiate(t *testing.T) {
	for header, want := range map[string]string{
		"":                                "en",
		"es":                              "es",
		"es-419,es;q=0.9":                 "es",
		"ES-mx":                           "es",
		"pt-BR,pt;q=0.9,en;q=0.8":         "pt",
		"pt_PT":                           "pt",
		"fr-CA;q=0.5, ar;q=0.9":           "ar",
		"zh-CN,zh;q=0.9,sw;q=0.8,en;q=.7": "sw", // the first one we speak
		"de, fr;q=0.1":                    "fr",
		"en-US,en;q=0.9,es;q=0.8":         "en",
		"es;q=0, fr":                      "fr", // q=0: not this one
		"es;q=0":                          "en",
		"ar;q=2, sw":                      "sw", // q out of range: ignored
		"ar;q=abc, fr;q=0.3":              "fr",
		"*":                               "en",
		"*;q=0.5, pt;q=0.4":               "pt",
		";;;,,,=":                         "en",
		"sw;level=1, es":                  "es", // not a q: the part is skipped
		"es;q=0.8, fr;q=0.8":              "es", // ties: the browser's order
		"x-klingon, ar-EG":                "ar",
		strings.Repeat("zz,", 40) + "es":  "en", // past 32 parts: not read
	} {
		if got := negotiate(header).Tag; got != want {
			t.Errorf("Accept-Language %q: %s, want %s", header, got, want)
		}
	}
}

// TestPageSameMinute: backups of the same minute show seconds, of the
// same second an ordinal, others the minute; newest first, ties by ID.
func TestPageSameMinute(t *testing.T) {
	at := func(h, m, s int) time.Time { return time.Date(2026, 3, 4, h, m, s, 0, time.Local) }
	snaps := []*store.Snapshot{
		{ID: "a", Time: at(10, 15, 7)},
		{ID: "b", Time: at(10, 15, 42)},
		{ID: "c", Time: at(9, 0, 0)},
		{ID: "e", Time: at(11, 30, 5)},
		{ID: "d", Time: at(11, 30, 5)},
		{ID: "f", Time: at(11, 30, 59)},
	}
	rows := dateRows(locales["en"], snaps)
	var got []string
	for _, r := range rows {
		got = append(got, r.ID+" "+r.Clock)
	}
	want := []string{"f 11:30:59", "e 11:30:05 (2)", "d 11:30:05 (1)", "b 10:15:42", "a 10:15:07", "c 09:00"}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %q, want %q", got, want)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.Day+r.Clock] {
			t.Fatalf("two rows read %q", r.Day+" "+r.Clock)
		}
		seen[r.Day+r.Clock] = true
	}
	if snaps[0].ID != "a" {
		t.Fatal("dateRows sorted its argument")
	}
}

// TestWebContentDisposition: download names keep their script in
// filename* and have an ASCII filename for old browsers; hostile titles
// stay one harmless name.
func TestWebContentDisposition(t *testing.T) {
	const uid = "6f2e1c4a-0000-4000-8000-000000000000"
	for _, c := range []struct{ title, mime, file, ascii string }{
		{"我的画", "image/png", "我的画.png", "document-6f2e1c4a.png"},
		{"رسمتي", "image/png", "رسمتي.png", "document-6f2e1c4a.png"},
		{"Canción de la Selva", "audio/ogg", "Canción de la Selva.ogg", "Cancion de la Selva.ogg"},
		{"Élève été", "text/plain", "Élève été.txt", "Eleve ete.txt"},
		{`say "hi"`, "text/plain", "say hi.txt", "say hi.txt"},
		{"a\r\nContent-Type: text/html", "", "a Content-Type text html", "a Content-Type text html"},
		{"../../etc/passwd", "", "etc passwd", "etc passwd"},
		{`..\..\boot.ini`, "", "boot.ini", "boot.ini"},
		{"evil\u202egnp.exe", "", "evilgnp.exe", "evilgnp.exe"},
		{"tab\there%20&;=x", "", "tab here%20&;=x", "tab here 20 x"},
		{"CON", "text/plain", "CON_.txt", "CON_.txt"},
		{"...", "", "document-6f2e1c4a", "document-6f2e1c4a"},
		{strings.Repeat("我", 100), "image/png", strings.Repeat("我", 60) + ".png", "document-6f2e1c4a.png"},
		{strings.Repeat("é", 100), "", strings.Repeat("é", 90), strings.Repeat("e", 80)},
	} {
		e := journal.Entry{UID: uid, Title: c.title, MimeType: c.mime}
		h := attachment(journal.FileName(e), journal.UnicodeFileName(e))
		if strings.ContainsAny(h, "\r\n\x00") {
			t.Fatalf("%q: header %q", c.title, h)
		}
		for _, r := range h {
			if r > 0x7e {
				t.Fatalf("%q: header not ASCII: %q", c.title, h)
			}
		}
		disp, params, err := mime.ParseMediaType(h)
		if err != nil || disp != "attachment" {
			t.Fatalf("%q: %q does not parse: %v", c.title, h, err)
		}
		if params["filename"] != c.file {
			t.Errorf("%q: filename* is %q, want %q (%s)", c.title, params["filename"], c.file, h)
		}
		// The fallback, as a browser without RFC 8187 reads it.
		plain, _, _ := strings.Cut(h, "; filename*=")
		_, params, err = mime.ParseMediaType(plain)
		if err != nil || params["filename"] != c.ascii {
			t.Errorf("%q: filename is %q (%v), want %q", c.title, params["filename"], err, c.ascii)
		}
		if len(params["filename"]) > 255 || len(c.file) > 255 {
			t.Errorf("%q: names too long", c.title)
		}
		// The Journal bundle is named alike.
		if b := journal.UnicodeBundleName(e); !strings.HasSuffix(b, ".xoj") || strings.ContainsAny(b, "/\\\"\r\n") {
			t.Errorf("%q: bundle name %q", c.title, b)
		}
	}
}

// TestPageTemplatesRender renders every page in every language.
func TestPageTemplatesRender(t *testing.T) {
	for _, tag := range localeTags {
		r := httptest.NewRequest("GET", "/r/TOKEN/s/SNAP/?lang="+tag, nil)
		pg := newPage(r)
		pg.Base, pg.Snap, pg.Who, pg.Day = "/r/TOKEN/", "/r/TOKEN/s/SNAP/", "Ana", "today"
		pg.Snapshots = []dateRow{{ID: "SNAP", Day: "d", Clock: "10:00", Pinned: true}}
		pg.Entries = []entryRow{{UID: "u", Title: "t", HasData: true}, {UID: "v", Title: "p", Preview: true}}
		pg.Heading, pg.Message, pg.NewLink = "h", "m", true
		for _, name := range []string{"index.html", "dates.html", "entries.html", "refused.html"} {
			var b strings.Builder
			if err := pages.ExecuteTemplate(&b, name, pg); err != nil {
				t.Fatalf("%s in %s: %v", name, tag, err)
			}
			if !strings.Contains(b.String(), `<html lang="`+tag+`" dir="`+locales[tag].Dir+`">`) {
				t.Errorf("%s in %s: no lang and dir on <html>", name, tag)
			}
			for k, m := range locales[tag].msgs {
				if strings.Contains(k, ".") && !strings.HasPrefix(k, "date.") && strings.Contains(b.String(), k) {
					t.Errorf("%s in %s: shows the key %q, not %q", name, tag, k, m)
				}
			}
		}
	}
}

// TestPageBusyTranslated: the 503 of a busy page is in the child's
// language and asks to come back later.
func TestPageBusyTranslated(t *testing.T) {
	p := &RestorePage{Concurrent: 1}
	h := p.Handler()
	p.busy <- struct{}{} // one page in progress: the next is turned away
	defer func() { <-p.busy }()
	for lang, want := range map[string]string{"fr": "Le serveur de l’école est occupé", "pt-BR": "O servidor da escola está ocupado", "ar": "خادم المدرسة مشغول"} {
		req := httptest.NewRequest("GET", "/r/TOKEN/s/SNAP/", nil)
		req.Header.Set("Accept-Language", lang)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %q", lang, rec.Code, rec.Body.String())
		}
	}
}
