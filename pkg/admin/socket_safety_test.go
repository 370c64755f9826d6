package admin_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
)

// a4Serve starts admin.Serve on path and returns its stop function and
// the channel its result arrives on.
func a4Serve(t *testing.T, svc *admin.Service, path string) (stop func(), served chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	served = make(chan error, 1)
	go func() { served <- admin.Serve(ctx, svc, path) }()
	return cancel, served
}

// admin_socket set by mistake to a file that is not a socket (a typo in
// xs-backup.toml naming server.key, or a file of another program): the
// daemon must refuse to start, not delete the file. Only a stale socket
// left by a crashed daemon may be removed.
func TestServeDoesNotDeleteAFileThatIsNotASocket(t *testing.T) {
	svc, _ := newService(t)
	dir, err := os.MkdirTemp("", "xsa4")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	precious := filepath.Join(dir, "server.key")
	if err := os.WriteFile(precious, []byte("the school's server key"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop, served := a4Serve(t, svc, precious)
	defer func() { stop(); <-served }()
	select {
	case err := <-served:
		served <- err
		t.Logf("Serve refused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "the school's server key" {
		t.Errorf("admin.Serve on a path holding a regular file deleted it: %v %q", err, b)
	}
}

// A second daemon (another store: a test instance, a mothership on the
// same box) configured with the same admin_socket must not take the
// socket from the daemon already listening on it: staff's xs-admin would
// then silently act on the wrong store.
func TestServeDoesNotStealALiveSocket(t *testing.T) {
	svcA, _ := newService(t)
	svcB, _ := newService(t)
	dir, err := os.MkdirTemp("", "xsa4")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, admin.DefaultSocket)
	stopA, servedA := a4Serve(t, svcA, sock)
	defer func() { stopA(); <-servedA }()
	var c *admin.Client
	for i := 0; ; i++ {
		if c, err = admin.Dial(sock); err == nil {
			break
		} else if i == 200 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	if _, err := c.Register(ctx, admin.RegisterRequest{Serial: "ONLYINA"}); err != nil {
		t.Fatal(err)
	}
	stopB, servedB := a4Serve(t, svcB, sock)
	defer func() { stopB(); <-servedB }()
	select {
	case err := <-servedB:
		servedB <- err
		t.Logf("the second Serve refused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	c2, err := admin.Dial(sock)
	if err != nil {
		t.Fatalf("the first daemon's socket is gone: %v", err)
	}
	if _, err := c2.Snapshots(ctx, admin.SnapshotsRequest{Serial: "ONLYINA"}); err != nil {
		t.Errorf("the socket now answers for another store (the second Serve took it over): %v", err)
	}
}
