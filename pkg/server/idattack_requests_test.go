package server_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestIDAttackNoProofNoRequest: on a server in approve mode, devices that
// have no right to a history try every request the protocol has, each on
// a connection of its own: a key never registered, a new laptop staff have
// not approved yet, a key waiting as a key change of a child's serial (a
// thief, or a reflashed laptop before staff look), a revoked laptop, and
// the key a claim code retired. Each request is refused with what the
// device is (not registered, waiting for approval, revoked); nothing they
// upload is stored, nothing is committed, no snapshot of the child is
// listed or fetched, and no account is made.
func TestIDAttackNoProofNoRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := startDaemon(t, func(c *server.Config) { c.Registration = "approve" })
	svc := &admin.Service{S: d.Store, Live: true}
	approved := func(serial string, seed uint64) *laptop {
		l := newLaptop(t, d, serial, seed)
		if _, err := svc.Approve(ctx, admin.ApproveRequest{Serial: serial}); err != nil {
			t.Fatal(err)
		}
		l.run(t)
		return l
	}
	child := approved("IDAREQ01", 71)
	revoked := approved("IDAREQ02", 72)
	retired := approved("IDAREQ03", 73)
	if _, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: "IDAREQ02"}); err != nil {
		t.Fatal(err)
	}
	cr, err := svc.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: "IDAREQ03"})
	if err != nil {
		t.Fatal(err)
	}
	if reg, err := agent.Register(ctx, agent.State{Dir: t.TempDir()}, agent.RegisterOptions{Server: d.Addr.String(), Serial: "IDAREQ03", Claim: cr.Code}); err != nil || !reg.Continued {
		t.Fatalf("claim: %+v %v", reg, err)
	}
	waitingNew := freshKey()
	if res, err := proto.RegisterWith(ctx, d.Addr.String(), waitingNew, proto.RegisterRequest{Serial: "IDAREQ04"}); err != nil || res.Approved {
		t.Fatalf("a new laptop in approve mode: %+v %v", res, err)
	}
	keyChange := freshKey()
	if res, err := proto.RegisterWith(ctx, d.Addr.String(), keyChange, proto.RegisterRequest{Serial: "IDAREQ01"}); err != nil || !res.KeyChange {
		t.Fatalf("a key change of IDAREQ01: %+v %v", res, err)
	}
	key := func(l *laptop) ed25519.PrivateKey {
		k, err := l.st.Key()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	cu := userBySerial(t, d, "IDAREQ01")
	sns := d.Store.Snapshots(cu.ID)
	if len(sns) != 1 {
		t.Fatalf("%d snapshots of the child", len(sns))
	}
	root := sns[0].Root
	users := len(d.Store.Users())
	// A new tree with the child's root in it, and a new chunk.
	enc, err := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: "planted", Type: manifest.Dir, Mode: 0o755, Subtree: root}}})
	if err != nil {
		t.Fatal(err)
	}
	mine := blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(enc)}, Data: enc, RawLen: len(enc)}
	data := []byte("a chunk nobody has, from a device with no right to store it")
	chunkB := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
	rootRef := blob.Ref{Type: blob.Tree, ID: root}

	ops := []struct {
		name string
		op   func(c *proto.Client) error
	}{
		{"hello backup", func(c *proto.Client) error { _, err := c.Hello(ctx, "backup"); return err }},
		{"hello restore", func(c *proto.Client) error { _, err := c.Hello(ctx, "restore"); return err }},
		{"hello info", func(c *proto.Client) error { _, err := c.Hello(ctx, "info"); return err }},
		{"list", func(c *proto.Client) error { _, err := c.Snapshots(ctx); return err }},
		{"need", func(c *proto.Client) error { _, err := c.Need(ctx, []blob.Ref{rootRef, chunkB.Ref}); return err }},
		{"put", func(c *proto.Client) error { return c.Put(ctx, []blob.Blob{mine, chunkB}) }},
		{"commit", func(c *proto.Client) error { _, err := c.Commit(ctx, mine.ID); return err }},
		{"fetch", func(c *proto.Client) error {
			return c.Fetch(ctx, []blob.Ref{rootRef}, func(blob.Blob) error { return nil })
		}},
		{"bye", func(c *proto.Client) error { return c.Bye(ctx) }},
		{"hello then put and commit", func(c *proto.Client) error {
			if _, err := c.Hello(ctx, "backup"); err != nil {
				return err
			}
			if err := c.Put(ctx, []blob.Blob{mine, chunkB}); err != nil {
				return err
			}
			_, err := c.Commit(ctx, mine.ID)
			return err
		}},
	}
	devices := []struct {
		name string
		key  ed25519.PrivateKey
		want error
	}{
		{"never registered", freshKey(), proto.ErrNotRegistered},
		{"new laptop waiting for approval", waitingNew, proto.ErrNotApproved},
		{"key change waiting for IDAREQ01", keyChange, proto.ErrNotApproved},
		{"revoked laptop", key(revoked), proto.ErrRevoked},
		{"key retired by a claim code", key(retired), proto.ErrRevoked},
	}
	for _, dev := range devices {
		for _, o := range ops {
			err := idaTry(ctx, d, dev.key, o.op)
			if !errors.Is(err, dev.want) {
				t.Errorf("%s, %s: %v (want %v)", dev.name, o.name, err, dev.want)
			}
		}
	}

	for _, b := range []blob.Blob{mine, chunkB} {
		if _, err := d.Store.Stat(ctx, b.Ref); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s, uploaded by devices with no right to store anything, is in the store (%v)", b.Ref, err)
		}
	}
	if n := len(d.Store.Snapshots(cu.ID)); n != 1 {
		t.Errorf("the child has %d snapshots after the attempts, 1 before", n)
	}
	if n := len(d.Store.Users()); n != users {
		t.Errorf("%d accounts after the attempts, %d before", n, users)
	}
	// The child's own laptop is served as before.
	child.run(t)
}
