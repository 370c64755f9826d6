package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestLeakAttackMetricsScrapes: a school that monitors its server has
// Prometheus scrape /metrics every 15 s, day and night: half a million
// scrapes over a school year. Hundreds of scrapes (some through a kept-alive
// connection, some each on its own, some hung up before the answer was
// read) leave the daemon holding what it held before.
func TestLeakAttackMetricsScrapes(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.Metrics = "127.0.0.1:0" })
	l := newLaptop(t, d, "LEAKMT01", 416)
	l.run(t)
	u := "http://" + d.MetricsAddr.String() + "/metrics"
	kept := &http.Transport{}
	defer kept.CloseIdleConnections()
	scrape := func(i int) {
		tr := kept
		if i%3 != 0 {
			tr = &http.Transport{DisableKeepAlives: true}
		}
		resp, err := (&http.Client{Transport: tr}).Get(u)
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 2 {
			resp.Body.Close() // hung up before reading
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "xs_") {
			t.Fatalf("scrape %d: %d %.200q", i, resp.StatusCode, b)
		}
	}
	for i := range 6 {
		scrape(i)
	}
	kept.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	base := laMeasure(t)
	const reps = 300
	took := laRepeat(t, reps, scrape)
	t.Logf("%d scrapes in %v", reps, took.Round(time.Millisecond))
	kept.CloseIdleConnections()
	laCheck(t, "metrics scrape", reps, base, 5*time.Second)
}
