package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
		"other's snapshot":   {good + "s/" + string(other.ID) + "/", 404, "not one of yours"},
		"other's download":   {good + "s/" + string(other.ID) + "/x/0000", 404, "not one of yours"},
		"not a snapshot id":  {good + "s/..%2f..%2fetc/", 404, "not one of yours"},
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
