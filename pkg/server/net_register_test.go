package server_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestRegistrationFrameOfAnotherType: a registration connection needs
// no account, only a fresh key. The server reads its one request frame
// without memory accounting, which is fine for a registration's JSON
// (capped at 1 MiB: a 16 MiB tRegister header is refused from the header,
// the control round below); but the cap applied is the one of the type
// the header names, and the type is checked only after the payload is read.
// Eight unregistered devices' connections (two each from four addresses,
// within the per-address cap) each send a 16 MiB frame of type 13 (a
// snapshot list, the server's own answer type) on the registration
// protocol. The server should refuse it from its header as it refuses the
// oversized registration.
func TestRegistrationFrameOfAnotherType(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Limits = proto.Limits{LimitLoopback: true, RegisterTimeout: 10 * time.Second}
	})
	const size = 16 << 20
	payload := make([]byte, size)
	round := func(typ byte, net int) int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
		defer cancel()
		hdr := binary.BigEndian.AppendUint32(nil, size)
		hdr = append(hdr, typ)
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}()
		var wg sync.WaitGroup
		for dev := 0; dev < 4; dev++ {
			for j := 0; j < 2; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := rawConn(ctx, t, d, fmt.Sprintf("127.0.%d.%d", net, dev+1), freshKey(), proto.ALPNRegister)
					if err != nil {
						t.Logf("dial: %v", err)
						return
					}
					defer c.CloseWithError(0, "")
					st, err := c.OpenStreamSync(ctx)
					if err != nil {
						return
					}
					st.Write(hdr)
					st.Write(payload)
					st.Close()
					st.SetReadDeadline(time.Now().Add(10 * time.Second))
					io.Copy(io.Discard, st)
				}()
			}
		}
		wg.Wait()
		close(stop)
		<-sampled
		return int64(peak.Load()) - int64(base.HeapInuse)
	}
	control := max(round(3, 3), 0) // tRegister of 16 MiB: refused from the header
	attack := round(13, 4)         // tListResp of 16 MiB
	t.Logf("8 registration connections each sending a 16 MiB frame: heap in use grew by up to %d MiB for tRegister (refused from its header), %d MiB for type 13", control>>20, attack>>20)
	if attack > control+48<<20 {
		t.Errorf("unregistered devices made the server hold %d MiB more for frames a registration never takes than for oversized registrations", (attack-control)>>20)
	}
}

// TestRecoveryConnectionsHoldRegistrationPlaces: TestConnectionFloodFreshKeys
// shows that registration connections are closed after RegisterTimeout.
// Connections of the recovery protocol (a school server fetching its
// bundle from a mothership) share the registration pool, on a school server
// too; here unregistered devices open them and never open a stream, kept
// alive by QUIC keep-alives. After twice the registration timeout they
// should have been closed, and a real new laptop should register.
func TestRecoveryConnectionsHoldRegistrationPlaces(t *testing.T) {
	d := startDaemon(t, testLimits) // 8 registration places, 2 per address, 2 s each
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := 0
	var conns []*quic.Conn
	for dev := 0; dev < 4; dev++ {
		for j := 0; j < 2; j++ {
			c, err := rawConn(ctx, t, d, fmt.Sprintf("127.0.5.%d", dev+1), freshKey(), proto.ALPNRecover)
			if err != nil {
				continue
			}
			conns = append(conns, c)
		}
	}
	time.Sleep(4500 * time.Millisecond) // over twice RegisterTimeout
	for _, c := range conns {
		if c.Context().Err() == nil {
			held++
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	_, err := agent.Register(rctx, agent.State{Dir: t.TempDir()}, agent.RegisterOptions{Server: d.Addr.String(), Serial: "NEWKID3"})
	t.Logf("%d of %d recovery connections still open after 4.5 s; a new laptop registering: %v", held, len(conns), err)
	if held > 0 {
		t.Errorf("%d recovery connections that never sent a request are still open after twice the registration timeout", held)
	}
	if err != nil {
		t.Errorf("a new laptop cannot register while recovery connections hold the registration places: %v", err)
	}
	for _, c := range conns {
		c.CloseWithError(0, "")
	}
}
