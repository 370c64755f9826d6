package proto

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"testing"
	"time"
)

// TestBurstThenStallHoldsUploadMemory: TestHeaderOnlyMemoryHold shows a
// frame header alone reserves nothing. Here two laptops (two keys, the most
// each may hold is one largest frame) each send a blob frame's header and
// all of its payload but the last byte, as fast as the server reads, then
// send nothing more (the connection kept alive). Memory is reserved as the
// bytes arrive, so together they hold the server's whole upload memory; the
// minimum rate is judged on the frame's average since its start, so the
// ~16 MiB already sent buy them 16 MiB / MinRate of silence (at the default
// 4 KiB/s, 68 minutes). An honest laptop's small upload meanwhile waits for
// memory and fails as busy. A stalled frame should be cut within the
// payload allowance plus a short idle time, not after an hour.
func TestBurstThenStallHoldsUploadMemory(t *testing.T) {
	old := payloadGrace
	payloadGrace = time.Second
	t.Cleanup(func() { payloadGrace = old })
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	be := &sinkBackend{}
	ctx, addr, srvKey := serveSink(t, ServerConfig{Backend: be, Key: key, MemoryBudget: 2 * MaxBlobFrame})
	// The attackers hang up before the server's cleanup (which waits for
	// requests in progress).
	actx, hangUp := context.WithCancel(ctx)
	t.Cleanup(hangUp)
	sent := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			sent <- a3nBurstThenStall(actx, addr, srvKey)
		}()
	}
	for i := 0; i < 2; i++ {
		if err := <-sent; err != nil {
			t.Fatalf("attacker: %v", err)
		}
	}
	t.Logf("two frames of %d bytes sent but their last byte; now silent", MaxBlobFrame)
	time.Sleep(3 * time.Second) // past the payload grace (1 s here)
	hctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	start := time.Now()
	err = uploadRandom(hctx, addr, srvKey, Work{Bytes: 256 << 10, Files: 1}, 4, 9)
	t.Logf("honest 256 KiB upload: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Errorf("an honest 256 KiB upload failed while two stalled frames held the upload memory: %v", err)
	}
}

// a3nBurstThenStall opens a backup session with a new key and sends a
// largest blob frame but its last byte, leaving the connection open until
// ctx ends. It returns once the bytes are written.
func a3nBurstThenStall(ctx context.Context, addr string, srvKey ed25519.PublicKey) error {
	lkey, err := GenerateKey()
	if err != nil {
		return err
	}
	c, err := Dial(ctx, ClientConfig{Addr: addr, Key: lkey, ServerKey: srvKey})
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { c.Close() })
	c.Expect = Work{Bytes: 64 << 20, Files: 1}
	if _, err := c.Hello(ctx, "backup"); err != nil {
		return err
	}
	st, err := c.OpenRawStream(ctx)
	if err != nil {
		return err
	}
	hdr := []byte{0, 0, 0, 0, tPut}
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(MaxBlobFrame))
	hdr = append(hdr, tBlob)
	if _, err := st.Write(hdr); err != nil {
		return err
	}
	_, err = st.Write(make([]byte, MaxBlobFrame-1))
	return err
}
