package server_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// aaKey registers a fresh key as serial (open registration approves it).
func aaKey(t *testing.T, d *server.Daemon, serial string) ed25519.PrivateKey {
	t.Helper()
	key := freshKey()
	res, err := proto.Register(context.Background(), d.Addr.String(), key, serial, "")
	if err != nil || !res.Approved {
		t.Fatalf("register %s: %+v %v", serial, res, err)
	}
	return key
}

// aaDial opens a connection of key (streams: parallel uploads per Put).
func aaDial(t *testing.T, d *server.Daemon, key ed25519.PrivateKey, streams int, expect proto.Work) *proto.Client {
	t.Helper()
	c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey(), Streams: streams})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Expect = expect
	return c
}

// aaBlobs makes n fresh random chunks of size bytes each (incompressible,
// so every byte crosses the wire).
func aaBlobs(r *rand.Rand, n, size int) []blob.Blob {
	out := make([]blob.Blob, n)
	for i := range out {
		data := make([]byte, size)
		for j := 0; j < size; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		out[i] = blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: size}
	}
	return out
}

// aaPutLoop uploads fresh blobs (batch of n chunks of size bytes per Put)
// on c until ctx ends, adding the bytes of every Put the server
// acknowledged to got. before, if set, runs before each Put (a new
// session, say); it returns false to stop.
func aaPutLoop(ctx context.Context, t *testing.T, c *proto.Client, seed uint64, n, size int, got *atomic.Int64, before func() bool) {
	r := rand.New(rand.NewPCG(seed, 3))
	for ctx.Err() == nil {
		if before != nil && !before() {
			return
		}
		bs := aaBlobs(r, n, size)
		err := c.Put(ctx, bs)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				t.Logf("put: %v", err)
				return
			}
			return
		}
		got.Add(int64(n * size))
	}
}

// aaWaitFor polls cond until it holds or limit passes.
func aaWaitFor(limit time.Duration, cond func() bool) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
