package xsbackup_test

import (
	"context"
	"io/fs"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// TestDialledRepoOutlivesAQuietConnection: a tool keeps a Repo from Dial
// open (a Sugar activity showing a backup's files) and does nothing for
// longer than the server lets a connection be quiet (here 1 s, after a
// read and without one). The server ends the connection; the next listing,
// and reads of a snapshot opened before, connect again and work (they
// failed until the Repo was closed and dialled again).
func TestDialledRepoOutlivesAQuietConnection(t *testing.T) {
	d := eaDaemonWith(t, func(c *server.Config) { c.Limits.SessionIdle, c.Limits.ConnIdle = time.Second, time.Second })
	ctx := context.Background()
	state := t.TempDir()
	if _, err := xsbackup.Register(ctx, state, xsbackup.RegisterOptions{Server: d.Addr.String(), Serial: "SHC0RECON1"}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a.txt": "A", "b/c.txt": "C"})
	repo, err := xsbackup.Dial(ctx, state, xsbackup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fs.ReadFile(fsys, "a.txt"); err != nil || string(b) != "A" {
		t.Fatalf("read before the pause: %q %v", b, err)
	}
	for round := range 2 {
		time.Sleep(2500 * time.Millisecond) // the server ends the quiet connection
		sns, err := repo.Snapshots(ctx)
		if err != nil || len(sns) != 1 {
			t.Fatalf("round %d: listing after the server ended the quiet connection: %v %v", round, sns, err)
		}
		time.Sleep(2500 * time.Millisecond)
		if b, err := fs.ReadFile(fsys, "b/c.txt"); err != nil || string(b) != "C" {
			t.Fatalf("round %d: reading a snapshot opened before the pause: %q %v", round, b, err)
		}
	}
}
