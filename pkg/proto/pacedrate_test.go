package proto

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// sinkBackend is a Backend that keeps nothing: every laptop is account 1,
// every chunk is needed, uploads are counted and dropped.
type sinkBackend struct {
	got atomic.Int64
	// refuse, if set, may refuse a Put of blobs.
	refuse func(blobs []blob.Blob) error
}

func (*sinkBackend) Params() chunk.Params { return chunk.DefaultParams() }
func (*sinkBackend) Register(context.Context, RegisterRequest) (RegisterResult, error) {
	return RegisterResult{}, Errorf(KindBadRequest, "no registration here")
}
func (*sinkBackend) Account(context.Context, ed25519.PublicKey) (Account, error) {
	return Account{ID: 1, Serial: "SINK", Approved: true}, nil
}
func (*sinkBackend) Quota(context.Context, uint64) (QuotaStatus, error) { return QuotaStatus{}, nil }
func (*sinkBackend) Need(_ context.Context, _ uint64, refs []blob.Ref) ([]bool, error) {
	need := make([]bool, len(refs))
	for i := range need {
		need[i] = true
	}
	return need, nil
}
func (b *sinkBackend) Put(_ context.Context, _ uint64, blobs []blob.Blob) error {
	if b.refuse != nil {
		if err := b.refuse(blobs); err != nil {
			return err
		}
	}
	for i := range blobs {
		b.got.Add(int64(len(blobs[i].Data)))
	}
	return nil
}
func (*sinkBackend) Commit(context.Context, uint64, chunk.ID, CommitInfo) (SnapshotInfo, error) {
	return SnapshotInfo{}, nil
}
func (*sinkBackend) Snapshots(context.Context, uint64) ([]SnapshotInfo, error) { return nil, nil }
func (*sinkBackend) Fetch(context.Context, uint64, blob.Ref) (blob.Blob, error) {
	return blob.Blob{}, Errorf(KindNotFound, "nothing is kept here")
}
func (*sinkBackend) Damaged(context.Context, uint64) ([]blob.Ref, bool, error) {
	return nil, false, nil
}
func (*sinkBackend) BeginSession(uint64) func() { return func() {} }

// TestPacedUploadIsNotTooSlow: uploads that the server itself slows below
// the minimum rate are not cut for being slow. Two laptops upload at once
// through a pace far below the minimum rate, over several streams each,
// into a server whose frame memory holds less than their uploads: a piece
// waits at the pacer, for the flow-control credit its connection's other
// streams hold, or for memory the other laptop's batches hold, and every
// such wait is the server's time, not the laptop's. (Found by the school
// morning with a class's download: first backups cut as "too slow" while
// dozens of sessions shared a slow pace and the server's upload memory.)
func TestPacedUploadIsNotTooSlow(t *testing.T) {
	old := payloadGrace
	payloadGrace = 500 * time.Millisecond
	t.Cleanup(func() { payloadGrace = old })

	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	be := &sinkBackend{}
	const capRate = 4 << 20                                                                  // what the server reads from all laptops, bytes/s
	ctx, addr, srvKey := serveSink(t, ServerConfig{Backend: be, Key: key, MinRate: 16 << 20, // 4× the cap
		MemoryBudget: MaxBlobFrame, // ~16 MiB: less than the two uploads
		Pacing:       PacingConfig{TargetDelay: -1, Cap: func(time.Time) int64 { return capRate }}})

	// Each laptop: 12 MiB in one Put, 4 streams of 3 MiB, each stream's
	// blobs held by the server until its request ends; a first backup: the
	// bulk line.
	const blobs, size = 192, 64 << 10
	start := time.Now()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			errs <- uploadRandom(ctx, addr, srvKey, Work{Bytes: 64 << 20, Files: 10}, blobs, uint64(i+1))
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("an upload the server itself slowed was refused: %v", err)
		}
	}
	took := time.Since(start)
	if got := be.got.Load(); got != 2*blobs*size {
		t.Fatalf("the server received %d bytes, want %d", got, 2*blobs*size)
	}
	// The pace really held them far below the minimum rate (else this
	// test proves nothing).
	if rate := float64(2*blobs*size) / took.Seconds(); rate > 2*capRate {
		t.Fatalf("24 MiB in %v (%.1f MiB/s): not paced to the %d MiB/s cap", took, rate/(1<<20), capRate>>20)
	}
	t.Logf("two laptops' 24 MiB through a %d MiB/s pace in %v (minimum rate %d MiB/s per stream)", capRate>>20, took, 16)
}

// TestSpillRefusedEndsTheUpload: when an upload that would wait for memory
// stores what it holds first and the store refuses it (a quota reached, a
// disk full), the laptop gets that error, not a hang or "busy", and the
// memory is all given back: the next upload goes through.
func TestSpillRefusedEndsTheUpload(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	const perStream = 96 // blobs of 64 KiB: 6 MiB a stream, four streams
	var refusing atomic.Bool
	refusing.Store(true)
	be := &sinkBackend{refuse: func(blobs []blob.Blob) error {
		// A stream's whole request comes at its end; fewer blobs can only
		// be a spill.
		if refusing.Load() && len(blobs) < perStream {
			return Errorf(KindOverQuota, "quota reached while spilling")
		}
		return nil
	}}
	ctx, addr, srvKey := serveSink(t, ServerConfig{Backend: be, Key: key, MemoryBudget: MaxBlobFrame}) // ~16 MiB: less than 24
	upload := func(n int, seed uint64) error {
		return uploadRandom(ctx, addr, srvKey, Work{Bytes: int64(n) << 16, Files: 1}, n, seed)
	}
	if err := upload(4*perStream, 1); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("24 MiB into 16 MiB of memory, spills refused: %v; want the store's refusal", err)
	}
	refusing.Store(false)
	if err := upload(4*perStream, 2); err != nil {
		t.Fatalf("the next upload, spills accepted: %v", err)
	}
}

// serveSink serves cfg on a loopback UDP port until the test ends and
// returns a context that ends with it, the address and the server's key.
func serveSink(t *testing.T, cfg ServerConfig) (context.Context, string, ed25519.PublicKey) {
	t.Helper()
	ctx, addr, s := startServer(t, cfg)
	return ctx, addr, s.PublicKey()
}

// startServer serves cfg on a loopback UDP port until the test ends (then
// shuts it down) and returns the server itself, for tests that stop it.
func startServer(t *testing.T, cfg ServerConfig) (context.Context, string, *Server) {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, pc) }()
	t.Cleanup(func() {
		s.Shutdown(context.Background())
		cancel()
		<-served
		pc.Close()
	})
	return ctx, pc.LocalAddr().String(), s
}

// uploadRandom is a new laptop's session on 4 streams: a hello expecting
// work, then one Put of n blobs of 64 KiB of random bytes from seed.
func uploadRandom(ctx context.Context, addr string, srvKey ed25519.PublicKey, work Work, n int, seed uint64) error {
	lkey, err := GenerateKey()
	if err != nil {
		return err
	}
	c, err := Dial(ctx, ClientConfig{Addr: addr, Key: lkey, ServerKey: srvKey, Streams: 4})
	if err != nil {
		return err
	}
	defer c.Close()
	c.Expect = work
	if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
		return fmt.Errorf("hello: %+v %v", g, err)
	}
	r := rand.New(rand.NewPCG(seed, 3))
	bs := make([]blob.Blob, n)
	for i := range bs {
		data := make([]byte, 64<<10)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		bs[i] = blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
	}
	return c.Put(ctx, bs)
}
