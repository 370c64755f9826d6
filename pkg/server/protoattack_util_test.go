package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Frame types of the wire format (pkg/proto/frame.go), for the raw
// requests of a hostile laptop.
const (
	paHello      = 1
	paHelloResp  = 2
	paNeed       = 5
	paNeedResp   = 6
	paBlob       = 7
	paEnd        = 8
	paOK         = 9
	paCommit     = 10
	paCommitResp = 11
	paList       = 12
	paListResp   = 13
	paFetch      = 14
	paError      = 15
	paPut        = 16
)

// paReply is the first frame of a server's answer on a raw stream: its
// type, and for an error frame its kind and message.
type paReply struct {
	typ  byte
	kind proto.Kind
	msg  string
	body []byte
}

// paRaw sends data on a fresh stream of c, closes the stream's write side
// and reads the first frame of the answer (typ 0 if none came).
func paRaw(t *testing.T, c *proto.Client, data []byte) paReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := c.OpenRawStream(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	defer st.CancelRead(0)
	st.Write(data)
	st.Close()
	st.SetReadDeadline(time.Now().Add(12 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		return paReply{}
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	body, _ := io.ReadAll(io.LimitReader(st, int64(min(n, 1<<20))))
	r := paReply{typ: hdr[4], body: body}
	if r.typ == paError && len(body) > 0 {
		r.kind, r.msg = proto.Kind(body[0]), string(body[1:])
	}
	return r
}

// paRefs encodes a ref list as Need and Fetch carry it.
func paRefs(refs []blob.Ref) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(refs)))
	for _, r := range refs {
		b = append(b, byte(r.Type))
		b = append(b, r.ID[:]...)
	}
	return b
}

// paBlobFrame is a blob frame with a header the caller chooses.
func paBlobFrame(typ blob.Type, compressed bool, rawLen uint32, id chunk.ID, data []byte) []byte {
	h := make([]byte, 38, 38+len(data))
	h[0] = byte(typ)
	if compressed {
		h[1] = 1
	}
	binary.BigEndian.PutUint32(h[2:], rawLen)
	copy(h[6:], id[:])
	return frame(paBlob, append(h, data...))
}

// paTree encodes t as a tree blob.
func paTree(t *testing.T, tr *manifest.Tree) blob.Blob {
	t.Helper()
	enc, err := manifest.Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	return blob.Blob{Ref: blob.Ref{Type: blob.Tree, ID: chunk.Sum(enc)}, Data: enc, RawLen: len(enc)}
}

// paFileTree is a tree of one file name made of the given chunks.
func paFileTree(t *testing.T, name string, chunks ...[]byte) blob.Blob {
	t.Helper()
	e := manifest.Entry{Name: name, Type: manifest.File, Mode: 0o644}
	for _, c := range chunks {
		e.Chunks = append(e.Chunks, chunk.Sum(c))
		e.Size += int64(len(c))
	}
	return paTree(t, &manifest.Tree{Entries: []manifest.Entry{e}})
}

// paCheckClean fails unless the store's check, reading every byte, is clean.
func paCheckClean(t *testing.T, d *server.Daemon) {
	t.Helper()
	rep, err := d.Store.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Errorf("check after the attack: %+v %v", rep, err)
	}
}

// paUsage is what the store charges serial.
func paUsage(t *testing.T, d *server.Daemon, serial string) store.Usage {
	t.Helper()
	u, err := d.Store.Usage(context.Background(), userBySerial(t, d, serial).ID)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// paHonest: the honest laptop changes a few documents, backs up and
// restores byte for byte, within limit.
func paHonest(t *testing.T, l *laptop, limit time.Duration) {
	t.Helper()
	honestMeanwhile(t, l, limit)
}

// paPacks is the bytes of the store's pack files.
func paPacks(d *server.Daemon) int64 { return dirBytes(filepath.Join(d.Config.Data, "packs")) }

// paLog collects a daemon's log lines.
type paLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *paLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *paLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// paStartDaemonLogged is startDaemon with the daemon's log kept.
func paStartDaemonLogged(t *testing.T, mod func(*server.Config)) (*server.Daemon, *paLog) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfg.RestorePage.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	lg := &paLog{}
	d, stop := runDaemonLog(t, cfg, slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return d, lg
}
