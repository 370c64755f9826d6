package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestStaffLinkFollowsTheSerialToAnotherChild: a teacher makes a
// restore link for a child's laptop (xs-admin restore-link, signed by the
// server, valid an hour by default, up to a day). The same morning the laptop
// is revoked and, reflashed for another child, approved with a new history
// (approve --new-history: the first child's backups are kept as
// SERIAL.old). The link was made for the first child's backups; it must not
// open the second child's.
func TestStaffLinkFollowsTheSerialToAnotherChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen = "" })
	first := newLaptop(t, d, "SHC3L01", 71)
	first.run(t)
	h := (&server.RestorePage{Store: d.Store, ServerKey: d.Server.PublicKey()}).Handler()
	u1, err := d.Store.UserBySerial("SHC3L01")
	if err != nil {
		t.Fatal(err)
	}
	link := "/r/" + d.Server.SignLink(server.StaffLinkClaims(u1, time.Now().Add(time.Hour).Truncate(time.Second))) + "/"
	firstSnap := string(mustLatest(t, d, "SHC3L01"))
	if code, body, _ := get(t, h, link); code != 200 || !strings.Contains(body, firstSnap) {
		t.Fatalf("the staff link: %d, lists the first child's backup: %v", code, strings.Contains(body, firstSnap))
	}

	svc := &admin.Service{S: d.Store, Live: true}
	if _, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: "SHC3L01"}); err != nil {
		t.Fatal(err)
	}
	second := newLaptop(t, d, "SHC3L01", 72) // reflashed: a key change of a revoked laptop
	if _, err := svc.Approve(ctx, admin.ApproveRequest{Serial: "SHC3L01", NewHistory: true}); err != nil {
		t.Fatal(err)
	}
	second.run(t)
	secondSnap := string(mustLatest(t, d, "SHC3L01"))
	if secondSnap == firstSnap {
		t.Fatal("the second child has no backup of its own")
	}
	code, body, _ := get(t, h, link)
	t.Logf("the first child's staff link after the new history: %d, lists the second child's backup: %v", code, strings.Contains(body, secondSnap))
	if code == 200 && strings.Contains(body, secondSnap) {
		t.Errorf("a staff link made for the first child's backups now opens the second child's (%s): server links name a serial, not the history they were made for", secondSnap)
	}
}

// TestStalledDownloadsHoldThePage: the restore page works on a few
// listings and downloads at once (Concurrent, here 1) and answers the
// rest 503 (TestRestorePageFlood: clients that read). A laptop with its own
// valid link starts a download of a 16 MiB document of its own and never
// reads it (one laptop holds at most half the places, at least one:
// TestWebAttackOneLinkTakesEveryPlace). The page should cut a download that does not move,
// as the backup protocol cuts a laptop below its minimum rate; an honest
// child's listing should work again within seconds, not stay 503 for as
// long as the two connections stay open.
func TestStalledDownloadsHoldThePage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Second)
	defer cancel()
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Concurrent = 1 })
	honest := newLaptop(t, d, "SHC3S01", 73)
	honest.run(t)
	evil := newLaptop(t, d, "SHC3S02", 74)
	const uid = "e3000000-0000-4000-8000-000000000001"
	if err := journalgen.WriteEntry(evil.src, journalgen.Entry{UID: uid, Title: "big", Activity: "org.laptop.Oficina",
		Mime: "application/octet-stream", Data: journalgen.Random(randFor(75), 16<<20)}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	evil.run(t)
	evilLink, _, err := agent.RestoreLink(ctx, evil.st, 0)
	if err != nil {
		t.Fatal(err)
	}
	honestLink, _, err := agent.RestoreLink(ctx, honest.st, 0)
	if err != nil {
		t.Fatal(err)
	}
	evilDL := evilLink + "s/" + string(mustLatest(t, d, "SHC3S02")) + "/f/" + uid
	honestView := honestLink + "s/" + string(mustLatest(t, d, "SHC3S01")) + "/"
	u, _ := url.Parse(evilDL)
	for i := 0; i < 1; i++ {
		c, err := net.DialTCP("tcp", nil, d.PageAddr.(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadBuffer(4 << 10)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
		// Read the status line, then nothing more.
		line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
		if err != nil || !strings.Contains(line, "200") {
			t.Fatalf("stalled download %d: %q %v", i, line, err)
		}
	}
	time.Sleep(8 * time.Second)
	code := 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		resp, err := http.Get(honestView)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if code = resp.StatusCode; code == 200 {
			break
		}
	}
	if code != 200 {
		t.Errorf("13 s after a download stalled, an honest child's listing still gets %d: the stalled download holds the page's place", code)
	}
}
