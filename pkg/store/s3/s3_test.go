package s3_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// The Remote's contract, against versitygw.
func TestRemoteContract(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	r := srv.Remote(t, "pre")
	data := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB
	if err := r.Put(ctx, "packs/01/a.pack", bytes.NewReader(data), int64(len(data)), "abc123"); err != nil {
		t.Fatal(err)
	}
	st, err := r.Stat(ctx, "packs/01/a.pack")
	if err != nil || st.Size != int64(len(data)) || st.SHA256 != "abc123" {
		t.Fatalf("stat %+v %v", st, err)
	}
	p := make([]byte, 1000)
	if n, err := r.ReadAt(ctx, "packs/01/a.pack", p, 12345); err != nil || n != 1000 || !bytes.Equal(p, data[12345:13345]) {
		t.Fatalf("range read: %d %v", n, err)
	}
	// Past the end: fewer bytes, no error.
	if n, err := r.ReadAt(ctx, "packs/01/a.pack", p, int64(len(data))-10); err != nil || n != 10 {
		t.Fatalf("read at the end: %d %v", n, err)
	}
	objs, err := r.List(ctx, "packs/")
	if err != nil || len(objs) != 1 || objs[0].Name != "packs/01/a.pack" {
		t.Fatalf("list %+v %v", objs, err)
	}
	if _, err := r.Stat(ctx, "packs/01/none.pack"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of a missing object: %v", err)
	}
	if _, err := r.ReadAt(ctx, "packs/01/none.pack", p, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read of a missing object: %v", err)
	}
	if err := r.Delete(ctx, "packs/01/a.pack"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "packs/01/a.pack"); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
	if objs, _ := r.List(ctx, "packs/"); len(objs) != 0 {
		t.Fatalf("after delete: %+v", objs)
	}
}

func TestRetriesAndErrors(t *testing.T) {
	srv := s3test.Start(t)
	px := srv.Proxy(t)
	ctx := context.Background()
	cfg := srv.Config(px.Addr, "")
	r, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 300_000)
	for _, f := range []s3test.Fault{s3test.SlowDown, s3test.Error500, s3test.Drop, s3test.Truncate} {
		px.Set(f, 2, "")
		if err := r.Put(ctx, "x", bytes.NewReader(data), int64(len(data)), ""); err != nil {
			t.Fatalf("put with fault %d: %v", f, err)
		}
		px.Set(f, 2, "")
		p := make([]byte, len(data))
		if n, err := r.ReadAt(ctx, "x", p, 0); err != nil || n != len(data) || !bytes.Equal(p, data) {
			t.Fatalf("read with fault %d: %d %v", f, n, err)
		}
	}
	// A request slower than the timeout is abandoned and tried again.
	slow := srv.Config(px.Addr, "")
	slow.Timeout = 300 * time.Millisecond
	rs, _ := s3.New(slow)
	px.Delay = time.Second
	px.Set(s3test.Delay, 1, "GET")
	p := make([]byte, 100)
	if n, err := rs.ReadAt(ctx, "x", p, 0); err != nil || n != 100 {
		t.Fatalf("read after a stalled request: %d %v", n, err)
	}
	if px.Faults() == 0 {
		t.Fatal("no fault injected")
	}
	// Always failing: an error after the tries, saying where.
	px.Set(s3test.SlowDown, -1, "")
	err = r.Put(ctx, "y", bytes.NewReader(data), int64(len(data)), "")
	if err == nil || !strings.Contains(err.Error(), "SlowDown") || !strings.Contains(err.Error(), px.Addr) {
		t.Fatalf("persistent SlowDown: %v", err)
	}
	px.Clear()
	// Wrong credentials: not retried, says what to fix.
	bad := srv.Config(srv.Addr, "")
	bad.SecretKey = "wrong-secret-key"
	rb, _ := s3.New(bad)
	if err := rb.Check(ctx); err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("wrong secret: %v", err)
	}
	// Nothing listening: says so.
	gone := srv.Config("127.0.0.1:1", "")
	gone.Retries = 1
	rg, _ := s3.New(gone)
	if err := rg.Check(ctx); err == nil || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("no server: %v", err)
	}
}
