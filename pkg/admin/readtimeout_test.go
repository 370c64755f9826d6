package admin_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestAdminSocketBoundsTheRequestNotTheCall: a tool that sends a request's
// headers and part of its body, then stalls, is cut once the body's time
// is up (it held a goroutine and a descriptor of the daemon for as long
// as it stayed stuck); a call that runs far longer than that time (staff's
// check --read-data of a whole store, the nightly run) is not cancelled by
// it and answers.
func TestAdminSocketBoundsTheRequestNotTheCall(t *testing.T) {
	defer admin.SetRequestReadTimeout(300 * time.Millisecond)()
	svc, _ := newService(t)
	svc.Live = true
	ran := make(chan error, 1)
	svc.Lifecycle = func(ctx context.Context, _ store.LifecycleOptions) (*store.LifecycleReport, error) {
		select {
		case <-time.After(1500 * time.Millisecond): // five times the body's time
			ran <- nil
			return &store.LifecycleReport{}, nil
		case <-ctx.Done():
			ran <- ctx.Err()
			return nil, ctx.Err()
		}
	}
	c, sock := serveSocket(t, svc)

	stalled, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "POST /v1/call HTTP/1.1\r\nHost: xs-backupd\r\nContent-Length: 400\r\n\r\n{\"op\":\"sta")
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	t0 := time.Now()
	if _, err := io.Copy(io.Discard, stalled); err != nil {
		t.Errorf("a request stalled mid-body was not cut by the daemon in 5 s: %v", err)
	} else if took := time.Since(t0); took < 250*time.Millisecond {
		t.Errorf("a request stalled mid-body was cut after %v, before its time", took)
	}

	if _, err := c.RunLifecycle(context.Background(), admin.LifecycleRequest{}); err != nil {
		t.Fatalf("a call longer than the request's time: %v", err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("the long call was cancelled: %v", err)
	}
}
