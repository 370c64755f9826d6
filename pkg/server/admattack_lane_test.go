package server_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestAdmAttackRestorePlaceCarriesABigBackup: on a server allowing two
// sessions (one place for big backups, the other kept for small ones and
// restores), a first backup runs and a second waits, told to come back. A
// laptop asks for a restore (restores go first, in the small lane) and is
// granted; on a second connection it then asks for a 64 MiB first backup.
// Admission lets a laptop's second connection share the place its first
// holds, whatever the second asks for, so the big backup starts at once,
// ahead of the big backup waiting for the bulk lane, in a place granted
// for a restore. It should be told to come back like the one waiting.
func TestAdmAttackRestorePlaceCarriesABigBackup(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(time.Second)
	})
	ctx := context.Background()
	big := proto.Work{Bytes: 64 << 20, Files: 100}
	b1 := aaDial(t, d, aaKey(t, d, "AABIG1"), 4, big)
	if g, err := b1.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("first big backup: %+v %v", g, err)
	}
	b2 := aaDial(t, d, aaKey(t, d, "AABIG2"), 4, big)
	b2.HoldFor = 300 * time.Millisecond
	if g, err := b2.Hello(ctx, "backup"); err != nil || g.Granted || g.Slot.IsZero() {
		t.Fatalf("second big backup, with the bulk lane full: %+v %v (want a time to come back)", g, err)
	}
	ekey := aaKey(t, d, "AAEVILR")
	rest := aaDial(t, d, ekey, 4, proto.Work{})
	rest.HoldFor = 300 * time.Millisecond
	if g, err := rest.Hello(ctx, "restore"); err != nil || !g.Granted {
		t.Fatalf("restore hello (the small lane is free): %+v %v", g, err)
	}
	up := aaDial(t, d, ekey, 4, big)
	up.HoldFor = 300 * time.Millisecond
	g, err := up.Hello(ctx, "backup")
	if err != nil {
		t.Fatalf("the big backup's hello: %v", err)
	}
	st := d.Server.Admission(true)
	t.Logf("admission: running %d (small %d), running work %d, waiting %d", st.Running, st.RunningSmall, st.RunningWork, st.Waiting)
	if !g.Granted {
		return // told to come back like the other big backup: as it should be
	}
	var sent int64
	r := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 4; i++ {
		if err := up.Put(ctx, aaBlobs(r, 8, aaChunk)); err != nil {
			t.Logf("put: %v", err)
			break
		}
		sent += 8 * aaChunk
	}
	g2, _ := b2.Hello(ctx, "backup")
	t.Errorf("a laptop granted a restore then started a 64 MiB backup at once on a second connection (uploaded %d MiB) while another big backup waits for the bulk lane (told again: granted=%v, come back at %v)",
		sent>>20, g2.Granted, g2.Slot)
}

// aaCommitEmpty uploads an empty tree and commits it in c's session.
func aaCommitEmpty(t *testing.T, c *proto.Client) {
	t.Helper()
	enc, _ := manifest.Encode(&manifest.Tree{})
	root := chunk.Sum(enc)
	if err := c.Put(context.Background(), []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(context.Background(), root); err != nil {
		t.Fatal(err)
	}
}

// TestAdmAttackStaleLastBackupKeepsPriority: waiting laptops start in the
// order "longest since the last good backup first". Laptop H has backed
// up once; laptop A had never backed up when it connected, then backs up (after H), says bye and keeps its connection.
// Both now wait for the one place that frees next, H asking first. A's last
// good backup is newer than H's, so H should start first; but the server
// judges A by the account it read when A's connection opened (never backed
// up), and A goes ahead. A laptop that keeps one connection open is first
// in line however often it backs up.
func TestAdmAttackStaleLastBackupKeepsPriority(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(20 * time.Second)
	})
	ctx := context.Background()
	small := proto.Work{Bytes: 1 << 10, Files: 1}
	hkey := aaKey(t, d, "AAFAIRH")
	h0 := aaDial(t, d, hkey, 4, small)
	if g, err := h0.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("H's first backup: %+v %v", g, err)
	}
	aaCommitEmpty(t, h0)
	h0.Close()

	a := aaDial(t, d, aaKey(t, d, "AAFAIRA"), 4, small) // never backed up, as this connection opens
	if g, err := a.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("A's backup: %+v %v", g, err)
	}
	time.Sleep(20 * time.Millisecond)
	aaCommitEmpty(t, a) // A's good backup is now newer than H's
	if err := a.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	hs, err := d.Store.Snapshot(userBySerial(t, d, "AAFAIRH").ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	as, err := d.Store.Snapshot(userBySerial(t, d, "AAFAIRA").ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last good backups: H %v, A %v", hs.Time.Format(time.StampMicro), as.Time.Format(time.StampMicro))
	if !as.Time.After(hs.Time) {
		t.Fatalf("A's backup (%v) is not newer than H's (%v)", as.Time, hs.Time)
	}

	// Two sessions take both places.
	var blockers []*proto.Client
	for _, s := range []string{"AABLOCK1", "AABLOCK2"} {
		c := aaDial(t, d, aaKey(t, d, s), 4, small)
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("blocker %s: %+v %v", s, g, err)
		}
		blockers = append(blockers, c)
	}
	h := aaDial(t, d, hkey, 4, small)
	h.HoldFor, a.HoldFor = 15*time.Second, 15*time.Second
	first := make(chan string, 2)
	ask := func(name string, c *proto.Client) {
		g, err := c.Hello(ctx, "backup")
		if err != nil || !g.Granted {
			t.Logf("%s: %+v %v", name, g, err)
			first <- name + " (not granted)"
			return
		}
		first <- name
	}
	go ask("H", h)
	if !aaWaitFor(5*time.Second, func() bool { return d.Server.Admission(false).Held == 1 }) {
		t.Fatal("H's hello is not held")
	}
	time.Sleep(50 * time.Millisecond)
	go ask("A", a)
	if !aaWaitFor(5*time.Second, func() bool { return d.Server.Admission(false).Held == 2 }) {
		t.Fatal("A's hello is not held")
	}
	st := d.Server.Admission(true)
	for _, q := range st.Queue {
		t.Logf("queue: user %d since %v", q.User, q.Since.Format(time.StampMicro))
	}
	blockers[0].Bye(ctx) // one place frees
	var got string
	select {
	case got = <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("nobody started when a place freed")
	}
	blockers[1].Bye(ctx)
	select {
	case <-first:
	case <-time.After(10 * time.Second):
	}
	if got != "H" {
		t.Errorf("the place went to %s: A backed up after H but its connection still carries 'never backed up', so it goes first in the fairness order", got)
	}
}
