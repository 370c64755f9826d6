package server_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/testkit"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// wa2Pair is two children's laptops backed up into one store, each with a
// secret document, and the page serving them.
type wa2Pair struct {
	s          *store.Store
	h          http.Handler
	a, b       *a2pLaptop
	snapA      string
	snapB      string
	linkA      string // a valid link of A's, "/r/TOKEN/"
	tokA       string
	uidA, uidB string
}

func wa2NewPair(t *testing.T) *wa2Pair {
	t.Helper()
	s := testkit.OpenStore(t)
	p := &wa2Pair{s: s, uidA: "aa000000-0000-4000-8000-00000000000a", uidB: "bb000000-0000-4000-8000-00000000000b"}
	p.a = a2pNewLaptop(t, s, "WA2A", "ana-nick")
	p.b = a2pNewLaptop(t, s, "WA2B", "bruno-nick")
	p.a.entry(t, p.uidA, "secret of A", map[string]string{"title": "A's diary", "mime_type": "text/plain", "timestamp": "1788249600"})
	p.b.entry(t, p.uidB, "secret of B", map[string]string{"title": "B's diary", "mime_type": "text/plain", "timestamp": "1788249600"})
	// B also holds an entry with A's uid: the uid alone must never pick
	// whose document is served.
	p.b.entry(t, p.uidA, "secret of B under A's uid", map[string]string{"title": "B's other", "timestamp": "1788249600"})
	testkit.MustRun(t, s, p.a.u, p.a.src, backup.Options{})
	testkit.MustRun(t, s, p.b.u, p.b.src, backup.Options{})
	sa, _ := s.Snapshot(p.a.u.ID, "latest")
	sb, _ := s.Snapshot(p.b.u.ID, "latest")
	p.snapA, p.snapB = string(sa.ID), string(sb.ID)
	p.h = (&server.RestorePage{Store: s, ServerKey: make(ed25519.PublicKey, ed25519.PublicKeySize)}).Handler()
	p.linkA = p.a.link("WA2A", time.Now().Add(time.Hour))
	p.tokA = strings.TrimSuffix(strings.TrimPrefix(p.linkA, "/r/"), "/")
	return p
}

// wa2Get requests target and follows the page's own redirects (a cleaned
// path), as a browser does, up to 5 times.
func wa2Get(t *testing.T, h http.Handler, target string) (int, string, http.Header, string) {
	t.Helper()
	for range 5 {
		code, body, hdr := get(t, h, target)
		if code/100 != 3 || hdr.Get("Location") == "" {
			return code, body, hdr, target
		}
		base, _ := url.Parse("http://xs.local" + target)
		loc, err := url.Parse(hdr.Get("Location"))
		if err != nil {
			t.Fatalf("%s: redirect to %q: %v", target, hdr.Get("Location"), err)
		}
		target = base.ResolveReference(loc).RequestURI()
	}
	t.Fatalf("%s: redirect loop", target)
	return 0, "", nil, ""
}

// wa2Served is body without the language switch, whose links echo the
// path the request asked for (what the requester already knows).
func wa2Served(body string) string {
	return regexp.MustCompile(`(?s)<nav class="langs".*?</nav>`).ReplaceAllString(body, "")
}

// wa2PctAll percent-encodes every byte of s.
func wa2PctAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// TestWebAttackCrossChildPathTricks: a child holding a valid link of their
// own rewrites the URL to reach another child's backup: the other's
// snapshot ID percent-encoded, in another case, behind "..", encoded and
// double-encoded slashes in the snapshot and uid, query parameters naming
// the other child, a doubled slash, the token with extra bytes, and links
// the laptop signs itself for serials that embed the other's user ID.
// Expected: never the other child's document, snapshot ID or nickname,
// never a 5xx; a query parameter never changes whose document is served.
func TestWebAttackCrossChildPathTricks(t *testing.T) {
	p := wa2NewPair(t)
	exp := time.Now().Add(time.Hour)
	bID := p.b.u.ID.String()
	cases := map[string]string{
		"B's snapshot percent-encoded":        p.linkA + "s/" + wa2PctAll(p.snapB) + "/",
		"B's snapshot lower case":             p.linkA + "s/" + strings.ToLower(p.snapB) + "/f/" + p.uidB,
		"dot-dot to B's snapshot":             p.linkA + "s/" + p.snapA + "/../" + p.snapB + "/f/" + p.uidB,
		"encoded dot-dot in snap":             p.linkA + "s/" + p.snapA + "%2F..%2F" + p.snapB + "/",
		"double-encoded dot-dot in snap":      p.linkA + "s/" + p.snapA + "%252F..%252F" + p.snapB + "/",
		"encoded dot-dot in uid":              p.linkA + "s/" + p.snapA + "/f/..%2F..%2F" + p.snapB + "%2Ff%2F" + p.uidB,
		"double-encoded dot-dot in uid":       p.linkA + "s/" + p.snapA + "/f/..%252F..%252F" + p.snapB + "%252Ff%252F" + p.uidB,
		"encoded dots as snap":                p.linkA + "s/%2e%2e/" + p.snapB + "/",
		"doubled slash":                       "/r/" + p.tokA + "//s/" + p.snapB + "/f/" + p.uidB,
		"token with a path after it":          "/r/" + p.tokA + "%2F..%2F..%2Fs%2F" + p.snapB + "/",
		"token twice":                         "/r/" + p.tokA + "/r/" + p.tokA + "/s/" + p.snapB + "/",
		"token with a suffix":                 "/r/" + p.tokA + "x/s/" + p.snapB + "/",
		"B's snapshot in the query":           p.linkA + "s/" + p.snapB + "/?snap=" + p.snapA,
		"latest":                              p.linkA + "s/latest/",
		"latest download of B's uid":          p.linkA + "s/latest/f/" + p.uidB,
		"B's user ID and snap":                p.linkA + "s/" + bID + "%2F" + p.snapB + "/",
		"serial with NUL and B's ID":          p.a.link("WA2A\x00"+bID, exp) + "s/" + p.snapB + "/",
		"A's user ID as serial, B's snapshot": p.a.link(p.a.u.ID.String(), exp) + "s/" + p.snapB + "/f/" + p.uidB,
		"B's serial with A's ID":              p.a.link("WA2B\x00"+p.a.u.ID.String(), exp) + "s/" + p.snapB + "/",
		"B's uid, B's snapshot, preview kind": p.linkA + "s/" + p.snapB + "/p/" + p.uidB,
		"kind encoded":                        p.linkA + "s/" + p.snapB + "/%66/" + p.uidB,
		"semicolon params":                    "/r/" + p.tokA + ";serial=WA2B/s/" + p.snapB + "/",
	}
	for name, target := range cases {
		code, body, _, final := wa2Get(t, p.h, target)
		body = wa2Served(body)
		if code >= 500 {
			t.Errorf("%s: %s answered %d", name, final, code)
		}
		for _, leak := range []string{"secret of B", p.snapB, "bruno-nick", "B&#39;s diary", "B's diary", "B&#39;s other"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: %s (%d) shows %q of the other child", name, final, code, leak)
			}
		}
	}
	// Query parameters naming the other child change nothing: A's own
	// document is what A's own URL downloads.
	for _, q := range []string{"?user=" + bID, "?serial=WA2B", "?snap=" + p.snapB + "&uid=" + p.uidB, "?token=x&lang=es", "?uid=" + p.uidB + "&uid=" + p.uidB} {
		code, body, _ := get(t, p.h, p.linkA+"s/"+p.snapA+"/f/"+p.uidA+q)
		if code != 200 || body != "secret of A" {
			t.Errorf("A's own download with %q: %d %q, want A's document", q, code, body)
		}
	}
}

// TestWebAttackReplacedLaptopLinks: a child's laptop is replaced (staff
// run alias OLD NEW) and the old laptop goes to another child. Links the
// old laptop signed before, and links it signs after with its old key
// (for the old serial, the new serial, or the history's user ID), must
// not open the first child's backups; nor may a key merely waiting for
// approval on the new serial.
func TestWebAttackReplacedLaptopLinks(t *testing.T) {
	p := wa2NewPair(t)
	exp := time.Now().Add(time.Hour)
	before := p.linkA
	if code, body, _ := get(t, p.h, before); code != 200 || !strings.Contains(body, p.snapA) {
		t.Fatalf("A's link before the alias: %d", code)
	}
	// The new laptop registered the new serial first (its key waits).
	newPub, newKey, _ := ed25519.GenerateKey(nil)
	if _, err := p.s.AddUser(context.Background(), store.NewUser{Serial: "WA2NEW", PublicKey: newPub}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.s.Alias(context.Background(), "WA2A", "WA2NEW"); err != nil {
		t.Fatal(err)
	}
	newLaptop := &a2pLaptop{key: newKey}
	for name, link := range map[string]string{
		"link made before the alias":          before,
		"old key, old serial":                 p.a.link("WA2A", exp),
		"old key, new serial":                 p.a.link("WA2NEW", exp),
		"old key, user ID":                    p.a.link(p.a.u.ID.String(), exp),
		"waiting key, new serial":             newLaptop.link("WA2NEW", exp),
		"waiting key, old serial":             newLaptop.link("WA2A", exp),
		"waiting key, its own merged user ID": newLaptop.link("merged-into:"+p.a.u.ID.String(), exp),
	} {
		for _, target := range []string{link, link + "s/" + p.snapA + "/", link + "s/" + p.snapA + "/f/" + p.uidA} {
			code, body, _ := get(t, p.h, target)
			body = wa2Served(body)
			if code == 200 || strings.Contains(body, "secret of A") || strings.Contains(body, p.snapA) {
				t.Errorf("%s: %s answered %d and shows the first child's backups", name, target, code)
			}
		}
	}
}

// TestWebAttackDeletedSnapshotLink: a child has the list of their backups
// open (or bookmarked a day); that backup is then deleted by staff (or
// expires) and GC sweeps its data. Following the day's link, or a
// download link of it, must answer 404 with a page that leads back to the
// child's list (no data, no server error); the list no longer shows the
// day. The page should not tell the child that a backup which was theirs
// "is not one of yours".
func TestWebAttackDeletedSnapshotLink(t *testing.T) {
	s := testkit.OpenStore(t)
	l := a2pNewLaptop(t, s, "WA2DEL", "kid")
	const uid = "dd000000-0000-4000-8000-00000000000d"
	l.entry(t, uid, "first version", map[string]string{"title": "story", "timestamp": "1788249600"})
	old := testkit.MustRun(t, s, l.u, l.src, backup.Options{})
	l.put(t, uid[:2]+"/"+uid+"/data", "second version, longer")
	testkit.MustRun(t, s, l.u, l.src, backup.Options{})
	h := (&server.RestorePage{Store: s, ServerKey: make(ed25519.PublicKey, ed25519.PublicKeySize)}).Handler()
	link := l.link("WA2DEL", time.Now().Add(time.Hour))
	day := link + "s/" + old.Snapshot + "/"
	if code, body, _ := get(t, h, day+"f/"+uid); code != 200 || body != "first version" {
		t.Fatalf("before the deletion: %d %q", code, body)
	}
	if err := s.DeleteSnapshot(context.Background(), l.u.ID, store.SnapshotID(old.Snapshot)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(context.Background(), store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := get(t, h, link); strings.Contains(body, old.Snapshot) {
		t.Errorf("the list still offers the deleted backup")
	}
	for _, target := range []string{day, day + "f/" + uid, day + "x/" + uid, day + "p/" + uid} {
		code, body, _ := get(t, h, target)
		if code != http.StatusNotFound && code != http.StatusGone {
			t.Errorf("%s: %d, want 404 or 410", target, code)
		}
		if strings.Contains(body, "first version") {
			t.Errorf("%s: the deleted backup's document is served", target)
		}
		if !strings.Contains(body, `href="`+link+`"`) {
			t.Errorf("%s: the page gives no way back to the child's list:\n%s", target, body)
		}
		if strings.Contains(body, "not one of yours") {
			t.Errorf("%s: a backup that was the child's own and was deleted is called %q", target, "not one of yours")
		}
	}
}

// TestWebAttackSharedListingStaysPerChild: two children have byte-identical
// Journals (a class set up from one image), so their snapshots share a
// root and the page's listing cache holds one listing for both. Each
// child's page must still show only their own name, their own snapshot
// and links under their own link; one child's link with the other's
// snapshot ID stays refused even though the listing is cached; deleting
// one child's backup leaves the other's page and downloads working.
func TestWebAttackSharedListingStaysPerChild(t *testing.T) {
	s := testkit.OpenStore(t)
	a := a2pNewLaptop(t, s, "WA2SA", "ana-nick")
	b := a2pNewLaptop(t, s, "WA2SB", "bruno-nick")
	const uid = "cc000000-0000-4000-8000-00000000000c"
	when := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	for _, l := range []*a2pLaptop{a, b} {
		l.entry(t, uid, "the class's poem", map[string]string{"title": "poem", "timestamp": "1788249600"})
		// Same times everywhere, so that the trees are identical.
		var dirs []string
		filepath.WalkDir(l.src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, p)
			} else {
				os.Chtimes(p, when, when)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Chtimes(dirs[i], when, when)
		}
		testkit.MustRun(t, s, l.u, l.src, backup.Options{})
	}
	sa, _ := s.Snapshot(a.u.ID, "latest")
	sb, _ := s.Snapshot(b.u.ID, "latest")
	if sa.Root != sb.Root {
		t.Fatalf("the two Journals have different roots (%s, %s): the test needs one listing for both", sa.Root.Short(), sb.Root.Short())
	}
	h := (&server.RestorePage{Store: s, ServerKey: make(ed25519.PublicKey, ed25519.PublicKeySize)}).Handler()
	exp := time.Now().Add(time.Hour)
	la, lb := a.link("WA2SA", exp), b.link("WA2SB", exp)
	// A's listing first: it is cached.
	if code, _, _ := get(t, h, la+"s/"+string(sa.ID)+"/"); code != 200 {
		t.Fatalf("A's listing: %d", code)
	}
	code, body, _ := get(t, h, lb+"s/"+string(sb.ID)+"/")
	if code != 200 {
		t.Fatalf("B's listing: %d", code)
	}
	if strings.Contains(body, "ana-nick") || strings.Contains(body, la) || strings.Contains(body, string(sa.ID)) {
		t.Errorf("B's page shows A's name, link or snapshot:\n%s", body)
	}
	if !strings.Contains(body, "bruno-nick") || !strings.Contains(body, lb+"s/"+string(sb.ID)+"/f/"+uid) {
		t.Errorf("B's page does not show B's name and B's own download links:\n%s", body)
	}
	for _, target := range []string{la + "s/" + string(sb.ID) + "/", la + "s/" + string(sb.ID) + "/f/" + uid, lb + "s/" + string(sa.ID) + "/f/" + uid} {
		if code, _, _ := get(t, h, target); code == 200 {
			t.Errorf("%s: %d through a shared cached listing", target, code)
		}
	}
	if err := s.DeleteSnapshot(context.Background(), a.u.ID, sa.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(context.Background(), store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, h, lb+"s/"+string(sb.ID)+"/f/"+uid); code != 200 || body != "the class's poem" {
		t.Errorf("B's download after A's backup was deleted: %d %q", code, body)
	}
	if code, _, _ := get(t, h, la+"s/"+string(sa.ID)+"/"); code == 200 {
		t.Errorf("A's deleted backup is still served from the cached listing")
	}
}
