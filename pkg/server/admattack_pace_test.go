package server_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// aaPacedDaemon is a daemon whose pacer is a plain hard cap of rate bytes
// per second (no delay controller: loopback round trips on a loaded
// machine do not move it), so that the pacer is the bottleneck and what
// each laptop gets is its share of it.
func aaPacedDaemon(t *testing.T, rate int64) *server.Daemon {
	return startDaemon(t, func(c *server.Config) {
		c.Traffic.TargetDelay = 0
		c.Traffic.Rate = server.Rate(rate)
	})
}

const aaChunk = 256 << 10

// TestAdmAttackSmallLineRenewedByBye: a laptop claims a tiny backup
// (Expect 1 KiB), so its session's first SmallBytes (4 MiB) are read in
// the pacer's small line, ahead of every big backup's bytes. The server
// means this to be bounded ("a laptop that claims little and sends much is
// paced like the others once past it"), but the allowance is given again
// to every new session: the laptop sends 3 MiB, says bye, says hello
// again (granted at once: the small lane is free) and sends 3 MiB more, on
// one connection. Meanwhile an honest first backup (Expect 64 MiB, four
// uploads in parallel) shares a 2 MiB/s pace with it. Once past its first
// 4 MiB the liar should be paced like the honest laptop, so over 10 s the
// honest laptop should get a fair part of the 20 MiB (we ask a quarter);
// it gets almost nothing.
func TestAdmAttackSmallLineRenewedByBye(t *testing.T) {
	h, total := aaByeLoop(t, proto.Work{Bytes: 1 << 10, Files: 1})
	if h*4 < total {
		t.Errorf("the honest first backup got %.0f%% of the pace (%.1f of %.1f MiB): a laptop claiming a tiny backup renews its small-line allowance with every bye+hello and keeps big backups waiting",
			100*float64(h)/float64(total), float64(h)/(1<<20), float64(total)/(1<<20))
	}
}

// TestAdmAttackByeLoopHonestClaimIsFair is the control for
// TestAdmAttackSmallLineRenewedByBye: the same bye+hello loop claiming
// what it really sends (a big backup) gets no more than its share, so the
// measurement itself is fair.
func TestAdmAttackByeLoopHonestClaimIsFair(t *testing.T) {
	h, total := aaByeLoop(t, proto.Work{Bytes: 64 << 20, Files: 100})
	if h*4 < total {
		t.Errorf("the honest first backup got %.0f%% of the pace against a laptop that claims what it sends", 100*float64(h)/float64(total))
	}
}

// aaByeLoop runs an honest first backup for 10 s beside a laptop that
// claims claim and loops hello, a 3 MiB upload, bye; it returns the
// honest laptop's bytes and everyone's.
func aaByeLoop(t *testing.T, claim proto.Work) (honestBytes, total int64) {
	const rate = 2 << 20
	d := aaPacedDaemon(t, rate)
	ctx := context.Background()
	honest := aaDial(t, d, aaKey(t, d, "AAHONP1"), 4, proto.Work{Bytes: 64 << 20, Files: 100})
	if g, err := honest.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("honest hello: %+v %v", g, err)
	}
	evil := aaDial(t, d, aaKey(t, d, "AAEVILP1"), 4, claim)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var hGot, eGot atomic.Int64
	var sessions atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aaPutLoop(wctx, t, honest, uint64(100+w), 1, aaChunk, &hGot, nil)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		aaPutLoop(wctx, t, evil, 7, 12, aaChunk, &eGot, func() bool {
			if sessions.Load() > 0 {
				if err := evil.Bye(wctx); err != nil {
					return false
				}
			}
			g, err := evil.Hello(wctx, "backup")
			if err != nil || !g.Granted {
				if wctx.Err() == nil {
					t.Logf("evil hello: %+v %v", g, err)
				}
				return false
			}
			sessions.Add(1)
			return true
		})
	}()
	wg.Wait()
	h, e := hGot.Load(), eGot.Load()
	total = h + e
	t.Logf("10 s at %d MiB/s: honest first backup got %.1f MiB, the laptop claiming %d bytes got %.1f MiB in %d sessions",
		rate>>20, float64(h)/(1<<20), claim.Bytes, float64(e)/(1<<20), sessions.Load())
	if total < 4<<20 {
		t.Fatalf("only %d bytes went through in all; the pace did not run", total)
	}
	return h, total
}

// TestAdmAttackManyStreamsTakeThePace: two laptops, both big first
// backups, share a 2 MiB/s pace. The honest one uploads as xo-backup does
// (one connection, four streams); the other opens every connection its
// key may have (4) and every stream each may carry (15 of 16). The pacer
// serves reads first come first served, whoever reads them, so the laptop
// with more streams in flight gets that many more turns. A device should
// not get more than a few times what an honest laptop gets (we allow 3x).
func TestAdmAttackManyStreamsTakeThePace(t *testing.T) {
	const rate = 2 << 20
	d := aaPacedDaemon(t, rate)
	ctx := context.Background()
	big := proto.Work{Bytes: 64 << 20, Files: 100}
	honest := aaDial(t, d, aaKey(t, d, "AAHONP2"), 4, big)
	if g, err := honest.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("honest hello: %+v %v", g, err)
	}
	ekey := aaKey(t, d, "AAEVILP2")
	var evils []*proto.Client
	for i := 0; i < 4; i++ {
		c := aaDial(t, d, ekey, 4, big)
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("evil hello %d: %+v %v", i, g, err)
		}
		evils = append(evils, c)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var hGot, eGot atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aaPutLoop(wctx, t, honest, uint64(200+w), 1, aaChunk, &hGot, nil)
		}()
	}
	for i, c := range evils {
		for w := 0; w < 15; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				aaPutLoop(wctx, t, c, uint64(1000+100*i+w), 1, aaChunk, &eGot, nil)
			}()
		}
	}
	wg.Wait()
	h, e := hGot.Load(), eGot.Load()
	t.Logf("10 s at %d MiB/s: honest laptop (4 streams) got %.1f MiB, the other (4 connections x 15 streams) %.1f MiB",
		rate>>20, float64(h)/(1<<20), float64(e)/(1<<20))
	if h+e < 4<<20 {
		t.Fatalf("only %d bytes went through in all; the pace did not run", h+e)
	}
	if e > 3*h {
		t.Errorf("one laptop took %.1fx the pace an honest laptop got (%.1f vs %.1f MiB): the pacer shares by streams in flight, not by laptop",
			float64(e)/float64(max(h, 1)), float64(e)/(1<<20), float64(h)/(1<<20))
	}
}
