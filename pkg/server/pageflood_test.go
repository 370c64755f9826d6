package server_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestRestorePageFlood: 24 clients load the listing of a big Journal's day
// over and over (it was parsed again for every view, and 24 parallel views of
// a 20 000-entry day took the daemon to 1.08 GB) while an honest laptop backs
// up and restores. The page works on at most its Concurrent pages at once and
// answers the rest 503 with Retry-After; listings come from the bounded cache;
// the laptop is served meanwhile and the heap stays bounded.
func TestRestorePageFlood(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Concurrent = 2 })
	big := newLaptop(t, d, "FLOODBIG", 1)
	o := journalgen.Small(9)
	o.Entries, o.MediaBytes, o.DocBytes, o.SharedBooks = 1500, 2<<10, 1<<10, 0
	if _, err := journalgen.Generate(big.src, o); err != nil {
		t.Fatal(err)
	}
	big.run(t)
	key, _ := big.st.Key()
	snap := mustLatest(t, d, "FLOODBIG")
	url := "http://" + d.PageAddr.String() + "/r/" + proto.SignLink(key, proto.LinkClaims{Serial: "FLOODBIG", Expires: time.Now().Add(time.Hour)}) + "/s/" + string(snap) + "/"
	honest := newLaptop(t, d, "FLOODOK", 2)

	ctx, stop := context.WithCancel(context.Background())
	var ok, busy, other atomic.Int64
	var wg sync.WaitGroup
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						t.Logf("flood request: %v", err)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
					busy.Add(1)
					time.Sleep(100 * time.Millisecond) // an impatient child, not the 5 s asked
				default:
					other.Add(1)
				}
			}
		}()
	}
	var peak atomic.Uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	floodStart := time.Now()
	time.Sleep(time.Second)
	start := time.Now()
	r := honest.run(t)
	honest.restoreAndCompare(t, r.Backup.Snapshot)
	took := time.Since(start)
	// The flood goes on for at least 10 s: long enough for the first
	// (uncached) views to be parsed and the cached ones to be served; on
	// a loaded machine (the race detector, other tests) until the first
	// view is served, for at most a minute.
	for time.Since(floodStart) < 10*time.Second || ok.Load() == 0 && time.Since(floodStart) < time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	wg.Wait()
	<-sampled
	t.Logf("page flood: %d pages served, %d told to retry (503), %d other; honest backup+restore in %v; peak heap %d MiB",
		ok.Load(), busy.Load(), other.Load(), took.Round(time.Millisecond), peak.Load()>>20)
	if ok.Load() == 0 || busy.Load() == 0 || other.Load() != 0 {
		t.Fatalf("the page must serve some views and turn the excess away with 503: %d ok, %d busy, %d other", ok.Load(), busy.Load(), other.Load())
	}
	if took > time.Minute {
		t.Fatalf("the honest laptop needed %v during the page flood", took)
	}
	if peak.Load() > 400<<20 {
		t.Fatalf("heap reached %d MiB during the page flood", peak.Load()>>20)
	}
}
