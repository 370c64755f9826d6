package server_test

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func get(t *testing.T, h http.Handler, url string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b), rec.Result().Header
}

// TestRestorePageLinks checks the page's refusals with a settable clock:
// expired, forged, too long-lived and revoked links, and another laptop's
// snapshot through a valid link.
func TestRestorePageLinks(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen = "" })
	a, b := newLaptop(t, d, "WEBA", 1), newLaptop(t, d, "WEBB", 2)
	a.run(t)
	b.run(t)
	now := time.Now()
	page := &server.RestorePage{Store: d.Store, ServerKey: d.Server.PublicKey(), Now: func() time.Time { return now }}
	h := page.Handler()
	key, _ := a.st.Key()
	link := func(serial string, exp time.Time) string {
		return "/r/" + proto.SignLink(key, proto.LinkClaims{Serial: serial, Expires: exp}) + "/"
	}
	good := link("WEBA", now.Add(time.Hour))
	code, body, hdr := get(t, h, good)
	if code != 200 || !strings.Contains(body, "Your backups") || hdr.Get("Referrer-Policy") != "no-referrer" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("good link: %d %q %v", code, body, hdr)
	}
	ub, _ := d.Store.UserBySerial("WEBB")
	other, _ := d.Store.Snapshot(ub.ID, "latest")
	for name, tc := range map[string]struct {
		url  string
		code int
		text string
	}{
		"expired":            {link("WEBA", now.Add(-time.Second)), 403, "expired"},
		"a year long":        {link("WEBA", now.AddDate(1, 0, 0)), 403, "does not work"},
		"signed for another": {link("WEBB", now.Add(time.Hour)), 403, "does not work"},
		"garbage token":      {"/r/abc/", 403, "does not work"},
		"other's snapshot":   {good + "s/" + string(other.ID) + "/", 404, "not in your list"},
		"other's download":   {good + "s/" + string(other.ID) + "/x/0000", 404, "not in your list"},
		"not a snapshot id":  {good + "s/..%2f..%2fetc/", 404, "not in your list"},
		"unknown entry":      {good + "s/" + string(mustLatest(t, d, "WEBA")) + "/f/nope", 404, "not in that backup"},
	} {
		code, body, _ := get(t, h, tc.url)
		if code != tc.code || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d %q, want %d and %q", name, code, body, tc.code, tc.text)
		}
	}
	// A revoked laptop's link stops working at once.
	ua, _ := d.Store.UserBySerial("WEBA")
	d.Store.UpdateUser(t.Context(), ua.ID, func(u *store.User) error { u.Revoked = true; return nil })
	if code, body, _ := get(t, h, good); code != 403 || !strings.Contains(body, "does not work") {
		t.Fatalf("revoked laptop's link: %d %q", code, body)
	}
	if base, err := agent.PageBase(":7459", "10.0.0.1:7457"); err != nil || base != "http://10.0.0.1:7459" {
		t.Fatalf("page base: %q %v", base, err)
	}
}

func mustLatest(t *testing.T, d *server.Daemon, serial string) store.SnapshotID {
	u, err := d.Store.UserBySerial(serial)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := d.Store.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	return sn.ID
}

// pageLaptop is a backed-up laptop with Journal entries titled in several
// scripts, and a link to its backups.
func pageLaptop(t *testing.T, d *server.Daemon, serial string) (h http.Handler, link string, titles map[string]string, l *laptop) {
	t.Helper()
	l = newLaptop(t, d, serial, 7)
	titles = map[string]string{
		"e0000001-0000-4000-8000-000000000000": "我的画",
		"e0000002-0000-4000-8000-000000000000": "رسمتي",
		"e0000003-0000-4000-8000-000000000000": "Canción de la selva",
		"e0000004-0000-4000-8000-000000000000": "a \"quoted\"\r\nname/../../x",
		"e0000005-0000-4000-8000-000000000000": strings.Repeat("Ñandú ", 60),
	}
	for uid, title := range titles {
		if err := journalgen.WriteEntry(l.src, journalgen.Entry{UID: uid, Title: title, Activity: "org.laptop.Oficina",
			Mime: "image/png", Data: []byte("png of " + title)}, time.Date(2026, 9, 2, 8, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	l.run(t)
	now := time.Now()
	page := &server.RestorePage{Store: d.Store, ServerKey: d.Server.PublicKey(), Now: func() time.Time { return now }}
	key, _ := l.st.Key()
	return page.Handler(), "/r/" + proto.SignLink(key, proto.LinkClaims{Serial: serial, Expires: now.Add(time.Hour)}) + "/", titles, l
}

func getLang(t *testing.T, h http.Handler, url, acceptLanguage string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", url, nil)
	if acceptLanguage != "" {
		req.Header.Set("Accept-Language", acceptLanguage)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Result().Header.Get("Content-Language"); rec.Code != 500 && got == "" {
		t.Errorf("%s: no Content-Language", url)
	}
	return rec.Code, rec.Body.String()
}

// TestRestorePageLanguages: the language follows Accept-Language (with
// region fallback), ?lang= switches it without breaking the signed link
// and is carried on by the page's links, Arabic is right-to-left, an
// unknown ?lang= is ignored and never echoed, and refusals are translated.
func TestRestorePageLanguages(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen = "" })
	h, link, _, l := pageLaptop(t, d, "LANG1")
	snap := string(mustLatest(t, d, "LANG1"))
	for _, c := range []struct {
		url, accept, want, lang string
	}{
		{link, "", "Your backups", "en"},
		{link, "es-419,es;q=0.9,en;q=0.8", "Tus copias de seguridad", "es"},
		{link, "pt-BR", "Suas cópias de segurança", "pt"},
		{link, "de-DE, fr;q=0.5", "Tes sauvegardes", "fr"},
		{link, "sw-KE", "Nakala zako", "sw"},
		{link + "?lang=ar", "es", "نسخك الاحتياطية", "ar"},
		{link + "?lang=es", "ar", "Tus copias de seguridad", "es"},
		{link + "?lang=%22%3E%3Cscript%3Ealert(1)%3C/script%3E", "fr", "Tes sauvegardes", "fr"},
		{link + "?lang=ES", "", "Your backups", "en"},
		{link + "s/" + snap + "/?lang=fr", "", "Touche <b>Journal</b> pour remettre", "fr"},
		{link + "s/" + snap + "/", "ar-EG", "<b>اليوميات</b>", "ar"},
		{"/?lang=sw", "", "Muombe mwalimu wako", "sw"},
		{"/", "fr-FR", "Demande-le à ton enseignant", "fr"},
	} {
		code, body := getLang(t, h, c.url, c.accept)
		dir := map[bool]string{true: "rtl", false: "ltr"}[c.lang == "ar"]
		if code != 200 || !strings.Contains(body, c.want) || !strings.Contains(body, `<html lang="`+c.lang+`" dir="`+dir+`">`) {
			t.Errorf("%s (Accept-Language %q): %d, want %s page with %q:\n%s", c.url, c.accept, code, c.lang, c.want, body)
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "alert(") {
			t.Errorf("%s: the lang parameter is echoed:\n%s", c.url, body)
		}
		if strings.Contains(body, "xo-backup") || strings.Contains(body, "Terminal") {
			t.Errorf("%s: sends a child to a terminal:\n%s", c.url, body)
		}
		// The switch offers every language, in its own name, on this page.
		for _, name := range []string{"English", "Español", "Français", "Português", "العربية", "Kiswahili"} {
			if !strings.Contains(body, ">"+name+"</a>") {
				t.Errorf("%s: no switch to %s", c.url, name)
			}
		}
	}
	// A language chosen on the page stays chosen on the pages it links to.
	_, body := getLang(t, h, link+"?lang=pt", "")
	if !strings.Contains(body, `href="`+link+`s/`+snap+`/?lang=pt"`) {
		t.Errorf("the dates page's links do not keep ?lang=pt:\n%s", body)
	}
	_, body = getLang(t, h, link+"s/"+snap+"/?lang=pt", "")
	if !strings.Contains(body, `href="`+link+`?lang=pt"`) || !strings.Contains(body, "/f/e0000001-0000-4000-8000-000000000000?lang=pt") {
		t.Errorf("the entries page's links do not keep ?lang=pt:\n%s", body)
	}
	// Dates in the language: the Journal entries are of 2 September 2026.
	for lang, want := range map[string]string{"es": "2 de septiembre de 2026", "fr": "2 septembre 2026", "pt": "2 de setembro de 2026",
		"ar": "2 سبتمبر 2026", "sw": "2 Septemba 2026", "en": "2 September 2026"} {
		if _, body := getLang(t, h, link+"s/"+snap+"/?lang="+lang, ""); !strings.Contains(body, want) {
			t.Errorf("%s: entry dates do not read %q", lang, want)
		}
	}
	// Refusals in the language.
	key, _ := l.st.Key()
	expired := "/r/" + proto.SignLink(key, proto.LinkClaims{Serial: "LANG1", Expires: time.Now().Add(-time.Minute)}) + "/"
	for _, c := range []struct{ url, accept, want string }{
		{expired, "es-ES", "Este enlace ya venció"},
		{expired + "?lang=ar", "", "انتهت صلاحية هذا الرابط"},
		{expired, "fr", "Demande un nouveau lien à ton enseignant."},
		{"/r/garbage/", "es", "Este enlace no funciona"},
		{"/r/garbage/?lang=ar", "", "اطلب رابطًا جديدًا"},
		{link + "s/20250101T000000Z-abcdef/", "pt-BR", "Esta cópia não está na sua lista"},
		{link + "s/" + snap + "/f/nope", "sw", "Hati hii haimo kwenye nakala hiyo"},
		{link + "s/" + snap + "/f/nope?lang=fr", "es", "Ce document n’est pas dans cette sauvegarde"},
		{link + "nowhere/?lang=sw", "", "Ukurasa huu haupo"},
		{link + "s/" + snap + "/z/e0000001-0000-4000-8000-000000000000", "ar", "هذه الصفحة غير موجودة"},
	} {
		code, body := getLang(t, h, c.url, c.accept)
		if code < 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s (%q): %d, want a refusal with %q:\n%s", c.url, c.accept, code, c.want, body)
		}
	}
}

// TestRestorePageDownloadNames: Chinese, Arabic, accented and hostile
// titles download under their own names (filename*), with an ASCII
// filename for browsers that do not read it.
func TestRestorePageDownloadNames(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen = "" })
	h, link, titles, _ := pageLaptop(t, d, "NAMES1")
	snap := string(mustLatest(t, d, "NAMES1"))
	want := map[string][2]string{ // uid → filename*, filename
		"e0000001-0000-4000-8000-000000000000": {"我的画.png", "document-e0000001.png"},
		"e0000002-0000-4000-8000-000000000000": {"رسمتي.png", "document-e0000002.png"},
		"e0000003-0000-4000-8000-000000000000": {"Canción de la selva.png", "Cancion de la selva.png"},
		"e0000004-0000-4000-8000-000000000000": {"a quoted name . . x.png", "a quoted name . . x.png"},
		"e0000005-0000-4000-8000-000000000000": {strings.TrimSpace(strings.Repeat("Ñandú ", 22)) + ".png",
			strings.TrimSpace(strings.Repeat("Nandu ", 13)) + ".png"},
	}
	for uid, w := range want {
		for _, kind := range []string{"f", "x"} {
			_, _, hdr := get(t, h, link+"s/"+snap+"/"+kind+"/"+uid)
			cd := hdr.Get("Content-Disposition")
			disp, params, err := mime.ParseMediaType(cd)
			if err != nil || disp != "attachment" {
				t.Fatalf("%q: %q: %v", titles[uid], cd, err)
			}
			full, ascii := w[0], w[1]
			if kind == "x" {
				full, ascii = strings.TrimSuffix(full, ".png")+".xoj", strings.TrimSuffix(ascii, ".png")+".xoj"
			}
			if params["filename"] != full {
				t.Errorf("%q (%s): downloads as %q, want %q (%s)", titles[uid], kind, params["filename"], full, cd)
			}
			plain, _, _ := strings.Cut(cd, "; filename*=")
			if _, params, _ := mime.ParseMediaType(plain); params["filename"] != ascii {
				t.Errorf("%q (%s): ASCII name %q, want %q", titles[uid], kind, params["filename"], ascii)
			}
		}
	}
}

// TestRestorePageSameMinute: backups a few seconds apart read differently
// in the list (seconds are shown when they share a minute), newest first.
func TestRestorePageSameMinute(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen = "" })
	h, link, _, l := pageLaptop(t, d, "TWICE1")
	for i := range 2 {
		if err := os.WriteFile(filepath.Join(l.src, "e0000001-0000-4000-8000-000000000000"[:2], "e0000001-0000-4000-8000-000000000000", "data"),
			[]byte(fmt.Sprint("changed ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		l.run(t)
	}
	u, _ := d.Store.UserBySerial("TWICE1")
	snaps := d.Store.Snapshots(u.ID)
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want 3", len(snaps))
	}
	_, body, _ := get(t, h, link)
	rows := regexp.MustCompile(`<a href="[^"]*s/([^/]+)/"><span class="day">([^<]*)</span> <span class="time" dir="ltr">([^<]*)</span>`).FindAllStringSubmatch(body, -1)
	if len(rows) != 3 {
		t.Fatalf("%d rows in the list:\n%s", len(rows), body)
	}
	seen := map[string]bool{}
	for i, r := range rows {
		if seen[r[2]+" "+r[3]] {
			t.Fatalf("two backups read %q:\n%s", r[2]+" "+r[3], body)
		}
		seen[r[2]+" "+r[3]] = true
		if want := string(snaps[len(snaps)-1-i].ID); r[1] != want {
			t.Errorf("row %d is %s, want %s (newest first)", i, r[1], want)
		}
		// The minute alone when no other backup shares it, else seconds.
		t.Logf("row %d: %s %s", i, r[2], r[3])
		shared := 0
		for _, sn := range snaps {
			if sn.Time.Local().Format("2006-01-02 15:04") == snaps[len(snaps)-1-i].Time.Local().Format("2006-01-02 15:04") {
				shared++
			}
		}
		if secs := strings.Count(r[3], ":") == 2; secs != (shared > 1) {
			t.Errorf("row %d reads %q with %d backups in its minute", i, r[3], shared)
		}
	}
	if _, again, _ := get(t, h, link); again != body {
		t.Error("the list changed between two views")
	}
}
