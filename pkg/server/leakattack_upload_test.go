package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestLeakAttackAbandonedUploads: laptops are closed, put to sleep or
// carried out of range in the middle of an upload every school day: the
// laptop's run is cancelled half way through a Put; the connection is
// closed in the middle of a blob frame; a stream is reset in the middle of
// a blob while the connection stays open. Each time, the daemon lets go of
// what the upload held (its goroutines, the frame memory it reserved for
// the key, descriptors) and, after hundreds of them, holds what it held
// before, and the same laptop's full upload is still accepted.
func TestLeakAttackAbandonedUploads(t *testing.T) {
	ctx := context.Background()
	r := randFor(406)
	blobs := make([]blob.Blob, 6)
	for i := range blobs {
		data := journalgen.Random(r, 256<<10)
		blobs[i] = blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
	}
	half := paBlobFrame(blob.Chunk, false, uint32(len(blobs[0].Data)), blobs[0].ID, blobs[0].Data)
	half = append(frame(paPut, nil), half[:len(half)/2]...)
	dial := func(t *testing.T, d *server.Daemon, l *laptop) *proto.Client {
		key, _ := l.st.Key()
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			c.Close()
			t.Fatalf("hello: %+v %v", g, err)
		}
		return c
	}
	cases := []struct {
		name string
		reps int
		op   func(t *testing.T, d *server.Daemon, l *laptop, c **proto.Client)
	}{
		{"run cancelled mid-Put", 200, func(t *testing.T, d *server.Daemon, l *laptop, _ **proto.Client) {
			c := dial(t, d, l)
			defer c.Close()
			pctx, cancel := context.WithTimeout(ctx, time.Duration(1+r.IntN(4))*time.Millisecond)
			defer cancel()
			c.Put(pctx, blobs)
		}},
		{"connection closed mid-blob", 200, func(t *testing.T, d *server.Daemon, l *laptop, _ **proto.Client) {
			c := dial(t, d, l)
			defer c.Close()
			st, err := c.OpenRawStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st.Write(half)
			time.Sleep(time.Millisecond)
		}},
		{"stream reset mid-blob, connection kept", 300, func(t *testing.T, d *server.Daemon, l *laptop, cp **proto.Client) {
			if *cp == nil {
				*cp = dial(t, d, l)
			}
			st, err := (*cp).OpenRawStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st.Write(half)
			time.Sleep(time.Millisecond)
			st.CancelWrite(0)
			st.CancelRead(0)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, nil)
			l := newLaptop(t, d, "LEAKUP01", 407)
			l.run(t)
			var kept *proto.Client
			defer func() {
				if kept != nil {
					kept.Close()
				}
			}()
			for range 5 {
				tc.op(t, d, l, &kept)
			}
			time.Sleep(300 * time.Millisecond)
			base := laMeasure(t)
			took := laRepeat(t, tc.reps, func(int) { tc.op(t, d, l, &kept) })
			t.Logf("%d × %s in %v", tc.reps, tc.name, took.Round(time.Millisecond))
			laCheck(t, tc.name, tc.reps, base, 5*time.Second)
			// The key's frame memory was given back: the whole upload fits.
			if kept == nil {
				kept = dial(t, d, l)
			}
			if err := kept.Put(ctx, blobs); err != nil {
				t.Errorf("after %d abandoned uploads, the laptop's full upload: %v", tc.reps, err)
			}
			kept.Close()
			kept = nil
			l.run(t)
		})
	}
}
