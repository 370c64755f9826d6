package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// laAdminSocket is the daemon's admin socket (the default place in its
// data directory).
func laAdminSocket(d *server.Daemon) string {
	if d.Config.AdminSocket != "" {
		return d.Config.AdminSocket
	}
	return filepath.Join(d.Config.Data, admin.DefaultSocket)
}

// TestLeakAttackAdminSocket: staff tools, cron jobs and monitoring call
// the daemon's admin socket every few minutes for months: status, users,
// a laptop's snapshots, and refused calls (an unknown serial), hundreds of
// them through one client; and malformed requests (not HTTP, not JSON, an
// unknown operation, a body cut short, a wrong path), each on its own
// connection that the tool then closes. Afterwards the daemon holds what it
// held before.
func TestLeakAttackAdminSocket(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "LEAKAD01", 410)
	l.run(t)
	sock := laAdminSocket(d)

	t.Run("calls through one client", func(t *testing.T) {
		c, err := admin.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		call := func(i int) {
			var err error
			switch i % 4 {
			case 0:
				_, err = c.Status(ctx, admin.StatusRequest{})
			case 1:
				_, err = c.Users(ctx, admin.UsersRequest{})
			case 2:
				_, err = c.Snapshots(ctx, admin.SnapshotsRequest{Serial: "LEAKAD01"})
			case 3:
				if _, err = c.Approve(ctx, admin.ApproveRequest{Serial: "NOSUCHLAPTOP"}); err == nil {
					err = errors.New("an unknown serial was approved")
				} else {
					err = nil
				}
			}
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		for i := range 8 {
			call(i)
		}
		base := laMeasure(t)
		const reps = 400
		took := laRepeat(t, reps, call)
		t.Logf("%d admin calls in %v", reps, took.Round(time.Millisecond))
		laCheck(t, "admin call", reps, base, 5*time.Second)
	})

	t.Run("malformed requests", func(t *testing.T) {
		post := func(body string) string {
			return fmt.Sprintf("POST /v1/call HTTP/1.1\r\nHost: xs-backupd\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		}
		bad := []string{
			"\x00\x01\x02 not http at all\r\n\r\n",
			post("{not json"),
			post(`{"op":"no-such-op","args":{}}`),
			post(`{"op":"status","args":{"surprise":1}}`),
			post(`{"op":"snapshots","args":{"serial":"` + strings.Repeat("x", 4096) + `"}}`),
			"GET /v1/call HTTP/1.1\r\nHost: xs-backupd\r\nConnection: close\r\n\r\n",
			"POST /v2/whatever HTTP/1.1\r\nHost: xs-backupd\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
			// The body is cut short: the tool dies after the headers and
			// half of it (the kernel closes its end).
			"POST /v1/call HTTP/1.1\r\nHost: xs-backupd\r\nContent-Length: 400\r\n\r\n{\"op\":\"sta",
		}
		send := func(i int) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(bad[i%len(bad)]))
			if i%len(bad) == len(bad)-1 {
				return // hung up half way
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(io.LimitReader(c, 1<<20))
			if len(b) == 0 {
				t.Errorf("malformed request %d: no answer (%v)", i%len(bad), err)
			}
		}
		for i := range 2 * len(bad) {
			send(i)
		}
		time.Sleep(200 * time.Millisecond)
		base := laMeasure(t)
		const reps = 400
		took := laRepeat(t, reps, send)
		t.Logf("%d malformed admin requests in %v", reps, took.Round(time.Millisecond))
		laCheck(t, "malformed admin request", reps, base, 5*time.Second)
		if _, err := admin.Dial(sock); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeakAttackAdminSocketSilentClients: a tool that connects to the admin
// socket and never sends anything (hung, stopped with Ctrl-Z, a stuck
// script), 100 of them, and 30 that send a request's headers and part of its
// body and then stall: the daemon cuts each within its header timeout
// (10 s) plus a little, so a stuck tool cannot hold the daemon's goroutines
// and descriptors for as long as it stays stuck; afterwards the daemon holds
// what it held before, and the socket answers.
func TestLeakAttackAdminSocketSilentClients(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	sock := laAdminSocket(d)
	c, err := admin.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx, admin.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	base := laMeasure(t)
	const silent, stalled = 100, 30
	var conns []net.Conn
	for i := range silent + stalled {
		nc, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if i >= silent {
			fmt.Fprintf(nc, "POST /v1/call HTTP/1.1\r\nHost: xs-backupd\r\nContent-Length: 400\r\n\r\n{\"op\":\"sta")
		}
		conns = append(conns, nc)
	}
	held := laMeasure(t)
	t.Logf("holding %d silent and %d stalled connections: %v", silent, stalled, held)
	// Each is cut by the daemon (the read ends) within 13 s.
	var cutSilent, cutStalled atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(13 * time.Second)
	for i, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, nc)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // still open
			}
			if i < silent {
				cutSilent.Add(1)
			} else {
				cutStalled.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("cut by the daemon within 13 s: %d of %d silent, %d of %d stalled mid-body", cutSilent.Load(), silent, cutStalled.Load(), stalled)
	if cutSilent.Load() != silent {
		t.Errorf("the daemon kept %d of %d admin connections that never sent a byte open for 13 s", silent-int(cutSilent.Load()), silent)
	}
	if cutStalled.Load() != stalled {
		t.Errorf("the daemon kept %d of %d admin connections stalled in the middle of a request's body open for 13 s (no read timeout on the admin socket's server: a stuck tool holds a goroutine and a descriptor for as long as it stays stuck)",
			stalled-int(cutStalled.Load()), stalled)
	}
	for _, nc := range conns {
		nc.Close()
	}
	laCheck(t, "silent admin connection", silent+stalled, base, 5*time.Second)
	if _, err := c.Status(ctx, admin.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
}
