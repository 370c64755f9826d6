package server_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestBigAttack2TreeAtTheCapOverQUIC: a desktop's Journal holds a sparse
// file of zeros whose chunk list (the zeros are cut at every 16 KiB, the
// default MinSize: about 524,000 chunk IDs) makes its directory's tree as
// large as a tree may be, manifest.MaxTreeSize, within 32 bytes (one chunk
// ID) of it: just under 8 GiB. A laptop backs it up to the real daemon
// over QUIC with the default parameters.
//
// Expectation: the tree encodes and the server accepts it (a tree at the
// cap fits the protocol's blob frame); the run is Done, the
// file is in the snapshot whole (every chunk ID, its full size) and not
// named in Skipped, the process's Go heap (laptop and server together
// here) stays under 400 MiB, an unchanged second run (its file cache saved
// and loaded from disk, 16 MiB of IDs) reads nothing, and the store
// checks clean.
func TestBigAttack2TreeAtTheCapOverQUIC(t *testing.T) {
	if raceEnabled {
		t.Skip("a test of scale, not of races: make unit runs it without the race detector")
	}
	var sfs syscallStatfs
	if free := sfs.free(t, os.TempDir()); free < 20<<30 {
		t.Skipf("only %d MiB free; this test wants 20 GiB", free>>20)
	}
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHCBIG2Q01", 7)
	l.src = t.TempDir() // a desktop's Journal: a story and the big file
	p := d.Store.Params()
	story := []byte("The recording of the concert is next to me.\n")
	if err := os.WriteFile(filepath.Join(l.src, "story.txt"), story, 0o644); err != nil {
		t.Fatal(err)
	}
	// The largest number of zero chunks whose tree fits.
	zero := chunk.Sum(make([]byte, p.MinSize))
	tr := &manifest.Tree{Entries: []manifest.Entry{
		{Name: "concert.img", Type: manifest.File, Mode: 0o644, MTime: time.Now().UnixNano()},
		{Name: "story.txt", Type: manifest.File, Mode: 0o644, MTime: time.Now().UnixNano(), Size: int64(len(story)), Chunks: []chunk.ID{chunk.Sum(story)}},
	}}
	n := manifest.MaxTreeSize/32 + 8
	ids := make([]chunk.ID, n)
	for i := range ids {
		ids[i] = zero
	}
	for ; ; n-- {
		tr.Entries[0].Chunks, tr.Entries[0].Size = ids[:n], int64(n)*int64(p.MinSize)
		if manifest.EncodedSize(tr) <= manifest.MaxTreeSize {
			break
		}
	}
	size := int64(n) * int64(p.MinSize)
	t.Logf("%d chunks, a file of %d bytes, a tree of %d bytes (cap %d)", n, size, manifest.EncodedSize(tr), manifest.MaxTreeSize)
	f, err := os.Create(filepath.Join(l.src, "concert.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	time.Sleep(30 * time.Millisecond)

	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	res := l.run(t)
	took := time.Since(start)
	close(done)
	wg.Wait()
	b := res.Backup
	t.Logf("first run: %v, heap peak %d MiB, read %d MiB, sent %d KiB, wire %d KiB, %d round trips, skipped %v",
		took.Round(time.Millisecond), peak>>20, b.BytesRead>>20, b.BytesSent>>10, res.WireSent>>10, res.RoundTrips, b.Skipped)
	if peak > 400<<20 {
		t.Errorf("heap peaked at %d MiB (laptop and server; want under 400 MiB)", peak>>20)
	}
	if slices.Contains(b.Skipped, "concert.img") {
		t.Fatalf("a file whose tree fits (%d of %d bytes) was left out", manifest.EncodedSize(tr), manifest.MaxTreeSize)
	}
	u := userBySerial(t, d, l.serial)
	var got *manifest.Entry
	if err := d.Store.Walk(context.Background(), b.Root, func(p string, e *manifest.Entry) error {
		if p == "concert.img" {
			c := *e
			got = &c
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Size != size || len(got.Chunks) != n {
		t.Fatalf("the snapshot's entry: %v (want %d bytes, %d chunks)", got != nil, size, n)
	}
	sn, err := d.Store.Snapshot(u.ID, "latest")
	if err != nil || sn.Root != b.Root {
		t.Fatalf("latest snapshot %v, %v; want root %v", sn, err, b.Root)
	}

	start = time.Now()
	res2 := l.run(t)
	t.Logf("unchanged second run: %v, read %d bytes, %d round trips", time.Since(start).Round(time.Millisecond), res2.Backup.BytesRead, res2.RoundTrips)
	if res2.Backup.BytesRead != 0 || res2.Backup.Root != b.Root {
		t.Errorf("unchanged second run read %d bytes (root same: %v)", res2.Backup.BytesRead, res2.Backup.Root == b.Root)
	}
	rep, err := d.Store.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("store check: %+v", rep.Problems)
	}
}
