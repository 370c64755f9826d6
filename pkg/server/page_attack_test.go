package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/testkit"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// a2pLaptop is a laptop registered straight in a store (no daemon), with
// its key, and a Journal written by the test.
type a2pLaptop struct {
	u   *store.User
	key ed25519.PrivateKey
	src string
}

func a2pNewLaptop(t *testing.T, s *store.Store, serial, nickname string) *a2pLaptop {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	u, err := s.AddUser(context.Background(), store.NewUser{Serial: serial, Nickname: nickname, PublicKey: pub, Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	return &a2pLaptop{u: u, key: key, src: t.TempDir()}
}

func (l *a2pLaptop) put(t *testing.T, rel string, data string) {
	t.Helper()
	testkit.WriteFile(t, filepath.Join(l.src, filepath.FromSlash(rel)), []byte(data))
}

// entry writes a current-layout entry with the metadata given.
func (l *a2pLaptop) entry(t *testing.T, uid, data string, meta map[string]string) {
	t.Helper()
	dir := uid[:2] + "/" + uid
	l.put(t, dir+"/data", data)
	os.MkdirAll(filepath.Join(l.src, dir, "metadata"), 0o755)
	for k, v := range meta {
		l.put(t, dir+"/metadata/"+k, v)
	}
}

func (l *a2pLaptop) link(serial string, exp time.Time) string {
	return "/r/" + proto.SignLink(l.key, proto.LinkClaims{Serial: serial, Expires: exp}) + "/"
}

// a2pHostile backs up a child's Journal with HTML and script in its titles,
// activity and nickname, a title that is not UTF-8, entries without title
// or activity, and old-layout entries whose uids (file names in store/)
// hold URL characters; it returns the page's handler and the URL of the
// backup's listing.
func a2pHostile(t *testing.T) (h http.Handler, snapURL string, odd []string) {
	s := testkit.OpenStore(t)
	l := a2pNewLaptop(t, s, "HOSTILE1", `<script>alert("nick")</script>`)
	ts := "1788249600"
	l.entry(t, "e1000000-0000-4000-8000-000000000001", "<html><script>alert(3)</script></html>", map[string]string{
		"title":     `</bdi><script>alert(1)</script><img src=x onerror=alert(1)>"'`,
		"activity":  `org.evil.<img src=x onerror=alert(2)>Activity`,
		"mime_type": "text/html", "timestamp": ts,
	})
	l.entry(t, "e2000000-0000-4000-8000-000000000002", "no title", map[string]string{"timestamp": ts})
	l.entry(t, "e3000000-0000-4000-8000-000000000003", "latin-1 title", map[string]string{"title": "Canci\xf3n", "timestamp": ts})
	l.entry(t, "e4000000-0000-4000-8000-000000000004", "javascript title", map[string]string{"title": "javascript:alert(4)", "activity": "javascript:alert(5)", "timestamp": ts})
	odd = []string{"notes#1", "why?not", "50%", "a b", "%2e%2e"}
	for _, uid := range odd {
		l.put(t, "store/"+uid, "old document "+uid)
		l.put(t, "store/"+uid+".metadata", `{"title": "old `+uid+`", "timestamp": `+ts+`}`)
	}
	testkit.MustRun(t, s, l.u, l.src, backup.Options{Exclude: backup.JournalExclude})
	sn, _ := s.Snapshot(l.u.ID, "latest")
	page := &server.RestorePage{Store: s, ServerKey: make(ed25519.PublicKey, ed25519.PublicKeySize)}
	return page.Handler(), l.link("HOSTILE1", time.Now().Add(time.Hour)) + "s/" + string(sn.ID) + "/", odd
}

// a2pFollow requests every download link of the listing page as a browser
// resolves it, and returns the downloaded documents and the links that fail.
func a2pFollow(t *testing.T, h http.Handler, snapURL, body string) (docs map[string]bool, broken []string) {
	pageURL, _ := url.Parse("http://xs.local" + snapURL)
	docs = map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:href|src)="([^"]*/[fxp]/[^"]*)"`).FindAllStringSubmatch(body, -1) {
		href := html.UnescapeString(m[1])
		ref, err := url.Parse(href)
		if err != nil {
			broken = append(broken, href+" ("+err.Error()+")")
			continue
		}
		abs := pageURL.ResolveReference(ref)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", abs.RequestURI(), nil))
		b, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != 200 {
			broken = append(broken, fmt.Sprintf("%s (a browser asks for %s: %d)", href[strings.LastIndex(href, "/s/"):], abs.Path[strings.LastIndex(abs.Path, "/s/"):], rec.Code))
			continue
		}
		if strings.Contains(href, "/f/") {
			docs[string(b)] = true
			if cd := rec.Result().Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
				t.Errorf("%s: served with Content-Disposition %q", href, cd)
			}
		}
	}
	return docs, broken
}

// TestHostileJournalOnThePage: the dates and listing pages escape every
// title, activity and nickname; entries without a title, with a title
// that is not UTF-8 or that reads like a javascript: URL are listed and
// their links work; an HTML document downloads as an attachment under the
// page's CSP.
func TestHostileJournalOnThePage(t *testing.T) {
	h, snapURL, _ := a2pHostile(t)
	base := snapURL[:strings.Index(snapURL, "/s/")+1]
	for _, u := range []string{base, snapURL} {
		code, body, _ := get(t, h, u)
		if code != 200 {
			t.Fatalf("%s: %d\n%s", u, code, body)
		}
		for _, bad := range []string{"<script", "<img src=x", `href="javascript:`} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the page holds %q unescaped", u, bad)
			}
		}
	}
	_, body, _ := get(t, h, snapURL)
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the hostile title is not shown escaped:\n%s", body)
	}
	docs, _ := a2pFollow(t, h, snapURL, body)
	for _, want := range []string{"<html><script>alert(3)</script></html>", "no title", "latin-1 title", "javascript title"} {
		if !docs[want] {
			t.Errorf("entry %q cannot be downloaded from the page", want)
		}
	}
	_, _, hdr := get(t, h, snapURL+"f/e1000000-0000-4000-8000-000000000001")
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || hdr.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("an HTML document is served without the page's protections: %v", hdr)
	}
}

// TestOddUIDLinks: an entry's uid is a file or directory name from the
// laptop (old layout: store/<uid>), and the listing puts it in the path of
// its download links as it is. A uid with '#' or '?' or a valid percent
// escape makes a link that a browser follows somewhere else: the child
// sees the entry and cannot get it. Every link on the page should work.
func TestOddUIDLinks(t *testing.T) {
	h, snapURL, odd := a2pHostile(t)
	_, body, _ := get(t, h, snapURL)
	docs, broken := a2pFollow(t, h, snapURL, body)
	for _, b := range broken {
		t.Errorf("a link of the page does not work: %s", b)
	}
	for _, uid := range odd {
		if !docs["old document "+uid] {
			t.Errorf("old-layout entry %q is listed but cannot be downloaded", uid)
		}
	}
}

// TestLinkForgeries: what the existing link test does not try. A laptop
// signs a staff ('S') link for itself or for another laptop with its own key;
// a link made before the laptop got a new key (approve --key); path tricks
// in the uid; another laptop's snapshot ID with this laptop's valid link in
// every kind of download.
func TestLinkForgeries(t *testing.T) {
	s := testkit.OpenStore(t)
	a := a2pNewLaptop(t, s, "LINKA", "a")
	b := a2pNewLaptop(t, s, "LINKB", "b")
	for _, l := range []*a2pLaptop{a, b} {
		l.entry(t, "f1000000-0000-4000-8000-00000000000"+l.u.Serial[4:], "secret of "+l.u.Serial, map[string]string{"title": "diary"})
		testkit.MustRun(t, s, l.u, l.src, backup.Options{})
	}
	serverPub, serverKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	h := (&server.RestorePage{Store: s, ServerKey: serverPub, Now: func() time.Time { return now }}).Handler()
	snA, _ := s.Snapshot(a.u.ID, "latest")
	snB, _ := s.Snapshot(b.u.ID, "latest")
	exp := now.Add(time.Hour)
	staffLink := func(key ed25519.PrivateKey, serial string) string {
		return "/r/" + proto.SignLink(key, proto.LinkClaims{Serial: serial, Expires: exp, ByServer: true}) + "/"
	}
	good := a.link("LINKA", exp)
	for name, u := range map[string]string{
		"laptop key as staff, other laptop": staffLink(a.key, "LINKB") + "s/" + string(snB.ID) + "/f/f1000000-0000-4000-8000-00000000000B",
		"laptop key as staff, itself":       staffLink(a.key, "LINKA"),
		"B's uid through A's snapshot":      good + "s/" + string(snA.ID) + "/f/f1000000-0000-4000-8000-00000000000B",
		"B's snapshot, preview":             good + "s/" + string(snB.ID) + "/p/f1000000-0000-4000-8000-00000000000B",
		"B's snapshot, bundle":              good + "s/" + string(snB.ID) + "/x/f1000000-0000-4000-8000-00000000000B",
		"B's user ID as serial":             a.link(strings.Repeat("0", 15)+"2", exp),
		"uid with slashes":                  good + "s/" + string(snA.ID) + "/f/..%2F..%2F..%2Ff1%2Ff1000000-0000-4000-8000-00000000000A%2Fdata",
		"uid dot dot":                       good + "s/" + string(snA.ID) + "/f/..",
		"data path as uid":                  good + "s/" + string(snA.ID) + "/f/f1%2Ff1000000-0000-4000-8000-00000000000A%2Fdata",
	} {
		code, body, _ := get(t, h, u)
		if code == 200 || strings.Contains(body, "secret of") {
			t.Errorf("%s: %d, shows %q", name, code, body[:min(len(body), 200)])
		}
	}
	// The staff link the server makes works.
	staff := "/r/" + proto.SignLink(serverKey, server.StaffLinkClaims(a.u, exp)) + "/"
	if code, _, _ := get(t, h, staff+"s/"+string(snA.ID)+"/f/f1000000-0000-4000-8000-00000000000A"); code != 200 {
		t.Errorf("a staff link: %d", code)
	}
	// A laptop given a new key (reflashed, approve --key): links its old key
	// signed stop working.
	if code, _, _ := get(t, h, good); code != 200 {
		t.Fatalf("good link: %d", code)
	}
	newPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := s.RequestKey(context.Background(), a.u.ID, newPub); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApproveKey(context.Background(), a.u.ID, false); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, h, good); code != 403 {
		t.Errorf("a link signed by the laptop's old key after it got a new one: %d", code)
	}
}

// TestSameUIDBothLayouts: a laptop upgraded from Sugar 0.82 can hold an
// entry in both layouts (store/<uid> and <uid[:2]>/<uid>/), and
// journal.Read lists both, so the page shows two rows. Their links are the
// same (/f/<uid>), and the download takes the last entry with that uid:
// the old-layout copy. The current layout's document, which
// journal.Lookup says is the one to prefer, cannot be downloaded.
func TestSameUIDBothLayouts(t *testing.T) {
	s := testkit.OpenStore(t)
	l := a2pNewLaptop(t, s, "UPGRADED1", "kid")
	const uid = "d1000000-0000-4000-8000-000000000001"
	l.entry(t, uid, "current layout, edited after the upgrade", map[string]string{"title": "My story", "timestamp": "1788249600"})
	l.put(t, "store/"+uid, "old layout, before the upgrade")
	l.put(t, "store/"+uid+".metadata", `{"title": "My story", "timestamp": "1788249600"}`)
	testkit.MustRun(t, s, l.u, l.src, backup.Options{})
	sn, _ := s.Snapshot(l.u.ID, "latest")
	h := (&server.RestorePage{Store: s, ServerKey: make(ed25519.PublicKey, ed25519.PublicKeySize)}).Handler()
	snapURL := l.link("UPGRADED1", time.Now().Add(time.Hour)) + "s/" + string(sn.ID) + "/"
	_, body, _ := get(t, h, snapURL)
	rows := strings.Count(body, `class="entry"`)
	docs, broken := a2pFollow(t, h, snapURL, body)
	t.Logf("%d rows; downloads: %v; broken: %v", rows, docs, broken)
	if !docs["current layout, edited after the upgrade"] {
		t.Errorf("%d rows for the entry, and none downloads the current layout's document (got %v)", rows, docs)
	}
}
