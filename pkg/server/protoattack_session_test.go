package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestProtoAttackHalfOpenStreamHoldsThePlace: on a server with two
// session places (one kept for small jobs), two laptops of one device take
// both, a big backup and a restore, and then each opens one request stream
// on which it sends two bytes of a frame header and nothing more. A
// session that makes no request for SessionIdle gives its place up
// (TestIdleSessionsHoardEveryPlace); a request that never arrives is no
// request either, so after three SessionIdle periods an honest laptop must
// get a place and back up. (Each such stream lives for the connection's
// idle timeout, a minute; the laptop opens the next one before, and so
// holds the place for the whole session deadline, an hour.)
func TestProtoAttackHalfOpenStreamHoldsThePlace(t *testing.T) {
	const idle = 2 * time.Second
	d := startDaemon(t, func(c *server.Config) {
		c.Admission.MaxSessions = 2
		c.Admission.Hold = server.Duration(time.Second)
		c.Limits.SessionIdle = idle
	})
	honest := newLaptop(t, d, "PAHONESTH", 71)
	ctx := context.Background()
	held := 0
	for i, purpose := range []string{"backup", "restore"} {
		key := aaKey(t, d, fmt.Sprintf("PAEVILH%d", i))
		c := aaDial(t, d, key, 1, proto.Work{Bytes: 8 << 30, Files: 1})
		c.HoldFor = 500 * time.Millisecond
		if g, err := c.Hello(ctx, purpose); err != nil || !g.Granted {
			t.Logf("%s hello: %+v %v", purpose, g, err)
			continue
		}
		st, err := c.OpenRawStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.CancelWrite(0)
		st.Write([]byte{0, 0}) // half of a frame's length, then silence
		held++
	}
	if st := d.Server.Admission(false); held < 2 || st.Running < 2 {
		t.Fatalf("the attacker holds %d sessions (admission running %d); the attack did not run", held, st.Running)
	}
	time.Sleep(3 * idle)
	start := time.Now()
	res, err := agent.Run(ctx, honest.st, agent.RunOptions{Source: honest.src, Force: true, MaxSlotWait: 2 * time.Second})
	adm := d.Server.Admission(false)
	t.Logf("honest run %v after the attacker's %v of silence: %+v %v; admission running %d", time.Since(start).Round(time.Millisecond), 3*idle, res, err, adm.Running)
	if err != nil || res.Outcome != agent.Done {
		t.Errorf("sessions whose only request is two bytes of a header, silent for %v (idle limit %v), still hold every place: honest laptop %v (%v)", 3*idle, idle, res.Outcome, err)
	}
}

// TestProtoAttackRequestsOutOfOrder: a laptop's requests before any hello,
// after the session ended and in sessions of the other kind are refused
// as "no session" and store nothing; odd ref lists (none, more than the
// cap, a count that lies, an unknown blob type) are refused or answered
// without harm; a hello for a backup on a connection whose session is a
// restore is not answered "granted" while its uploads are refused. The
// server then serves an honest laptop and the store checks clean.
func TestProtoAttackRequestsOutOfOrder(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTO", 73)
	evil := newLaptop(t, d, "PAEVILO", 74)
	ctx := context.Background()
	key, _ := evil.st.Key()
	dial := func() *proto.Client {
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	data := []byte("a chunk sent before any hello")
	ch := rawChunk(data)
	tree := paFileTree(t, "f", data)
	put := append(frame(paPut, nil), append(paBlobFrame(blob.Chunk, false, uint32(len(data)), ch.ID, data), frame(paEnd, nil)...)...)
	commit := frame(paCommit, []byte(`{"root":"`+tree.ID.String()+`"}`))

	// Before any hello.
	c := dial()
	for name, req := range map[string][]byte{
		"need":   frame(paNeed, paRefs([]blob.Ref{ch.Ref})),
		"put":    put,
		"commit": commit,
		"fetch":  frame(paFetch, paRefs([]blob.Ref{ch.Ref})),
	} {
		if r := paRaw(t, c, req); r.typ != paError || r.kind != proto.KindNoSession {
			t.Errorf("%s before any hello answered frame %d kind %v %q, want no session", name, r.typ, r.kind, r.msg)
		}
	}
	if r := paRaw(t, c, frame(paList, nil)); r.typ != paListResp {
		t.Errorf("list before any hello answered frame %d %v %q", r.typ, r.kind, r.msg)
	}
	if u := paUsage(t, d, "PAEVILO"); u.Bytes != 0 || u.Blobs != 0 {
		t.Errorf("requests before any hello stored %+v", u)
	}

	// In a backup session: odd ref lists.
	if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("hello: %+v %v", g, err)
	}
	if r := paRaw(t, c, frame(paNeed, paRefs(nil))); r.typ != paNeedResp || len(r.body) != 2 {
		t.Errorf("need of no refs answered frame %d %v %q %x", r.typ, r.kind, r.msg, r.body)
	}
	many := make([]blob.Ref, proto.MaxRefs+1)
	for i := range many {
		many[i] = blob.Ref{Type: blob.Chunk, ID: chunk.Sum([]byte{byte(i), byte(i >> 8)})}
	}
	if r := paRaw(t, c, frame(paNeed, paRefs(many))); r.typ != paError || (r.kind != proto.KindTooLarge && r.kind != proto.KindBadRequest) {
		t.Errorf("need of %d refs answered frame %d %v %q", len(many), r.typ, r.kind, r.msg)
	}
	liar := paRefs(many[:10])
	liar[0], liar[1] = 0x0f, 0xff // claims 4095 refs, holds 10
	if r := paRaw(t, c, frame(paNeed, liar)); r.typ != paError || r.kind != proto.KindBadRequest {
		t.Errorf("need whose count lies answered frame %d %v %q", r.typ, r.kind, r.msg)
	}
	odd := paRefs(many[:1])
	odd[2] = 9 // no such blob type
	if r := paRaw(t, c, frame(paNeed, odd)); r.typ != paError || r.kind != proto.KindBadRequest {
		t.Errorf("need of blob type 9 answered frame %d %v %q", r.typ, r.kind, r.msg)
	}
	if r := paRaw(t, c, frame(paFetch, paRefs(nil))); r.typ != paEnd {
		t.Errorf("fetch of no refs answered frame %d %v %q", r.typ, r.kind, r.msg)
	}
	// A second hello in the session changes nothing; after the commit
	// that ends the session, uploads are refused.
	if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Errorf("a second hello in a granted session: %+v %v", g, err)
	}
	c.EndWithCommit = true
	if err := c.Put(ctx, []blob.Blob{ch, tree}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, tree.ID); err != nil {
		t.Fatal(err)
	}
	late := []byte("a chunk sent after the last commit")
	if r := paRaw(t, c, append(frame(paPut, nil), append(paBlobFrame(blob.Chunk, false, uint32(len(late)), chunk.Sum(late), late), frame(paEnd, nil)...)...)); r.typ != paError || r.kind != proto.KindNoSession {
		t.Errorf("put after the session's last commit answered frame %d %v %q", r.typ, r.kind, r.msg)
	}
	if r := paRaw(t, c, commit); r.typ != paError || r.kind != proto.KindNoSession {
		t.Errorf("commit after the session's last commit answered frame %d %v %q", r.typ, r.kind, r.msg)
	}

	// A restore session: no uploads, and no "granted" backup either.
	r := dial()
	if g, err := r.Hello(ctx, "restore"); err != nil || !g.Granted {
		t.Fatalf("restore hello: %+v %v", g, err)
	}
	if rr := paRaw(t, r, put); rr.typ != paError || rr.kind != proto.KindNoSession {
		t.Errorf("put in a restore session answered frame %d %v %q", rr.typ, rr.kind, rr.msg)
	}
	g, err := r.Hello(ctx, "backup")
	perr := r.Put(ctx, []blob.Blob{rawChunk(late)})
	if err == nil && g.Granted && perr != nil {
		t.Errorf("a backup hello on a restore session's connection was answered granted, then its upload was refused: %v", perr)
	}
	r.Close()
	c.Close()
	if st := d.Server.Admission(false); st.Running != 0 {
		time.Sleep(300 * time.Millisecond)
		if st = d.Server.Admission(false); st.Running != 0 {
			t.Errorf("after the attacker's connections ended admission counts %d sessions", st.Running)
		}
	}
	paHonest(t, honest, 30*time.Second)
	paCheckClean(t, d)
	if sns := d.Store.Snapshots(userBySerial(t, d, "PAEVILO").ID); len(sns) != 1 {
		t.Errorf("the attacker has %d snapshots, want the 1 committed", len(sns))
	}
}

// TestProtoAttackTypeConfusion: a laptop names, where a directory goes,
// the ID of a chunk it holds (whose bytes are a valid tree); where a
// file's chunk goes, the ID of a tree it holds; as the root, a chunk's
// ID; and where a directory goes, another laptop's tree. Every commit is
// refused as "not among this laptop's uploads", in the same words as for
// an ID nobody has, and nothing of the other laptop's reaches it by a
// fetch of either type.
func TestProtoAttackTypeConfusion(t *testing.T) {
	d := startDaemon(t, nil)
	a := newLaptop(t, d, "PAVICTIMT", 75)
	evil := newLaptop(t, d, "PAEVILT", 76)
	a.run(t)
	ctx := context.Background()
	ua := userBySerial(t, d, "PAVICTIMT")
	sn, err := d.Store.Snapshot(ua.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	var victimDir chunk.ID
	root, err := d.Store.ReadTree(ctx, sn.Root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range root.Entries {
		if e.Type == manifest.Dir {
			victimDir = e.Subtree
			break
		}
	}
	if victimDir == (chunk.ID{}) {
		t.Fatal("the victim's Journal has no directory")
	}

	c := dialLaptop(t, d, evil)
	body := []byte("a file that is also its own tree")
	inner := paFileTree(t, "x", body)                      // a valid tree encoding...
	asChunk := rawChunk(inner.Data)                        // ...uploaded as a chunk only
	realTree := paFileTree(t, "y", []byte("content of y")) // a tree uploaded as a tree
	yChunk := rawChunk([]byte("content of y"))             // and its chunk
	if err := c.Put(ctx, []blob.Blob{asChunk, rawChunk(body), realTree, yChunk}); err != nil {
		t.Fatal(err)
	}
	nobody := chunk.Sum([]byte("an ID nobody has"))
	dirOf := func(sub chunk.ID) blob.Blob {
		return paTree(t, &manifest.Tree{Entries: []manifest.Entry{{Name: "d", Type: manifest.Dir, Mode: 0o755, Subtree: sub}}})
	}
	fileOf := func(id chunk.ID, size int) blob.Blob {
		return paTree(t, &manifest.Tree{Entries: []manifest.Entry{{Name: "f", Type: manifest.File, Mode: 0o644, Size: int64(size), Chunks: []chunk.ID{id}}}})
	}
	probe := func(what string, top blob.Blob, id chunk.ID) string {
		t.Helper()
		if top.Data != nil {
			if err := c.Put(ctx, []blob.Blob{top}); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		_, err := c.Commit(ctx, top.ID)
		if err == nil {
			t.Errorf("%s: the commit was accepted", what)
			return ""
		}
		if !strings.Contains(err.Error(), "not among this laptop's uploads") {
			t.Errorf("%s: %v", what, err)
		}
		m := strings.ReplaceAll(strings.ReplaceAll(err.Error(), id.Short(), "ID"), id.String(), "ID")
		return m + " [" + proto.KindOf(err).String() + "]"
	}
	subChunk := probe("a directory whose subtree is a chunk's ID", dirOf(asChunk.ID), asChunk.ID)
	subNobody := probe("a directory whose subtree nobody has", dirOf(nobody), nobody)
	subVictim := probe("a directory whose subtree is another laptop's tree", dirOf(victimDir), victimDir)
	fileTree := probe("a file whose chunk is a tree's ID", fileOf(realTree.ID, len(realTree.Data)), realTree.ID)
	fileNobody := probe("a file whose chunk nobody has", fileOf(nobody, len(realTree.Data)), nobody)
	rootChunk := probe("a root that is a chunk's ID", blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: yChunk.ID}}, yChunk.ID)
	rootVictim := probe("a root that is another laptop's root", blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: sn.Root}}, sn.Root)
	if subVictim != subNobody || subChunk != subNobody {
		t.Errorf("refusals differ:\n  victim's tree: %s\n  nobody's:      %s\n  a chunk's ID:  %s", subVictim, subNobody, subChunk)
	}
	if fileTree != fileNobody {
		t.Errorf("refusals differ:\n  a tree's ID as a chunk: %s\n  nobody's chunk:        %s", fileTree, fileNobody)
	}
	if rootChunk != rootVictim {
		t.Errorf("refusals differ:\n  a chunk's ID as root: %s\n  the victim's root:    %s", rootChunk, rootVictim)
	}
	// Fetching across the name spaces: nothing comes back.
	for _, r := range []blob.Ref{{Type: blob.Tree, ID: asChunk.ID}, {Type: blob.Chunk, ID: realTree.ID}, {Type: blob.Tree, ID: victimDir}, {Type: blob.Chunk, ID: victimDir}, {Type: blob.Tree, ID: sn.Root}} {
		got := 0
		err := c.Fetch(ctx, []blob.Ref{r}, func(blob.Blob) error { got++; return nil })
		if got != 0 || !errorsIsNotFound(err) {
			t.Errorf("fetch of %s: %d blobs, %v", r, got, err)
		}
	}
	// The laptop's own valid tree still commits.
	if _, err := c.Commit(ctx, realTree.ID); err != nil {
		t.Errorf("the laptop's own tree: %v", err)
	}
	c.Close()
	a.restoreAndCompare(t, "latest")
	paCheckClean(t, d)
}

func errorsIsNotFound(err error) bool { return proto.KindOf(err) == proto.KindNotFound }
