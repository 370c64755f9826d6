package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestProtoAttackErrorFrameAsRequest: a laptop sends, as its request, an
// error frame of its own ("internal error" and "index damaged", with words
// telling staff to repair the index). The server must answer it as a bad
// request and must not count or log it as its own failure: staff read
// xs_errors_total and the daemon's error log to decide what to repair.
func TestProtoAttackErrorFrameAsRequest(t *testing.T) {
	d, lg := paStartDaemonLogged(t, nil)
	honest := newLaptop(t, d, "PAHONESTE", 61)
	evil := newLaptop(t, d, "PAEVILE", 62)
	c := dialLaptop(t, d, evil)
	const bait = "the index is damaged: stop the daemon and run xs-admin check --repair now"
	for _, k := range []proto.Kind{proto.KindInternal, proto.KindIndexDamaged} {
		r := paRaw(t, c, frame(paError, append([]byte{byte(k)}, bait...)))
		if r.typ != paError || r.kind != proto.KindBadRequest {
			t.Errorf("an error frame of kind %v as a request answered frame %d %v %q, want a bad request", k, r.typ, r.kind, r.msg)
		}
	}
	v := d.Metrics.Values()
	for _, k := range []proto.Kind{proto.KindInternal, proto.KindIndexDamaged} {
		if n := v.Errors[k.String()]; n > 0 {
			t.Errorf("xs_errors_total{kind=%q} = %d after a laptop sent error frames of that kind", k, n)
		}
	}
	for _, line := range strings.Split(lg.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "check --repair now") {
			t.Errorf("the daemon logged a laptop's words as its own error: %s", line)
		}
	}
	paHonest(t, honest, 30*time.Second)
}

// TestProtoAttackStreamResetFlood: a laptop in a session opens two
// thousand upload streams, eight at a time, each starting a 1 MiB blob
// frame, sending 16 KiB of it and resetting the stream. Every stream's
// memory and stream credit come back: the flood ends within seconds, the
// same laptop then uploads a chunk of the largest size, and an honest
// laptop backs up and restores; the store checks clean.
func TestProtoAttackStreamResetFlood(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTR", 63)
	evil := newLaptop(t, d, "PAEVILR", 64)
	c := dialLaptop(t, d, evil)
	ctx := context.Background()
	hdr := frame(paPut, nil)
	hdr = binary.BigEndian.AppendUint32(hdr, 1<<20)
	hdr = append(hdr, paBlob)
	piece := append(hdr, make([]byte, 16<<10)...)
	var opened, stuck atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				st, err := c.OpenRawStream(sctx)
				cancel()
				if err != nil {
					stuck.Add(1)
					return
				}
				opened.Add(1)
				st.Write(piece)
				time.Sleep(time.Millisecond)
				st.CancelWrite(0)
				st.CancelRead(0)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d streams opened and reset in %v; %d workers found no stream credit for 3 s", opened.Load(), took.Round(time.Millisecond), stuck.Load())
	if stuck.Load() > 0 || opened.Load() < 2000 {
		t.Errorf("after %d reset streams the connection had no stream credit left", opened.Load())
	}
	time.Sleep(200 * time.Millisecond)
	big := journalgen.Random(randFor(65), chunk.MaxChunkSize)
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ { // 32 MiB: more than the share left if the resets' 64 KiB pieces leaked
		b := append([]byte(nil), big...)
		b[0] = byte(i)
		if err := c.Put(pctx, []blob.Blob{rawChunk(b)}); err != nil {
			t.Fatalf("upload %d of 8 MiB after the flood: %v", i, err)
		}
	}
	paHonest(t, honest, 30*time.Second)
	paCheckClean(t, d)
}

// TestProtoAttackReconnectLoop: a laptop connects, asks for a backup
// session, uploads a small chunk and hangs up, over and over from four
// goroutines for three seconds, while an honest laptop backs up and
// restores. Afterwards no connection and no session is left counted, the
// honest laptop backs up again at once, and the store checks clean.
func TestProtoAttackReconnectLoop(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTC", 66)
	evil := newLaptop(t, d, "PAEVILC", 67)
	key, _ := evil.st.Key()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var loops, refused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey(), Timeout: 2 * time.Second})
				if err != nil {
					refused.Add(1)
					continue
				}
				c.HoldFor = 100 * time.Millisecond
				if g, err := c.Hello(ctx, "backup"); err == nil && g.Granted {
					b := fmt.Appendf(nil, "loop %d %d", w, i)
					c.Put(ctx, []blob.Blob{rawChunk(b)})
				} else if errors.Is(err, proto.ErrBusy) {
					refused.Add(1)
				}
				c.Close()
				loops.Add(1)
			}
		}()
	}
	paHonest(t, honest, 20*time.Second)
	wg.Wait()
	t.Logf("%d connect-hello-hang-up loops (%d refused as busy)", loops.Load(), refused.Load())
	if loops.Load() < 20 {
		t.Fatalf("only %d loops ran; the attack did not run", loops.Load())
	}
	ok := aaWaitFor(3*time.Second, func() bool {
		return d.Server.Admission(false).Running == 0 && d.Metrics.Values().ConnsActive == 0
	})
	if !ok {
		t.Errorf("after every connection of the loop ended: admission running %d, connections active %d", d.Server.Admission(false).Running, d.Metrics.Values().ConnsActive)
	}
	start := time.Now()
	paHonest(t, honest, 20*time.Second)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the honest laptop's next backup took %v", took)
	}
	paCheckClean(t, d)
}

// TestProtoAttackHardQuotaExact: a laptop whose hard quota is exactly the
// stored size of one snapshot (its chunks and its tree) uploads and
// commits it, and gets it back byte for byte; one more byte is refused as
// over quota, and so are eight uploads racing on eight streams, without
// the packs on disk growing; the laptop's usage stays exactly its quota.
func TestProtoAttackHardQuotaExact(t *testing.T) {
	d := startDaemon(t, nil)
	honest := newLaptop(t, d, "PAHONESTQ", 68)
	evil := newLaptop(t, d, "PAEVILQ", 69)
	ctx := context.Background()
	a := journalgen.Random(randFor(70), 300<<10)
	b := journalgen.Random(randFor(71), 123457)
	tree := paFileTree(t, "a.ogg", a, b)
	quota := int64(len(a) + len(b) + len(tree.Data))
	u := userBySerial(t, d, "PAEVILQ")
	if _, err := d.Store.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Quota = &store.Quota{Hard: quota}; return nil }); err != nil {
		t.Fatal(err)
	}
	c := dialLaptop(t, d, evil)
	if err := c.Put(ctx, []blob.Blob{rawChunk(a), rawChunk(b), tree}); err != nil {
		t.Fatalf("uploads filling the hard quota exactly: %v", err)
	}
	if _, err := c.Commit(ctx, tree.ID); err != nil {
		t.Fatalf("commit at exactly the hard quota: %v", err)
	}
	if us := paUsage(t, d, "PAEVILQ"); us.Bytes != quota {
		t.Errorf("usage %d, want exactly the quota %d", us.Bytes, quota)
	}
	if err := c.Put(ctx, []blob.Blob{rawChunk([]byte{1})}); !errors.Is(err, proto.ErrOverQuota) {
		t.Errorf("one byte past the hard quota: %v", err)
	}
	packs := paPacks(d)
	var wg sync.WaitGroup
	var stored atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := journalgen.Random(randFor(uint64(200+i)), 256<<10)
			err := c.Put(ctx, []blob.Blob{rawChunk(data)})
			if err == nil {
				stored.Add(1)
			} else if !errors.Is(err, proto.ErrOverQuota) {
				t.Errorf("racing upload %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if stored.Load() > 0 {
		t.Errorf("%d uploads past a full hard quota were stored", stored.Load())
	}
	if grown := paPacks(d) - packs; grown > 0 {
		t.Errorf("refused uploads at a full quota grew the packs by %d bytes", grown)
	}
	if us := paUsage(t, d, "PAEVILQ"); us.Bytes != quota {
		t.Errorf("usage %d after the refusals, want exactly the quota %d", us.Bytes, quota)
	}
	var got [][]byte
	err := c.Fetch(ctx, []blob.Ref{rawChunk(a).Ref, rawChunk(b).Ref}, func(bl blob.Blob) error {
		got = append(got, append([]byte(nil), bl.Data...))
		return nil
	})
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) {
		t.Errorf("the snapshot at the quota did not come back byte for byte: %v", err)
	}
	paHonest(t, honest, 30*time.Second)
	paCheckClean(t, d)
}
