package server_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// paHeap is the heap in use after a collection.
func paHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestProtoAttackFetchNeverReadHoldsServerMemory: a registered laptop
// uploads one chunk of the largest size a chunk may have (8 MiB), then
// opens every connection and stream it may (4 connections of 16 streams),
// starts a restore session on each and asks on every stream to fetch that
// chunk sixteen times, and never reads the answers. Uploads are held to a
// quarter of the server's frame memory per laptop (Limits.MemoryPerKey);
// downloads must be bounded too: one laptop must not make the server hold
// hundreds of MiB (a school server has 1 GiB for a thousand laptops), and
// an honest laptop backs up and restores meanwhile.
func TestProtoAttackFetchNeverReadHoldsServerMemory(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTM", 81)
	evil := newLaptop(t, d, "PAEVILM", 82)
	ctx := context.Background()

	big := journalgen.Random(randFor(83), chunk.MaxChunkSize)
	up := dialLaptop(t, d, evil)
	if err := up.Put(ctx, []blob.Blob{rawChunk(big)}); err != nil {
		t.Fatalf("upload of a chunk of exactly %d bytes: %v", chunk.MaxChunkSize, err)
	}
	up.Close()
	time.Sleep(100 * time.Millisecond) // the server sees the connection end
	before := paHeap()

	key, _ := evil.st.Key()
	ref := blob.Ref{Type: blob.Chunk, ID: chunk.Sum(big)}
	refs := make([]blob.Ref, 16)
	for i := range refs {
		refs[i] = ref
	}
	req := frame(paFetch, paRefs(refs))
	var streams []*quic.Stream
	for i := 0; i < 4; i++ {
		c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
		if err != nil {
			t.Logf("connection %d: %v", i, err)
			continue
		}
		defer c.Close()
		// Once this laptop's share of the server's memory is held by its
		// own unread downloads, its next requests wait for it (and end
		// with busy after 30 s): that is the bound, and it costs only this
		// laptop.
		hctx, hcancel := context.WithTimeout(ctx, 3*time.Second)
		g, err := c.Hello(hctx, "restore")
		hcancel()
		if err != nil || !g.Granted {
			t.Logf("restore hello on connection %d: %+v %v", i, g, err)
			continue
		}
		for j := 0; j < 15; j++ { // the hello's stream is still counted for a moment
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := c.OpenRawStream(sctx)
			cancel()
			if err != nil {
				break
			}
			st.Write(req)
			st.Close()
			streams = append(streams, st)
		}
	}
	if len(streams) < 8 { // (once its share is held, its next hellos wait: fewer streams open)
		t.Fatalf("only %d fetch streams opened; the attack did not run", len(streams))
	}
	time.Sleep(2 * time.Second) // the server reads the chunks and writes what flow control lets through
	during := paHeap()
	grew := int64(during) - int64(before)
	t.Logf("%d fetch streams never read: server heap grew by %d MiB (from %d MiB)", len(streams), grew>>20, before>>20)
	if grew > 128<<20 {
		t.Errorf("one laptop fetching its own %d MiB chunk on %d streams and never reading made the server hold %d MiB more heap; its uploads may hold %d MiB",
			chunk.MaxChunkSize>>20, len(streams), grew>>20, (256<<20)/4>>20)
	}
	paHonest(t, honest, 30*time.Second)
	for _, st := range streams {
		st.CancelRead(0)
	}
	paCheckClean(t, d)
}
