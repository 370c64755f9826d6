package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/damage"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// wa2BigLaptop backs up a laptop whose Journal holds one document of n
// random bytes (besides its generated entries) and returns the laptop,
// the document's uid, the sha256 of its bytes and the backup's page URL
// ("http://ADDR/r/TOKEN/s/SNAP/").
func wa2BigLaptop(t *testing.T, d *server.Daemon, serial string, seed uint64, n int) (*laptop, string, [32]byte, string) {
	t.Helper()
	l := newLaptop(t, d, serial, seed)
	uid := fmt.Sprintf("%08x-0000-4000-8000-000000000001", seed)
	data := journalgen.Random(randFor(seed), n)
	sum := sha256.Sum256(data)
	if err := journalgen.WriteEntry(l.src, journalgen.Entry{UID: uid, Title: "big video", Activity: "org.laptop.RecordActivity",
		Mime: "video/ogg", Data: data}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	l.run(t)
	link, _, err := agent.RestoreLink(context.Background(), l.st, 0)
	if err != nil {
		t.Fatal(err)
	}
	return l, uid, sum, link + "s/" + string(mustLatest(t, d, serial)) + "/"
}

// wa2HeapPeak samples the heap in use until stop is closed and returns the
// peak through the channel.
func wa2HeapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return out
}

// TestWebAttackHugeDownloadIsStreamed: a child downloads a 64 MiB video,
// as the raw file and as a Journal bundle. The daemon streams it: its heap
// grows by far less than the document while the download runs; the file
// arrives whole with the Content-Length announced. A Range request gets
// either exactly the bytes asked (206 with Content-Range) or the whole
// file (200), never a part under 200 or wrong bytes under 206.
func TestWebAttackHugeDownloadIsStreamed(t *testing.T) {
	const size = 64 << 20
	d := startDaemon(t, nil)
	_, uid, sum, snap := wa2BigLaptop(t, d, "WA2HUGE", 0x91, size)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, kind := range []string{"f", "x"} {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		stop := make(chan struct{})
		peak := wa2HeapPeak(stop)
		start := time.Now()
		resp, err := client.Get(snap + kind + "/" + uid)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		close(stop)
		grew := int64(<-peak) - int64(base)
		t.Logf("%s: %d bytes in %v, heap grew by %d MiB", kind, n, time.Since(start).Round(time.Millisecond), grew>>20)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d, %v after %d bytes", kind, resp.StatusCode, err, n)
		}
		if kind == "f" {
			if resp.ContentLength != size || n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Errorf("raw download: Content-Length %d, %d bytes, same bytes %v", resp.ContentLength, n, bytes.Equal(h.Sum(nil), sum[:]))
			}
		} else if n < size {
			t.Errorf("bundle of %d bytes for a %d-byte document", n, size)
		}
		if grew > size/2 {
			t.Errorf("%s: the heap grew by %d MiB while one %d MiB document downloaded: it is held in memory, not streamed", kind, grew>>20, size>>20)
		}
	}
	// Range requests on the same document.
	for _, rg := range []string{"bytes=1000-1999", "bytes=-10", "bytes=0-0,5-5", "bytes=99999999999-", "bytes=x"} {
		req, _ := http.NewRequest("GET", snap+"f/"+uid, nil)
		req.Header.Set("Range", rg)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		var head bytes.Buffer
		n, err := io.Copy(io.MultiWriter(h, &head), io.LimitReader(resp.Body, 4096))
		if err == nil && n == 4096 {
			var more int64
			more, err = io.Copy(h, resp.Body)
			n += more
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			if err != nil || n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Errorf("Range %s: 200 with %d bytes (%v), want the whole document", rg, n, err)
			}
		case 206:
			cr := resp.Header.Get("Content-Range")
			if rg == "bytes=1000-1999" && (cr != fmt.Sprintf("bytes 1000-1999/%d", size) || n != 1000) {
				t.Errorf("Range %s: 206 %q with %d bytes", rg, cr, n)
			}
		case 416:
			if rg != "bytes=99999999999-" {
				t.Errorf("Range %s: 416", rg)
			}
		default:
			t.Errorf("Range %s: %d", rg, resp.StatusCode)
		}
	}
}

// TestWebAttackDamageWhileDownloading: two 24 MiB documents are verified
// before their downloads start; the disk then damages each one's last
// chunk while the child's (slow) browser is still receiving its first
// megabyte, one as the raw file, one as a Journal bundle. The child's
// browser must see each download fail (cut short of its Content-Length,
// or a chunked stream that never ends properly): never a download that
// ends cleanly, as if complete, without the document's bytes. A download
// started afterwards is refused with the error page.
func TestWebAttackDamageWhileDownloading(t *testing.T) {
	const size = 24 << 20
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "WA2ROT", 0x92)
	uids := []string{"92000000-0000-4000-8000-000000000001", "92000000-0000-4000-8000-000000000002"}
	var sums [][32]byte
	for i, uid := range uids {
		data := journalgen.Random(randFor(uint64(0x920+i)), size)
		sums = append(sums, sha256.Sum256(data))
		if err := journalgen.WriteEntry(l.src, journalgen.Entry{UID: uid, Title: fmt.Sprint("video ", i), Activity: "org.laptop.RecordActivity",
			Mime: "video/ogg", Data: data}, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(30 * time.Millisecond)
	l.run(t)
	link, _, err := agent.RestoreLink(context.Background(), l.st, 0)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := d.Store.Snapshot(userBySerial(t, d, "WA2ROT").ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	snap := strings.TrimPrefix(link, "http://"+d.PageAddr.String()) + "s/" + string(sn.ID) + "/"
	for i, kind := range []string{"f", "x"} {
		uid := uids[i]
		e, err := d.Store.Lookup(context.Background(), sn.Root, uid[:2]+"/"+uid+"/data")
		if err != nil || len(e.Chunks) < 4 {
			t.Fatalf("the document's chunks: %v (%v)", e, err)
		}
		c, err := net.Dial("tcp", d.PageAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(64 << 10) // a slow browser: the server cannot run far ahead
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET %s%s/%s HTTP/1.1\r\nHost: xs\r\nConnection: close\r\n\r\n", snap, kind, uid)
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 16<<10), nil)
		if err != nil || resp.StatusCode != 200 {
			c.Close()
			t.Fatalf("%s: %v %v", kind, resp, err)
		}
		h := sha256.New()
		n, err := io.CopyN(h, resp.Body, 1<<20)
		if err != nil {
			c.Close()
			t.Fatalf("%s: first MiB: %v", kind, err)
		}
		if _, err := damage.Record(d.Config.Data, e.Chunks[len(e.Chunks)-1]); err != nil {
			c.Close()
			t.Fatal(err)
		}
		more, err := io.Copy(h, resp.Body)
		n += more
		c.Close()
		t.Logf("%s: %d bytes then %v", kind, n, err)
		if err == nil {
			t.Errorf("%s: the download ended cleanly after %d bytes (the document has %d, whole: %v) although its last chunk could not be read",
				kind, n, size, bytes.Equal(h.Sum(nil), sums[i][:]))
		}
	}
	// Downloads started now refuse with the error page, before any byte.
	for i, kind := range []string{"f", "x"} {
		resp, err := http.Get(link + "s/" + string(sn.ID) + "/" + kind + "/" + uids[i])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 500 || resp.Header.Get("Content-Disposition") != "" || !strings.Contains(string(body), "damaged") {
			t.Errorf("%s: a new download of the damaged document: %d %q", kind, resp.StatusCode, resp.Header.Get("Content-Disposition"))
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestWebAttackParallelDownloadsOneLink: one link downloads the same
// 4 MiB document on 16 connections at once. Each answer is either the
// whole document byte for byte or a 503 with Retry-After (never a 200
// with a short or mixed body), some succeed, and the daemon's heap stays
// bounded.
func TestWebAttackParallelDownloadsOneLink(t *testing.T) {
	const size = 4 << 20
	d := startDaemon(t, nil)
	_, uid, sum, snap := wa2BigLaptop(t, d, "WA2PAR", 0x93, size)
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var ok, busy atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	peak := wa2HeapPeak(stop)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind := []string{"f", "x"}[i%2]
			resp, err := client.Get(snap + kind + "/" + uid)
			if err != nil {
				t.Errorf("download %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			var buf bytes.Buffer
			w := io.Writer(h)
			if kind == "x" {
				w = &buf
			}
			n, err := io.Copy(w, resp.Body)
			switch {
			case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
				busy.Add(1)
			case resp.StatusCode != 200:
				t.Errorf("download %d: %d", i, resp.StatusCode)
			case err != nil:
				t.Errorf("download %d: %v after %d bytes", i, err, n)
			case kind == "f" && (n != size || !bytes.Equal(h.Sum(nil), sum[:])):
				t.Errorf("download %d: 200 with %d bytes not the document", i, n)
			case kind == "x" && (n < size || !bytes.HasPrefix(buf.Bytes(), []byte("PK"))):
				t.Errorf("bundle %d: 200 with %d bytes", i, n)
			default:
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	grew := int64(<-peak) - int64(base)
	t.Logf("%d whole, %d told to retry; heap grew by %d MiB", ok.Load(), busy.Load(), grew>>20)
	if ok.Load() == 0 {
		t.Error("no download succeeded")
	}
	if grew > 64<<20 {
		t.Errorf("16 parallel downloads of a 4 MiB document grew the heap by %d MiB", grew>>20)
	}
}

// TestWebAttackOneLinkTakesEveryPlace: the page works on Concurrent (here
// the default, 4) listings and downloads at once. One child clicks four
// videos of theirs in a row on slow school Wi-Fi: four downloads that move
// (about 200 KB/s each, far above the stall limit) and last minutes.
// Meanwhile no other child can open a listing: every view is 503. No
// device should get more than its share: one link (one laptop) should hold
// fewer than all of the page's places, so that another child's listing
// opens while the downloads go on.
func TestWebAttackOneLinkTakesEveryPlace(t *testing.T) {
	d := startDaemon(t, nil)
	_, uid, _, snap := wa2BigLaptop(t, d, "WA2HOG", 0x94, 24<<20)
	honest := newLaptop(t, d, "WA2KID", 95)
	honest.run(t)
	hl, _, err := agent.RestoreLink(context.Background(), honest.st, 0)
	if err != nil {
		t.Fatal(err)
	}
	honestView := hl + "s/" + string(mustLatest(t, d, "WA2KID")) + "/"
	target := strings.TrimPrefix(snap, "http://"+d.PageAddr.String()) + "f/" + uid
	done := make(chan struct{})
	var wg sync.WaitGroup
	started := 0
	for range 4 {
		c, err := net.Dial("tcp", d.PageAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: xs\r\n\r\n", target)
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, " 200 ") {
			c.Close()
			t.Logf("download: %q %v", line, err)
			continue
		}
		started++
		wg.Add(1)
		go func() { // read 16 KiB every 80 ms: moving, slowly
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 16<<10)
			for {
				select {
				case <-done:
					return
				case <-time.After(80 * time.Millisecond):
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(br, buf); err != nil {
					return
				}
			}
		}()
	}
	defer func() { close(done); wg.Wait() }()
	if started == 0 {
		t.Fatal("none of the 4 downloads started")
	}
	if started == 4 {
		t.Errorf("one link started %d downloads: every place of the page", started)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	codes := map[int]int{}
	got := false
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end) && !got; time.Sleep(300 * time.Millisecond) {
		resp, err := client.Get(honestView)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		got = resp.StatusCode == 200
		if resp.StatusCode == 503 {
			if s, _ := strconv.Atoi(resp.Header.Get("Retry-After")); s <= 0 {
				t.Errorf("503 without a Retry-After")
			}
		}
	}
	if !got {
		t.Errorf("while one link downloads four documents, another child's listing gets %v for 4 s: one laptop holds every place of the page", codes)
	}
}
