package server_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/testkit"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// wa2PNG is a small valid PNG header, enough for a preview.
var wa2PNG = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"

// wa2Server is the page of one child's backup over a real HTTP server
// (net/http on loopback), with the link and the backup's URL.
type wa2Server struct {
	srv   *httptest.Server
	s     *store.Store
	l     *a2pLaptop
	link  string // /r/TOKEN/
	snap  string // /r/TOKEN/s/SNAP/
	snID  store.SnapshotID
	entry map[string]string // uid → data
}

// wa2Serve backs up the entries (uid → metadata; data is "data of "+uid)
// of one laptop and serves the page on loopback.
func wa2Serve(t *testing.T, serial string, ents map[string]map[string]string, previews map[string]string) *wa2Server {
	t.Helper()
	s := testkit.OpenStore(t)
	l := a2pNewLaptop(t, s, serial, "kid "+serial)
	w := &wa2Server{s: s, l: l, entry: map[string]string{}}
	for uid, meta := range ents {
		w.entry[uid] = "data of " + uid
		l.entry(t, uid, w.entry[uid], meta)
		if p, ok := previews[uid]; ok {
			l.put(t, uid[:2]+"/"+uid+"/metadata/preview", p)
		}
	}
	testkit.MustRun(t, s, l.u, l.src, backup.Options{})
	sn, _ := s.Snapshot(l.u.ID, "latest")
	w.snID = sn.ID
	w.link = l.link(serial, time.Now().Add(time.Hour))
	w.snap = w.link + "s/" + string(sn.ID) + "/"
	w.srv = httptest.NewServer((&server.RestorePage{Store: s, ServerKey: make(ed25519.PublicKey, ed25519.PublicKeySize)}).Handler())
	t.Cleanup(w.srv.Close)
	return w
}

// do sends one request over the wire and reads the whole answer.
func (w *wa2Server) do(t *testing.T, method, target string, hdr map[string]string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, w.srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// TestWebAttackSecurityHeadersOnEveryAnswer: every answer of the page,
// not only its listings (the start page, the style sheet, a download of
// each kind, a preview, refusals 403 and 404, a method refused, HEAD, and
// the redirect of an unclean path) carries what a private page needs:
// X-Content-Type-Options nosniff, Referrer-Policy no-referrer (the link is
// the key), a CSP forbidding scripts and framing, no caching (but for the
// style sheet), and a Content-Type, with a charset for text.
func TestWebAttackSecurityHeadersOnEveryAnswer(t *testing.T) {
	const uid = "ab000000-0000-4000-8000-0000000000ab"
	w := wa2Serve(t, "WA2HDR", map[string]map[string]string{
		uid: {"title": "drawing", "mime_type": "text/html", "timestamp": "1788249600"},
	}, map[string]string{uid: wa2PNG})
	for _, c := range []struct {
		method, target string
		code           int
		cacheable      bool
	}{
		{"GET", "/", 200, false},
		{"GET", "/style.css", 200, true},
		{"GET", w.link, 200, false},
		{"GET", w.snap, 200, false},
		{"GET", w.snap + "f/" + uid, 200, false},
		{"GET", w.snap + "x/" + uid, 200, false},
		{"GET", w.snap + "p/" + uid, 200, false},
		{"HEAD", w.snap + "f/" + uid, 200, false},
		{"GET", "/r/garbage/", 403, false},
		{"GET", w.snap + "f/nope", 404, false},
		{"GET", "/nowhere", 404, false},
		{"POST", w.snap + "f/" + uid, 405, false},
		{"GET", w.link + "s/../", 307, false},
	} {
		resp, body, err := w.do(t, c.method, c.target, nil)
		if err != nil {
			t.Errorf("%s %s: %v", c.method, c.target, err)
			continue
		}
		hd := resp.Header
		what := fmt.Sprintf("%s %s (%d)", c.method, c.target, resp.StatusCode)
		if resp.StatusCode != c.code {
			t.Errorf("%s: want %d", what, c.code)
		}
		if hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options nosniff", what)
		}
		if hd.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", what, hd.Get("Referrer-Policy"))
		}
		csp := hd.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'none'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %s", what, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: CSP %q lets scripts run", what, csp)
		}
		if cc := hd.Get("Cache-Control"); !c.cacheable && !strings.Contains(cc, "no-store") {
			t.Errorf("%s: Cache-Control %q: a private answer may be cached", what, cc)
		}
		ct := hd.Get("Content-Type")
		if resp.StatusCode != 301 && c.method != "HEAD" && ct == "" && body != "" {
			t.Errorf("%s: no Content-Type", what)
		}
		if mt, params, err := mime.ParseMediaType(ct); err == nil && (strings.HasPrefix(mt, "text/") && mt != "text/html" || mt == "text/html" && !strings.Contains(c.target, "/f/")) && params["charset"] == "" {
			t.Errorf("%s: Content-Type %q has no charset", what, ct)
		}
		if strings.Contains(c.target, "/f/") || strings.Contains(c.target, "/x/") {
			if cd := hd.Get("Content-Disposition"); resp.StatusCode == 200 && !strings.HasPrefix(cd, "attachment") {
				t.Errorf("%s: a document is served with Content-Disposition %q", what, cd)
			}
		}
	}
}

// TestWebAttackOtherMethods: every method but GET and HEAD, on the start
// page, a link, a listing and a download: refused (405 with Allow, or 501),
// never the listing or the document; TRACE never echoes the request's
// headers; HEAD of a download gives its headers and no body.
func TestWebAttackOtherMethods(t *testing.T) {
	const uid = "ac000000-0000-4000-8000-0000000000ac"
	w := wa2Serve(t, "WA2MTH", map[string]map[string]string{
		uid: {"title": "notes", "mime_type": "text/plain", "timestamp": "1788249600"},
	}, nil)
	for _, target := range []string{"/", w.link, w.snap, w.snap + "f/" + uid, w.snap + "x/" + uid} {
		for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "FOO"} {
			resp, body, err := w.do(t, m, target, map[string]string{"X-Secret-Probe": "probe-value", "Cookie": "c=probe-cookie"})
			if err != nil {
				t.Errorf("%s %s: %v", m, target, err)
				continue
			}
			if resp.StatusCode < 400 {
				t.Errorf("%s %s: %d, want a refusal", m, target, resp.StatusCode)
			}
			if resp.StatusCode == 405 && !strings.Contains(resp.Header.Get("Allow"), "GET") {
				t.Errorf("%s %s: 405 with Allow %q", m, target, resp.Header.Get("Allow"))
			}
			if strings.Contains(body, "data of") || strings.Contains(body, string(w.snID)) || strings.Contains(body, "probe-") {
				t.Errorf("%s %s: %d shows %.200q", m, target, resp.StatusCode, body)
			}
		}
	}
	resp, body, err := w.do(t, "HEAD", w.snap+"f/"+uid, nil)
	if err != nil || resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len(w.entry[uid])) {
		t.Errorf("HEAD of a download: %v %v %q", resp, err, body)
	}
}

// TestWebAttackHostileMimeType: an entry's mime_type is metadata the
// laptop wrote (any activity, any bug): text/html, SVG and XHTML that a
// browser would run, CR/LF to add headers, NUL, vertical tab and DEL,
// multipart/x-mixed-replace, and 8 KiB of it. The raw-file download must
// still be a well-formed HTTP answer the browser accepts (Go's client is
// the judge), 200 with exactly the document's bytes, as an attachment,
// nosniff, and no header the metadata added.
func TestWebAttackHostileMimeType(t *testing.T) {
	mimes := map[string]string{
		"text/html":                            "a0000000-0000-4000-8000-000000000001",
		"image/svg+xml":                        "a0000000-0000-4000-8000-000000000002",
		"application/xhtml+xml":                "a0000000-0000-4000-8000-000000000003",
		"text/html\nX-Evil: 1":                 "a0000000-0000-4000-8000-000000000004",
		"image/png\r\nSet-Cookie: s=1\r\n\r\n": "a0000000-0000-4000-8000-000000000005",
		"text/plain\x00":                       "a0000000-0000-4000-8000-000000000006",
		"image/png\x0b":                        "a0000000-0000-4000-8000-000000000007",
		"text/html\x7f":                        "a0000000-0000-4000-8000-000000000008",
		"multipart/x-mixed-replace;boundary=x": "a0000000-0000-4000-8000-000000000009",
		"image/" + strings.Repeat("p", 8<<10):  "a0000000-0000-4000-8000-00000000000a",
		"text/html; charset=utf-7":             "a0000000-0000-4000-8000-00000000000b",
	}
	ents := map[string]map[string]string{}
	for m, uid := range mimes {
		ents[uid] = map[string]string{"title": "doc", "mime_type": m, "timestamp": "1788249600"}
	}
	w := wa2Serve(t, "WA2MIME", ents, nil)
	for m, uid := range mimes {
		resp, body, err := w.do(t, "GET", w.snap+"f/"+uid, nil)
		if err != nil {
			t.Errorf("mime_type %.40q: the download is not a well-formed answer: %v", m, err)
			continue
		}
		hd := resp.Header
		if resp.StatusCode != 200 || body != w.entry[uid] {
			t.Errorf("mime_type %.40q: %d %.80q", m, resp.StatusCode, body)
		}
		if !strings.HasPrefix(hd.Get("Content-Disposition"), "attachment") || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("mime_type %.40q: served inline or sniffable: %v", m, hd)
		}
		if hd.Get("X-Evil") != "" || hd.Get("Set-Cookie") != "" || len(hd.Values("Content-Type")) != 1 {
			t.Errorf("mime_type %.40q: the metadata added headers: %v", m, hd)
		}
		// The bundle of the same entry downloads too.
		if resp, body, err := w.do(t, "GET", w.snap+"x/"+uid, nil); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(body, "PK") {
			t.Errorf("mime_type %.40q: the bundle: %v", m, err)
		}
	}
}

// wa2BidiControls are the characters that reorder text (Trojan Source,
// "gpj.exe" names): none may reach a download's name.
const wa2BidiControls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"

// TestWebAttackBidiAndMarkupInNames: titles with right-to-left overrides
// that make "photo‮gpj.exe" read as "photoexe.jpg", isolates, zero-width
// marks, a title that closes the <bdi> it is shown in, a nickname with an
// override, and a staff pin reason with markup. The listing keeps every
// title inside its own isolate (an override cannot reorder the date or the
// buttons after it), no markup gets through, and download names hold no
// bidi control or quote that breaks the header.
func TestWebAttackBidiAndMarkupInNames(t *testing.T) {
	titles := map[string]string{
		"b0000000-0000-4000-8000-000000000001": "photo\u202egpj.exe",
		"b0000000-0000-4000-8000-000000000002": "\u2067abc\u2069\u200f\u061cxyz",
		"b0000000-0000-4000-8000-000000000003": "</bdi><bdo dir=rtl>flipped",
		"b0000000-0000-4000-8000-000000000004": "a\";filename=evil.exe;x=\"",
		"b0000000-0000-4000-8000-000000000005": "\u202dhomework\u202c.txt\r\nContent-Type: text/html",
	}
	ents := map[string]map[string]string{}
	for uid, title := range titles {
		ents[uid] = map[string]string{"title": title, "mime_type": "image/jpeg", "timestamp": "1788249600"}
	}
	w := wa2Serve(t, "WA2BIDI", ents, nil)
	if _, err := w.s.UpdateUser(context.Background(), w.l.u.ID, func(u *store.User) error {
		u.Nickname = "\u202eanA<b>bold</b>"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.SetPin(context.Background(), w.l.u.ID, w.snID, true, `"><script>alert(1)</script><b title="`); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{w.link, w.snap} {
		resp, body, err := w.do(t, "GET", target, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", target, resp, err)
		}
		for _, bad := range []string{"<script", "<bdo", "<b>bold", "</bdi><bdo"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: %q reaches the page unescaped", target, bad)
			}
		}
		// Every override or isolate of a title or name sits inside an
		// element of its own that isolates it.
		for _, m := range regexp.MustCompile(`(?s)<bdi[^>]*>(.*?)</bdi>`).FindAllStringSubmatch(body, -1) {
			body = strings.Replace(body, m[0], "", 1)
		}
		if i := strings.IndexAny(body, "\u202a\u202b\u202d\u202e\u2066\u2067\u2068"); i >= 0 {
			t.Errorf("%s: a bidi control outside an isolate: %q", target, body[max(0, i-80):min(len(body), i+80)])
		}
	}
	for uid := range titles {
		for _, kind := range []string{"f", "x"} {
			resp, _, err := w.do(t, "GET", w.snap+kind+"/"+uid, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%s %s: %v %v", kind, uid, resp, err)
				continue
			}
			cd := resp.Header.Get("Content-Disposition")
			disp, params, err := mime.ParseMediaType(cd)
			if err != nil || disp != "attachment" || len(params) != 1 {
				t.Errorf("%q: Content-Disposition %q (%v, %v)", titles[uid], cd, params, err)
			}
			name := params["filename"]
			if strings.ContainsAny(name, wa2BidiControls+"\"\\/\r\n") || strings.Contains(strings.ToLower(name), ".exe") && !strings.HasSuffix(name, ".jpg") && !strings.HasSuffix(name, ".xoj") {
				t.Errorf("%q: downloads as %q", titles[uid], name)
			}
			if ct := resp.Header.Get("Content-Type"); strings.Contains(ct, "html") {
				t.Errorf("%q: served as %q", titles[uid], ct)
			}
		}
	}
}

// TestWebAttackHostileAcceptLanguage: Accept-Language values a script or a
// broken browser sends: thousands of tags, one 60 KB tag, q values out of
// range, NaN and Inf, control bytes, markup, wildcards, a header repeated.
// Each gives a page in one of the six languages, at once, with the html
// lang attribute matching Content-Language, and nothing of the header
// echoed.
func TestWebAttackHostileAcceptLanguage(t *testing.T) {
	w := wa2Serve(t, "WA2LANG", map[string]map[string]string{
		"c0000000-0000-4000-8000-000000000001": {"title": "t", "timestamp": "1788249600"},
	}, nil)
	values := map[string]string{ // value → the language wanted ("" any)
		"thousands of tags":  strings.Repeat("zz-ZZ;q=0.9,", 5000) + "es",
		"one long tag":       strings.Repeat("x", 60<<10),
		"q above one":        "fr;q=2, es;q=0.5",
		"q negative":         "fr;q=-1, es;q=0.5",
		"q Inf":              "fr;q=Inf, es;q=0.5",
		"q exponent":         "fr;q=1e-400, es;q=0.5",
		"markup":             `"><script>alert(1)</script>`,
		"wildcard":           "*",
		"empty parts":        ",,,;;;,=,q=,;q",
		"arabic upper":       "AR-eg",
		"semicolon params":   "es;level=1;q=0.9, fr;q=0.8",
		"many equals":        strings.Repeat("=", 10000),
		"unicode tag":        "العربية, ñ;q=0.5",
		"ten thousand comma": strings.Repeat(",", 10000) + "pt",
	}
	want := map[string]string{"q above one": "es", "q negative": "es", "q Inf": "es", "arabic upper": "ar", "wildcard": "en", "markup": "en"}
	for name, v := range values {
		start := time.Now()
		resp, body, err := w.do(t, "GET", w.link, map[string]string{"Accept-Language": v})
		took := time.Since(start)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", name, resp, err)
			continue
		}
		lang := resp.Header.Get("Content-Language")
		if !strings.Contains(body, `<html lang="`+lang+`"`) || !strings.Contains("en es fr pt ar sw", lang) || lang == "" {
			t.Errorf("%s: Content-Language %q does not match the page", name, lang)
		}
		if wl := want[name]; wl != "" && lang != wl {
			t.Errorf("%s (%.40q): page in %q, want %q", name, v, lang, wl)
		}
		if strings.Contains(body, "<script") || (len(v) > 8 && strings.Contains(body, v)) {
			t.Errorf("%s: the header is echoed", name)
		}
		if took > 2*time.Second {
			t.Errorf("%s: took %v", name, took)
		}
	}
	// Repeated headers: the first one counts, nothing breaks.
	req, _ := http.NewRequest("GET", w.srv.URL+w.link, nil)
	req.Header["Accept-Language"] = []string{"sw", "fr", "ar"}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Language") == "" {
		t.Errorf("repeated Accept-Language: %d %q", resp.StatusCode, resp.Header.Get("Content-Language"))
	}
}

// TestWebAttackNaNQualityIsMalformed: negotiate's documentation says
// malformed parts of Accept-Language are skipped, and q must be a number
// from 0 to 1 (RFC 9110). "q=NaN" passes the range check (every
// comparison with NaN is false), and a tag with it is then taken before a
// well-formed one the browser preferred.
func TestWebAttackNaNQualityIsMalformed(t *testing.T) {
	w := wa2Serve(t, "WA2NAN", map[string]map[string]string{
		"c0000000-0000-4000-8000-000000000002": {"title": "t", "timestamp": "1788249600"},
	}, nil)
	resp, _, err := w.do(t, "GET", w.link, map[string]string{"Accept-Language": "fr;q=NaN, es;q=0.5"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Content-Language"); got != "es" {
		t.Errorf("Accept-Language \"fr;q=NaN, es;q=0.5\": page in %q, want es (the malformed part skipped)", got)
	}
}

// TestWebAttackRawRequests: requests a script sends on the daemon's page
// port: HTTP/1.0 without Host, HTTP/1.1 without Host, a request line and
// headers over a megabyte, 5000 headers, an absolute-form target naming
// another host, a Host header of another site. Each gets a status (never
// a hang or a dropped daemon), the page's links never point to the host
// the request named, and the page answers a child normally afterwards.
func TestWebAttackRawRequests(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "WA2RAW", 81)
	l.run(t)
	key, _ := l.st.Key()
	link := (&a2pLaptop{key: key}).link("WA2RAW", time.Now().Add(time.Hour))
	addr := d.PageAddr.String()
	raw := func(req string) (status string, resp string) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go io.Copy(c, strings.NewReader(req)) // the server may answer before reading it all
		b, _ := io.ReadAll(bufio.NewReader(io.LimitReader(c, 1<<20)))
		line, _, _ := strings.Cut(string(b), "\r\n")
		return line, string(b)
	}
	big := strings.Repeat("a", 2<<20)
	var many strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	for name, c := range map[string]struct{ req, want string }{
		"1.0 without Host":     {"GET " + link + " HTTP/1.0\r\n\r\n", " 200 "},
		"1.1 without Host":     {"GET " + link + " HTTP/1.1\r\nConnection: close\r\n\r\n", " 400 "},
		"huge request line":    {"GET " + link + "?" + big + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", " 4"},
		"huge header":          {"GET " + link + " HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\nConnection: close\r\n\r\n", " 431 "},
		"many headers":         {"GET " + link + " HTTP/1.1\r\nHost: x\r\n" + many.String() + "Connection: close\r\n\r\n", " "},
		"absolute form":        {"GET http://evil.example" + link + " HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", " 200 "},
		"other Host":           {"GET " + link + " HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", " 200 "},
		"forwarded host":       {"GET " + link + " HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n", " 200 "},
		"garbage":              {"\x00\x01\x02 / HTTP/9.9\r\n\r\n", " 400 "},
		"unsupported protocol": {"GET " + link + " HTTP/2.0\r\nHost: x\r\n\r\n", " "},
	} {
		status, resp := raw(c.req)
		if !strings.HasPrefix(status, "HTTP/1.") || !strings.Contains(status+" ", c.want) {
			t.Errorf("%s: answered %q, want a status with %q", name, status, c.want)
		}
		if strings.Contains(resp, "evil.example") {
			t.Errorf("%s: the page names the host the request gave", name)
		}
	}
	resp, err := http.Get("http://" + addr + link)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 {
		t.Errorf("after the raw requests a child's link gets %d", resp.StatusCode)
	}
}
