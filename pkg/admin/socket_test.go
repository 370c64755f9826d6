package admin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// serve serves svc on a real unix socket until the test ends and returns
// a client of it.
func serve(t testing.TB, svc *admin.Service) *admin.Client {
	t.Helper()
	c, _ := serveSocket(t, svc)
	return c
}

// serveSocket is serve, also returning the socket's path (for raw
// connections).
func serveSocket(t testing.TB, svc *admin.Service) (*admin.Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "xsa") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, admin.DefaultSocket)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- admin.Serve(ctx, svc, sock) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	for range 200 {
		c, err := admin.Dial(sock)
		if err == nil {
			return c, sock
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the admin socket never answered")
	return nil, ""
}

// The typed API gives the same results and the same error kinds through
// the daemon's socket as in-process on the store.
func TestTypedCallsThroughTheSocket(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t)
	svc.Live = true
	for name, c := range map[string]*admin.Client{"socket": serve(t, svc), "local": admin.Local(svc)} {
		t.Run(name, func(t *testing.T) {
			if c.Remote() != (name == "socket") {
				t.Fatalf("Remote() = %v", c.Remote())
			}
			serial := "REG-" + name
			u, err := c.Register(ctx, admin.RegisterRequest{Serial: serial, Nickname: "ana"})
			if err != nil || u.Serial != serial || u.Nickname != "ana" {
				t.Fatalf("register: %+v %v", u, err)
			}
			rows, err := c.Users(ctx, admin.UsersRequest{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range rows {
				found = found || r.Serial == serial && r.Nickname == "ana" && r.Approved
			}
			if !found {
				t.Fatalf("users: %+v", rows)
			}
			hard := int64(5 << 30)
			q, err := c.Quota(ctx, admin.QuotaRequest{Serial: serial, Hard: &hard})
			if err != nil || len(q) != 1 || q[0].Hard != hard || !q[0].Own {
				t.Fatalf("quota: %+v %v", q, err)
			}
			code, err := c.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: serial, Expires: 12 * time.Hour})
			if err != nil || code.Code == "" || code.Expires.IsZero() {
				t.Fatalf("claim code: %+v %v", code, err)
			}

			// Errors keep their kind.
			for what, c := range map[string]struct {
				err  error
				kind errkind.Kind
			}{
				"unknown laptop":  {second(c.Snapshots(ctx, admin.SnapshotsRequest{Serial: "NOSUCH"})), errkind.NotFound},
				"second register": {second(c.Register(ctx, admin.RegisterRequest{Serial: serial})), errkind.Exists},
				"no serial":       {second(c.Approve(ctx, admin.ApproveRequest{})), errkind.BadRequest},
				"bad fraction":    {second(c.GC(ctx, admin.GCRequest{CompactBelow: 5})), errkind.BadRequest},
				"repair live":     {second(c.Repair(ctx, admin.RepairRequest{})), errkind.Locked},
			} {
				if errkind.Of(c.err) != c.kind {
					t.Errorf("%s: %v (kind %v), want kind %v", what, c.err, errkind.Of(c.err), c.kind)
				}
			}
			_, err = c.Snapshots(ctx, admin.SnapshotsRequest{Serial: "NOSUCH"})
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("errors.Is(%v, store.ErrNotFound) is false", err)
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

// Dial tells "no daemon here" apart from other failures.
func TestDialWithoutDaemon(t *testing.T) {
	_, err := admin.Dial(filepath.Join(t.TempDir(), "admin.sock"))
	if !errors.Is(err, admin.ErrNoDaemon) {
		t.Fatalf("dial of a missing socket: %v", err)
	}
}

// A staff tool registers a laptop and lists the laptops through the
// daemon's admin socket; an unknown serial is an error of kind NotFound,
// through the socket as in-process.
func ExampleClient() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "xsa")
	defer os.RemoveAll(dir)
	s, err := store.Open(ctx, filepath.Join(dir, "store"), store.Options{Reserve: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	// The daemon's side.
	sock := filepath.Join(dir, admin.DefaultSocket)
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- admin.Serve(sctx, &admin.Service{S: s, Live: true}, sock) }()
	defer func() { stop(); <-served }()

	// xs-admin's side.
	var c *admin.Client
	for c == nil {
		if c, err = admin.Dial(sock); err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := c.Register(ctx, admin.RegisterRequest{Serial: "SHC0001", Nickname: "ana"}); err != nil {
		fmt.Println(err)
		return
	}
	users, _ := c.Users(ctx, admin.UsersRequest{})
	for _, u := range users {
		fmt.Println(u.Serial, u.Nickname, u.Approved)
	}
	_, err = c.Snapshots(ctx, admin.SnapshotsRequest{Serial: "SHC9999"})
	fmt.Println(errkind.Of(err), errors.Is(err, store.ErrNotFound))
	// Output:
	// SHC0001 ana true
	// not found true
}
