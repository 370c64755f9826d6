package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// startDaemon runs a real daemon (store in a temp dir, QUIC on loopback).
func startDaemon(t testing.TB, mod func(*server.Config)) *server.Daemon {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfg.RestorePage.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	d, stop := runDaemon(t, cfg)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// runDaemon starts a daemon on cfg and returns it once ready, with stop:
// the signal (the context's cancel), then Run's result.
func runDaemon(t testing.TB, cfg server.Config) (d *server.Daemon, stop func() error) {
	t.Helper()
	return runDaemonLog(t, cfg, nil)
}

// runDaemonLog is runDaemon logging to log.
func runDaemonLog(t testing.TB, cfg server.Config, log *slog.Logger) (d *server.Daemon, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready:
	case err := <-done:
		cancel()
		t.Fatal(err)
	}
	return d, func() error { cancel(); return <-done }
}

type laptop struct {
	st     agent.State
	src    string
	serial string
}

func newLaptop(t testing.TB, d *server.Daemon, serial string, seed uint64) *laptop {
	t.Helper()
	l := &laptop{st: agent.State{Dir: t.TempDir()}, src: t.TempDir(), serial: serial}
	if _, err := journalgen.Generate(l.src, journalgen.Small(seed)); err != nil {
		t.Fatal(err)
	}
	// A file backed up within a tick of the filesystem's clock of its
	// last write is read again by the next run (it could change unseen):
	// a laptop's Journal was not all written a moment ago.
	time.Sleep(30 * time.Millisecond)
	if _, err := agent.Register(context.Background(), l.st, agent.RegisterOptions{Server: d.Addr.String(), Serial: serial, Nickname: "kid " + serial}); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *laptop) run(t testing.TB) *agent.RunResult {
	t.Helper()
	res, err := agent.Run(context.Background(), l.st, agent.RunOptions{Source: l.src, Force: true, MaxSlotWait: time.Minute})
	if err != nil {
		t.Fatalf("%s: %v", l.serial, err)
	}
	if res.Outcome != agent.Done {
		t.Fatalf("%s: run %s: %s", l.serial, res.Outcome, res.Reason)
	}
	return res
}

func (l *laptop) restoreAndCompare(t testing.TB, snapshot string) {
	t.Helper()
	out := t.TempDir()
	if _, _, err := agent.Restore(context.Background(), l.st, agent.RestoreOptions{Snapshot: snapshot, Target: out}); err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(l.src, out, backup.JournalExclude); err != nil {
		t.Fatalf("%s: restore differs: %v", l.serial, err)
	}
}

func TestBackupOverQUIC(t *testing.T) {
	d := startDaemon(t, nil)
	var laptops []*laptop
	for i := 0; i < 3; i++ {
		laptops = append(laptops, newLaptop(t, d, fmt.Sprintf("SHC%04d", i), uint64(i)))
	}
	for _, l := range laptops {
		r := l.run(t)
		if r.Backup.ChunksNew == 0 {
			t.Fatal("first backup sent no chunks")
		}
		l.restoreAndCompare(t, r.Backup.Snapshot)
	}
	// Unchanged: no file content read, a few KB on the wire.
	for _, l := range laptops {
		r := l.run(t)
		if r.Backup.BytesRead != 0 || r.Backup.ChunksNew != 0 {
			t.Fatalf("unchanged re-backup read %d bytes, sent %d chunks", r.Backup.BytesRead, r.Backup.ChunksNew)
		}
		if r.WireSent > 16<<10 {
			t.Fatalf("unchanged re-backup put %d bytes on the wire", r.WireSent)
		}
		t.Logf("unchanged re-backup: %d bytes sent, %d received on the wire", r.WireSent, r.WireReceived)
	}
	// A day of change, then restore the latest and check an older one too.
	for i, l := range laptops {
		if err := journalgen.Mutate(l.src, uint64(i), 1); err != nil {
			t.Fatal(err)
		}
		r := l.run(t)
		l.restoreAndCompare(t, "latest")
		sns, err := agent.Snapshots(context.Background(), l.st)
		if err != nil || len(sns) != 3 || sns[2].ID != r.Backup.Snapshot {
			t.Fatalf("list: %v %v", sns, err)
		}
	}
	v := d.Metrics.Values()
	if v.Commits != 9 || v.SessionsStarted != 9 {
		t.Fatalf("metrics: %+v", v)
	}
}

func TestEditInLargeFileSendsLittle(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHC1", 1)
	big := journalgen.Random(randFor(5), 8<<20)
	path := filepath.Join(l.src, "ab", "big")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, big, 0o644)
	l.run(t)
	edited := append(append(append([]byte{}, big[:4<<20]...), []byte("an edit in the middle")...), big[4<<20:]...)
	os.WriteFile(path, edited, 0o644)
	r := l.run(t)
	if r.Backup.BytesSent > 512<<10 {
		t.Fatalf("an edit in an 8 MiB file sent %d bytes", r.Backup.BytesSent)
	}
	t.Logf("edit in the middle of 8 MiB: %d chunks, %d bytes sent", r.Backup.ChunksNew, r.Backup.BytesSent)
	l.restoreAndCompare(t, "latest")
}

// A run interrupted halfway is finished by the next without re-sending.
func TestInterruptedRunResumes(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHC1", 1)
	for i := 0; i < 6; i++ {
		os.WriteFile(filepath.Join(l.src, fmt.Sprintf("media%d", i)), journalgen.Random(randFor(uint64(i)), 2<<20), 0o644)
	}
	// Interrupt after some uploads, at the protocol level.
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	sent := 0
	_, err := agent.Run(ctx, l.st, agent.RunOptions{Source: l.src, Force: true, Progress: func(p backup.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.BytesSent > 4<<20 && sent == 0 {
			sent = int(p.BytesSent)
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("interrupted run succeeded")
	}
	if sent == 0 {
		t.Fatal("the run was not interrupted mid-way")
	}
	r := l.run(t)
	total := r.Backup.BytesRead
	if r.Backup.BytesSent > total-int64(sent)+(1<<20) {
		t.Fatalf("resumed run sent %d of %d bytes although %d had arrived", r.Backup.BytesSent, total, sent)
	}
	t.Logf("interrupted after %d bytes; resumed run sent %d of %d", sent, r.Backup.BytesSent, total)
	l.restoreAndCompare(t, "latest")
}

func dialLaptop(t testing.TB, d *server.Daemon, l *laptop) *proto.Client {
	t.Helper()
	key, err := l.st.Key()
	if err != nil {
		t.Fatal(err)
	}
	c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if g, err := c.Hello(context.Background(), "backup"); err != nil || !g.Granted {
		t.Fatalf("hello: %+v %v", g, err)
	}
	return c
}

func TestDedupIsPrivateOverTheWire(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	a, b := newLaptop(t, d, "SHCA", 1), newLaptop(t, d, "SHCB", 2)
	shared := journalgen.Random(randFor(9), 1<<20)
	os.WriteFile(filepath.Join(a.src, "book.pdf"), shared, 0o644)
	// B has only the book, so anything B adds to the packs is duplication.
	b.src = t.TempDir()
	os.WriteFile(filepath.Join(b.src, "book.pdf"), shared, 0o644)
	a.run(t)
	packs := dirBytes(filepath.Join(d.Config.Data, "packs"))

	cb := dialLaptop(t, d, b)
	var first chunk.ID
	s := d.Store
	ua, _ := s.UserBySerial("SHCA")
	sn, _ := s.Snapshot(ua.ID, "latest")
	e, err := s.Lookup(ctx, sn.Root, "book.pdf")
	if err != nil {
		t.Fatal(err)
	}
	first = e.Chunks[0]
	need, err := cb.Need(ctx, []blob.Ref{{Type: blob.Chunk, ID: first}, {Type: blob.Chunk, ID: chunk.Sum([]byte("never"))}})
	if err != nil {
		t.Fatal(err)
	}
	if !need[0] || !need[1] {
		t.Fatalf("B's need = %v: a chunk only A has must be asked for", need)
	}
	cb.Close()
	r := b.run(t)
	if r.Backup.ChunksNew == 0 {
		t.Fatal("B did not upload the shared book")
	}
	grown := dirBytes(filepath.Join(d.Config.Data, "packs")) - packs
	if grown > int64(len(shared))/4 {
		t.Fatalf("the shared 1 MiB book grew the packs by %d bytes", grown)
	}
	b.restoreAndCompare(t, "latest")
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	a, b := newLaptop(t, d, "SHCA", 1), newLaptop(t, d, "SHCB", 2)
	a.run(t)

	// An unregistered key is refused before any request.
	stranger, _ := proto.GenerateKey()
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: stranger, ServerKey: d.Server.PublicKey()})
	if err == nil {
		_, err = c.Hello(ctx, "backup")
		c.Close()
	}
	if !errors.Is(err, proto.ErrNotRegistered) {
		t.Fatalf("unregistered key: %v", err)
	}
	// A laptop that pinned another server key refuses the server.
	key, _ := a.st.Key()
	other, _ := proto.GenerateKey()
	if _, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: other.Public().(ed25519.PublicKey)}); !errors.Is(err, proto.ErrServerKeyChanged) {
		t.Fatalf("wrong pinned key: %v", err)
	}

	cb := dialLaptop(t, d, b)
	// A chunk whose bytes do not match its ID.
	data := []byte("honest bytes")
	err = cb.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum([]byte("other"))}, Data: data, RawLen: len(data)}})
	if !errors.Is(err, proto.ErrHashMismatch) {
		t.Fatalf("wrong hash: %v", err)
	}
	// A manifest naming A's chunk without uploading it.
	ua, _ := d.Store.UserBySerial("SHCA")
	sn, _ := d.Store.Snapshot(ua.ID, "latest")
	var victim *manifest.Entry
	d.Store.Walk(ctx, sn.Root, func(p string, e *manifest.Entry) error {
		if e.Type == manifest.File && e.Size > 0 && victim == nil {
			victim = e
		}
		return nil
	})
	tree := &manifest.Tree{Entries: []manifest.Entry{{Name: "x", Type: manifest.File, Mode: 0o644, Size: victim.Size, Chunks: victim.Chunks}}}
	enc, _ := manifest.Encode(tree)
	root := chunk.Sum(enc)
	if err := cb.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Commit(ctx, root); !errors.Is(err, blob.ErrNotHeld) {
		t.Fatalf("commit of another user's chunk: %v", err)
	}
	// Fetching A's chunk as B is refused the same way as a chunk nobody has.
	err = cb.Fetch(ctx, []blob.Ref{{Type: blob.Chunk, ID: victim.Chunks[0]}}, func(blob.Blob) error { return nil })
	if !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("fetch of another user's chunk: %v", err)
	}
	// An oversized frame is refused from its header, before the payload.
	st, err := cb.OpenRawStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 5)
	binary.BigEndian.PutUint32(hdr, 1<<31)
	hdr[4] = 7 // a blob frame
	st.Write(hdr)
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(st)
	if len(reply) < 6 || reply[4] != 15 || proto.Kind(reply[5]) != proto.KindTooLarge {
		t.Fatalf("oversized frame answered %q", reply)
	}
	// The server still serves B normally afterwards.
	b.run(t)
}

// TestAdmissionQueue: ten laptops ask at once of a server that allows two
// sessions; two start, the others are held briefly and told when to come
// back (each its own time, by its place in the queue), and every laptop
// then finishes.
func TestAdmissionQueue(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
	})
	const n = 10
	var laptops []*laptop
	for i := 0; i < n; i++ {
		laptops = append(laptops, newLaptop(t, d, fmt.Sprintf("SHC%02d", i), uint64(i)))
	}
	// All ask at once (each holds its session until told to finish).
	grants := make([]*proto.Grant, n)
	clients := make([]*proto.Client, n)
	var wg sync.WaitGroup
	for i, l := range laptops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, _ := l.st.Key()
			c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
			if err != nil {
				t.Error(err)
				return
			}
			c.HoldFor = 200 * time.Millisecond
			clients[i] = c
			grants[i], err = c.Hello(context.Background(), "backup")
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	granted, slots := 0, map[time.Time]int{}
	for _, g := range grants {
		if g == nil {
			t.FailNow()
		}
		if g.Granted {
			granted++
		} else {
			slots[g.Slot]++
		}
	}
	if granted != 2 || len(slots) != 8 {
		t.Fatalf("%d granted, come-back times %v; want 2 granted and 8 distinct times", granted, slots)
	}
	if q := d.Server.Admission(true); q.Waiting != 8 || len(q.Queue) != 8 || q.Running != 2 {
		t.Fatalf("admission %+v", q)
	}
	for _, c := range clients {
		c.Close()
	}
	// Every laptop finishes, honouring its slot.
	errs := make(chan error, n)
	start := time.Now()
	for _, l := range laptops {
		go func() {
			res, err := agent.Run(context.Background(), l.st, agent.RunOptions{Source: l.src, Force: true, MaxSlotWait: time.Minute})
			if err == nil && res.Outcome != agent.Done {
				err = fmt.Errorf("%s: %s %s", l.serial, res.Outcome, res.Reason)
			}
			errs <- err
		}()
	}
	for range laptops {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	v := d.Metrics.Values()
	t.Logf("10 laptops, at most 2 at once: all done in %v; %d come-back times issued", time.Since(start), v.SlotsIssued)
	if v.SlotsIssued < 8 || v.Commits != n {
		t.Fatalf("metrics %+v", v)
	}
}

// TestSlotKeptUntilDue: a laptop told to come back later keeps its slot;
// timer runs before the slot end at once without touching the network, and
// the first run within MaxSlotWait of it waits for it and backs up.
func TestSlotKeptUntilDue(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
	})
	ctx := context.Background()
	l := newLaptop(t, d, "SLOTWAIT", 2)
	var busy []*proto.Client
	for i := range 2 {
		b := newLaptop(t, d, fmt.Sprintf("SLOTBUSY%d", i), uint64(10+i))
		key, _ := b.st.Key()
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("busy laptop %d was not granted a place: %+v, %v", i, g, err)
		}
		busy = append(busy, c)
	}
	noBattery := t.TempDir()
	timerRun := func(maxWait time.Duration) *agent.RunResult {
		t.Helper()
		res, err := agent.Run(ctx, l.st, agent.RunOptions{Source: l.src, MaxSlotWait: maxWait, PowerSupplyDir: noBattery})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := timerRun(time.Millisecond)
	if first.Outcome != agent.Later || first.WireSent == 0 || !l.st.Slot().Equal(first.Slot) {
		t.Fatalf("busy server: %+v; saved slot %v", first, l.st.Slot())
	}
	issued := d.Metrics.Values().SlotsIssued
	again := timerRun(time.Millisecond)
	if again.Outcome != agent.Later || !again.Slot.Equal(first.Slot) || again.WireSent != 0 {
		t.Fatalf("a run before the slot should end at once, offline, with the same slot: %+v", again)
	}
	if n := d.Metrics.Values().SlotsIssued; n != issued {
		t.Fatalf("the server issued %d more slots to a laptop that already held one", n-issued)
	}
	for _, c := range busy {
		c.Close()
	}
	// Within MaxSlotWait of its slot, the run connects; the server is idle
	// by then, so it starts at once, even before its slot.
	done := timerRun(time.Minute)
	if done.Outcome != agent.Done {
		t.Fatalf("the run within MaxSlotWait of the slot: %s %s", done.Outcome, done.Reason)
	}
	if !l.st.Slot().IsZero() {
		t.Fatalf("slot %v still saved after the backup", l.st.Slot())
	}
}

// TestManyRequestsOnOneConnection makes far more requests than the
// per-connection stream limit, each sending its FIN only after the answer:
// finished requests must give their stream credit back, or a long backup
// stalls after MaxStreams requests.
func TestManyRequestsOnOneConnection(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "MANY1", 3)
	c := dialLaptop(t, d, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 40 {
		st, err := c.OpenRawStream(ctx)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		st.Write([]byte{0, 0, 0, 0, 12}) // a list request, without FIN
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(st, hdr); err != nil || hdr[4] != 13 {
			t.Fatalf("request %d answered %v %v", i, hdr, err)
		}
		st.Close()
		io.Copy(io.Discard, st)
	}
	for i := range 4 {
		data := journalgen.Random(randFor(uint64(i)), 256<<10)
		b := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
		if err := c.Put(ctx, []blob.Blob{b}); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
}

// TestUploadsLoseNoPackets: laptops uploading at full speed to a server that
// is busy hashing and writing must never outrun it. quic-go drops packets
// past a connection's queue of 256; with a larger receive window than that
// the laptops had 2–16% of their packets declared lost and sent again.
func TestUploadsLoseNoPackets(t *testing.T) {
	d := startDaemon(t, nil)
	const laptops, perLaptop = 4, 24 << 20
	var wg sync.WaitGroup
	lost := make([]int64, laptops)
	sent := make([]int64, laptops)
	for i := range laptops {
		l := newLaptop(t, d, fmt.Sprintf("SHCLOSS%d", i), uint64(40+i))
		c := dialLaptop(t, d, l)
		var blobs []blob.Blob
		data := journalgen.Random(randFor(uint64(70+i)), perLaptop)
		for off := 0; off < len(data); off += 64 << 10 {
			raw := data[off : off+64<<10]
			blobs = append(blobs, blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(raw)}, Data: raw, RawLen: len(raw)})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Put(context.Background(), blobs); err != nil {
				t.Errorf("laptop %d: %v", i, err)
			}
			lost[i], sent[i] = c.BytesLost(), c.BytesSent()
		}()
	}
	wg.Wait()
	for i := range laptops {
		if lost[i] != 0 {
			t.Errorf("laptop %d: %d of %d bytes declared lost and sent again on loopback", i, lost[i], sent[i])
		}
		if sent[i] < perLaptop {
			t.Errorf("laptop %d sent only %d bytes", i, sent[i])
		}
	}
}

// TestUnchangedRunTwoRequests: a laptop with nothing new sends a hello and
// a commit, nothing else (the commit ends the session: no bye), and its
// place is free as soon as it is committed. A commit that fails does not
// end the session: the laptop uploads what was missing and commits again.
func TestUnchangedRunTwoRequests(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHCRT01", 7)
	first := l.run(t)
	if first.RoundTrips < 3 {
		t.Fatalf("a first backup in %d requests: it has chunks to ask about and send", first.RoundTrips)
	}
	again := l.run(t)
	if again.RoundTrips != 2 {
		t.Errorf("an unchanged run took %d requests, want 2 (hello, commit)", again.RoundTrips)
	}
	if st := d.Server.Admission(true); st.Running != 0 {
		t.Errorf("%d sessions still admitted after the laptops committed", st.Running)
	}

	ctx := context.Background()
	c := dialLaptop(t, d, l)
	c.EndWithCommit = true
	if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("hello: %v %+v", err, g)
	}
	data := []byte("a chunk the server has never seen")
	ref := blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}
	tree, err := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: "f", Type: manifest.File, Mode: 0o644, Size: int64(len(data)), Chunks: []chunk.ID{ref.ID}}}})
	if err != nil {
		t.Fatal(err)
	}
	treeRef := blob.Ref{Type: blob.Tree, ID: chunk.Sum(tree)}
	if err := c.Put(ctx, []blob.Blob{{Ref: treeRef, Data: tree, RawLen: len(tree)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, treeRef.ID); err == nil {
		t.Fatal("a commit of a tree whose chunk was never sent succeeded")
	}
	if err := c.Put(ctx, []blob.Blob{{Ref: ref, Data: data, RawLen: len(data)}}); err != nil {
		t.Fatalf("upload after a failed commit: %v (the session must go on)", err)
	}
	if _, err := c.Commit(ctx, treeRef.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, []blob.Blob{{Ref: ref, Data: data, RawLen: len(data)}}); proto.KindOf(err) != proto.KindNoSession {
		t.Errorf("upload after the last commit: %v, want no session", err)
	}
	c.Close()
}
