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
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestLeakAttackRestorePage: children open the restore page all term: the
// listing of a day, a document's download, and downloads cut half way
// (the tab closed, the laptop shut). Hundreds of each leave the daemon
// holding what it held before (goroutines, descriptors: pack files and
// sockets, heap beyond the bounded listing cache), and every cut download
// gives its place back: the page still serves a listing at once with
// Concurrent 2.
func TestLeakAttackRestorePage(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Concurrent = 2 })
	l := newLaptop(t, d, "LEAKPG01", 408)
	const uid = "1eac0000-0000-4000-8000-000000000001"
	if err := journalgen.WriteEntry(l.src, journalgen.Entry{UID: uid, Title: "drawing", Activity: "org.laptop.Oficina",
		Mime: "application/octet-stream", Data: journalgen.Random(randFor(409), 4<<20)}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	l.run(t)
	link, _, err := agent.RestoreLink(ctx, l.st, 0)
	if err != nil {
		t.Fatal(err)
	}
	view := link + "s/" + string(mustLatest(t, d, "LEAKPG01")) + "/"
	dl := view + "f/" + uid
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	get := func(t *testing.T, u string) {
		t.Helper()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		if u == dl && n < 4<<20 { // the document, perhaps in a bundle
			t.Fatalf("download: %d bytes", n)
		}
	}
	du, _ := url.Parse(dl)
	// cut starts a download, reads a quarter of a megabyte and closes the
	// tab. The place of the cut download before it is given back when the
	// page notices (its next write fails): a child who gets 503 tries
	// again a moment later, for at most 2 s.
	busy := 0
	cut := func(t *testing.T) {
		t.Helper()
		for end := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.DialTCP("tcp", nil, d.PageAddr.(*net.TCPAddr))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", du.RequestURI(), du.Host)
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err == nil && strings.Contains(line, " 503 ") && time.Now().Before(end) {
				busy++
				c.Close()
				continue
			}
			if err != nil || !strings.Contains(line, " 200 ") {
				c.Close()
				t.Fatalf("download: %q %v", line, err)
			}
			io.CopyN(io.Discard, br, 256<<10)
			c.Close()
			return
		}
	}
	cases := []struct {
		name string
		reps int
		op   func(t *testing.T)
	}{
		{"listing", 300, func(t *testing.T) { get(t, view) }},
		{"download", 120, func(t *testing.T) { get(t, dl) }},
		{"download cut half way", 200, cut},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 5 {
				tc.op(t)
			}
			tr.CloseIdleConnections()
			time.Sleep(300 * time.Millisecond)
			base := laMeasure(t)
			took := laRepeat(t, tc.reps, func(int) { tc.op(t) })
			t.Logf("%d × %s in %v (503 and tried again: %d)", tc.reps, tc.name, took.Round(time.Millisecond), busy)
			// A browser keeps its connection a while; a closed tab does not.
			tr.CloseIdleConnections()
			laCheck(t, "restore page "+tc.name, tc.reps, base, 5*time.Second)
			// Every place was given back: a listing is served, not 503.
			resp, err := hc.Get(view)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if resp.StatusCode != 200 {
				t.Errorf("after %d × %s, a listing gets %d: places of finished requests were not given back", tc.reps, tc.name, resp.StatusCode)
			}
		})
	}
}
