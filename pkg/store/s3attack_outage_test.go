package store_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The object store fails (500, 503 SlowDown, wrong credentials, dropped
// connections, a gateway answering for it) while check --read-data and the
// nightly lifecycle (scrub + GC) run. Promised: an error, never damage:
// nothing marked lost, nothing swept, and everything restores once the
// bucket is back.

func outageRun(t *testing.T, a *s3a, on, off func()) {
	t.Helper()
	ctx := context.Background()
	before := a.allRefs()
	packs0 := a.packSeqs()
	on()
	if rep, err := a.s.Check(ctx, store.CheckOptions{ReadData: true}); err == nil {
		t.Errorf("check --read-data succeeded while the object store failed: %d damaged, %d problems", rep.Damaged, len(rep.Problems))
	} else {
		t.Logf("check: %v", err)
	}
	if _, err := a.s.Scrub(ctx, store.ScrubOptions{All: true}); err == nil {
		t.Errorf("scrub succeeded while the object store failed")
	}
	if _, err := a.s.Lifecycle(ctx, store.LifecycleOptions{ScrubDays: 1}); err == nil {
		t.Logf("lifecycle succeeded while the object store failed")
	}
	if _, err := a.s.GC(ctx, store.GCOptions{CompactBelow: 1}); err == nil {
		t.Logf("gc succeeded while the object store failed")
	}
	off()
	if d := a.damagedNow(); len(d) != 0 {
		t.Errorf("%d blob(s) marked damaged by a failing object store, e.g. %s: %s", len(d), d[0].Ref, d[0].Reason)
	}
	have := map[uint64]bool{}
	for _, s := range a.packSeqs() {
		have[s] = true
	}
	for _, s := range packs0 {
		if !have[s] {
			t.Errorf("pack object %016x was deleted during the outage", s)
		}
	}
	// Once the bucket is back: everything reads, check is clean, the
	// nightly run works, every snapshot restores.
	lost := 0
	for r := range before {
		if _, err := a.s.ReadBlob(ctx, r); err != nil {
			lost++
			if lost <= 3 {
				t.Errorf("after the outage %s does not read back: %v", r, err)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d blob(s) unreadable after the object store came back", lost)
	}
	checkClean(t, a.s)
	a.night()
	a.verify(map[blob.Ref]bool{}, true)
}

func TestS3AttackOutageDuringCheckAndLifecycle(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault s3test.Fault
	}{{"500", s3test.Error500}, {"503-slowdown", s3test.SlowDown}, {"wrong-credentials", s3test.Deny}, {"dropped", s3test.Drop}} {
		t.Run(c.name, func(t *testing.T) {
			var px *s3test.Proxy
			a := newS3A(t, func(srv *s3test.Server, prefix string) store.Remote {
				px = srv.Proxy(t)
				return s3aRemote(t, srv, px.Addr, prefix, 1)
			})
			outageRun(t, a, func() { px.Set(c.fault, -1, "") }, px.Clear)
			if px.Faults() == 0 {
				t.Fatal("no fault injected")
			}
		})
	}
}

// Listings work, reads of pack objects fail: the scrub and check get past
// the look for missing packs and fail on the reads themselves.
func TestS3AttackPackReadsFailListingsWork(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		body   string
	}{
		{"500", 500, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`},
		{"503", 503, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>`},
		{"403", 403, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>injected</Message></Error>`},
		// A gateway in front of the object store (nginx, a load
		// balancer whose backend is down or being reconfigured) answers
		// object reads 404 with its own page, not an S3 NoSuchKey.
		{"gateway-404", 404, "<html><body><h1>404 Not Found</h1>nginx</body></html>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var px *s3aProxy
			a := newS3A(t, func(srv *s3test.Server, prefix string) store.Remote {
				px = startS3AProxy(t, srv)
				return s3aRemote(t, srv, px.Addr, prefix, 1)
			})
			// A fresh open: nothing cached from the backups.
			a.close()
			a.open()
			outageRun(t, a, func() {
				px.set(func(r *http.Request) (int, string) {
					if isPackRead(r) {
						return c.status, c.body
					}
					return 0, ""
				})
			}, func() { px.set(nil) })
			if px.faults() == 0 {
				t.Fatal("no fault injected")
			}
		})
	}
}
