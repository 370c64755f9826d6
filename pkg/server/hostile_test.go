package server_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// rawRequest sends raw bytes on a fresh stream and returns the reply's
// error kind (KindInternal if the reply is not an error frame).
func rawRequest(t *testing.T, c *proto.Client, data []byte) proto.Kind {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.OpenRawStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Write(data)
	st.Close()
	st.SetReadDeadline(time.Now().Add(15 * time.Second))
	reply, _ := io.ReadAll(io.LimitReader(st, 1<<16))
	if len(reply) < 6 || reply[4] != 15 {
		return proto.KindInternal
	}
	return proto.Kind(reply[5])
}

func frame(typ byte, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	return append(append(b, typ), payload...)
}

// TestHostileClients: garbage, oversized chunks, bad manifests, revoked
// keys, connection floods and trickling clients are each refused with a
// clear error, memory stays bounded, and an honest laptop backs up meanwhile.
func TestHostileClients(t *testing.T) {
	t.Parallel() // the trickling client takes ~11 s to be cut
	ctx := context.Background()
	d := startDaemon(t, func(c *server.Config) { c.MaxConnections = 12; c.MinRate = 64 << 10 })
	honest := newLaptop(t, d, "HONEST", 1)
	evil := newLaptop(t, d, "EVIL", 2)
	c := dialLaptop(t, d, evil)

	// Garbage on a stream: an unknown frame type, then random bytes.
	if k := rawRequest(t, c, frame(99, []byte("hello"))); k != proto.KindBadRequest {
		t.Errorf("unknown frame type answered %v", k)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 20; i++ {
		junk := make([]byte, 1+r.IntN(200))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		if k := rawRequest(t, c, junk); k == proto.KindInternal {
			// A cut stream is fine too; what matters is that the server lives.
			continue
		}
	}
	// A chunk claiming more than the largest chunk size.
	big := make([]byte, 64)
	hdr := make([]byte, 38)
	hdr[0] = byte(blob.Chunk)
	binary.BigEndian.PutUint32(hdr[2:], uint32(chunk.MaxChunkSize+1))
	if k := rawRequest(t, c, append(frame(16, nil), frame(7, append(hdr, big...))...)); k != proto.KindBadRequest && k != proto.KindTooLarge {
		t.Errorf("oversized chunk answered %v", k)
	}
	// Manifests: a name with "..", duplicate names, nesting past the limit.
	enc, _ := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: "abcd", Type: manifest.File, Mode: 0o644}}})
	bad := []byte(strings.Replace(string(enc), "abcd", "../x", 1))
	err := c.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(bad)}, Data: bad, RawLen: len(bad)}})
	if !errors.Is(err, proto.ErrBadRequest) {
		t.Errorf("tree with ../x: %v", err)
	}
	enc2, _ := manifest.Encode(&manifest.Tree{Entries: []manifest.Entry{{Name: "a", Type: manifest.File, Mode: 0o644}, {Name: "b", Type: manifest.File, Mode: 0o644}}})
	dup := []byte(strings.Replace(string(enc2), "\x01b", "\x01a", 1))
	if err := c.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(dup)}, Data: dup, RawLen: len(dup)}}); !errors.Is(err, proto.ErrBadRequest) {
		t.Errorf("tree with duplicate names: %v", err)
	}
	var deep chunk.ID
	var chain []blob.Blob
	for i := 0; i <= manifest.MaxDepth+2; i++ {
		tr := &manifest.Tree{}
		if i > 0 {
			tr.Entries = []manifest.Entry{{Name: "d", Type: manifest.Dir, Mode: 0o755, Subtree: deep}}
		}
		e, _ := manifest.Encode(tr)
		deep = chunk.Sum(e)
		chain = append(chain, blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: deep}, Data: e, RawLen: len(e)})
	}
	if err := c.Put(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, deep); !errors.Is(err, proto.ErrBadRequest) {
		t.Errorf("commit of a tree nested %d deep: %v", manifest.MaxDepth+2, err)
	}

	// A trickling client: a 64 KiB frame at a few bytes a second is cut off.
	slow := dialLaptop(t, d, evil)
	st, _ := slow.OpenRawStream(ctx)
	st.Write(frame(16, nil))
	st.Write(binary.BigEndian.AppendUint32(nil, 64<<10))
	st.Write([]byte{7})
	trickleStart := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		for i := 0; i < 60; i++ {
			if _, err := st.Write([]byte{0}); err != nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		cut <- time.Since(trickleStart)
	}()

	// A flood of connections past MaxConnections.
	key, _ := evil.st.Key()
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
			if err == nil {
				_, err = fc.Hello(ctx, "restore")
				defer fc.Close()
				time.Sleep(time.Second)
			}
			if errors.Is(err, proto.ErrBusy) {
				mu.Lock()
				busy++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if busy == 0 {
		t.Error("a flood of 20 connections against a cap of 12 was never told busy")
	}

	// Meanwhile the honest laptop backs up and restores.
	honest.run(t)
	honest.restoreAndCompare(t, "latest")

	select {
	case dur := <-cut:
		if dur > 25*time.Second {
			t.Errorf("the trickling client was cut only after %v", dur)
		}
	case <-time.After(40 * time.Second):
		t.Error("the trickling client was never cut off")
	}

	// A revoked laptop is refused at the handshake's first request.
	u, _ := d.Store.UserBySerial("EVIL")
	d.Store.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Revoked = true; return nil })
	rc, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err == nil {
		_, err = rc.Hello(ctx, "backup")
		rc.Close()
	}
	if !errors.Is(err, proto.ErrRevoked) {
		t.Errorf("revoked laptop: %v", err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > 512<<20 {
		t.Errorf("heap in use %d MiB after the hostile clients", ms.HeapInuse>>20)
	}
	if rep, err := d.Store.Check(ctx, store.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check after the hostile clients: %+v %v", rep, err)
	}
}

// TestAbandonedHelloFreesCapacity: laptops that ask for a session and hang
// up right after (a lid closed at the wrong moment) must not keep a place:
// an honest laptop is granted at once afterwards.
func TestAbandonedHelloFreesCapacity(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.Admission.MaxSessions = 2 })
	quitter := newLaptop(t, d, "QUITTER", 3)
	honest := newLaptop(t, d, "PATIENT", 4)
	key, err := quitter.st.Key()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.OpenRawStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st.Write(frame(1, []byte(`{"version":1,"purpose":"backup"}`)))
		st.Close()
		// The server has read the hello (and granted it: it is idle);
		// the laptop is gone before it uses the session.
		time.Sleep(15 * time.Millisecond)
		c.Close()
	}
	time.Sleep(200 * time.Millisecond) // the server sees the connections end
	res, err := agent.Run(context.Background(), honest.st, agent.RunOptions{Source: honest.src, Force: true, MaxSlotWait: time.Second})
	if err != nil || res.Outcome != agent.Done {
		t.Fatalf("after abandoned hellos a laptop was not granted: %v %+v", err, res)
	}
}
