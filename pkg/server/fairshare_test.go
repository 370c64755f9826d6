package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// The hostile clients below are real QUIC clients written against the wire
// format, not the project's client: they come from other loopback
// addresses (127.0.0.2 and up, another "device" each) while the honest
// laptop uses 127.0.0.1, and the per-address caps apply to loopback here.

// testLimits are the fair-share caps scaled down for tests.
func testLimits(c *server.Config) {
	c.MaxConnections = 24
	c.MaxPending = 10
	c.OpenApprovalsPerHour = 5
	c.Limits = proto.Limits{LimitLoopback: true, ConnsPerAddr: 8, RegisterConns: 8, RegisterConnsPerAddr: 2,
		RegisterTimeout: 2 * time.Second, RegisterBurst: 3, RegisterEvery: time.Second,
		RegisterGlobalBurst: 20, RegisterGlobalEvery: 200 * time.Millisecond, CommitBurst: 3, CommitEvery: time.Hour}
}

// rawConn dials the daemon from local (an IP) with key, speaking alpn.
func rawConn(ctx context.Context, t *testing.T, d *server.Daemon, local string, key ed25519.PrivateKey, alpn string) (*quic.Conn, error) {
	t.Helper()
	pc, err := net.ListenPacket("udp", local+":0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); pc.Close() })
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{alpn}, ServerName: "xs-backup", InsecureSkipVerify: true}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return tr.Dial(dctx, d.Addr, tc, &quic.Config{MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: 2 * time.Second})
}

func freshKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}

// honestMeanwhile backs up and restores the honest laptop within limit.
func honestMeanwhile(t *testing.T, l *laptop, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	journalgen.Mutate(l.src, 7, int(start.UnixNano()%1000)+1)
	l.run(t)
	l.restoreAndCompare(t, "latest")
	took := time.Since(start)
	if took > limit {
		t.Errorf("the honest laptop took %v to back up and restore during the attack (limit %v)", took, limit)
	}
	t.Logf("honest laptop backed up and restored in %v during the attack", took.Round(time.Millisecond))
	return took
}

func heapCheck(t *testing.T, limit uint64) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("heap in use: %d MiB", ms.HeapInuse>>20)
	if ms.HeapInuse > limit {
		t.Errorf("heap in use %d MiB during the attack (limit %d MiB)", ms.HeapInuse>>20, limit>>20)
	}
}

// TestConnectionFloodFreshKeys: one device opens more connections than the
// server's whole limit, with fresh random keys, to both the backup and the
// registration protocol, and holds them. An honest laptop backs up and
// restores meanwhile.
func TestConnectionFloodFreshKeys(t *testing.T) {
	d := startDaemon(t, testLimits)
	honest := newLaptop(t, d, "HONEST1", 11)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held, refused atomic.Int64
	heldBy := map[string]*atomic.Int64{proto.ALPNBackup: new(atomic.Int64), proto.ALPNRegister: new(atomic.Int64)}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ { // 40 > MaxConnections (24)
		for _, alpn := range []string{proto.ALPNBackup, proto.ALPNRegister} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := rawConn(ctx, t, d, "127.0.0.2", freshKey(), alpn)
				if err != nil {
					refused.Add(1)
					return
				}
				st, err := c.OpenStreamSync(ctx)
				if err == nil {
					st.Write([]byte{0, 0}) // the start of a header, then nothing
				}
				defer c.CloseWithError(0, "")
				select {
				case <-c.Context().Done():
					refused.Add(1)
				case <-time.After(3 * time.Second): // past the 2 s registration timeout
					held.Add(1)
					heldBy[alpn].Add(1)
					<-ctx.Done()
				}
			}()
		}
	}
	time.Sleep(500 * time.Millisecond)
	honestMeanwhile(t, honest, 20*time.Second)
	time.Sleep(3 * time.Second)
	t.Logf("flood: %d connections still open after 3 s (backup %d, registration %d), %d refused or closed", held.Load(), heldBy[proto.ALPNBackup].Load(), heldBy[proto.ALPNRegister].Load(), refused.Load())
	if held.Load() > 0 {
		t.Errorf("%d flood connections held open", held.Load())
	}
	heapCheck(t, 256<<20)
	cancel()
	wg.Wait()
}

// TestHeaderOnlyMemoryHold: a registered laptop opens as many connections
// and streams as it may, and on each stream sends only a 5-byte frame
// header claiming 16 MiB. Nothing is reserved for it; an honest laptop
// backs up meanwhile.
func TestHeaderOnlyMemoryHold(t *testing.T) {
	d := startDaemon(t, testLimits)
	honest := newLaptop(t, d, "HONEST2", 12)
	evil := newLaptop(t, d, "EVIL2", 13)
	key, _ := evil.st.Key()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hdr := binary.BigEndian.AppendUint32(nil, uint32(proto.MaxBlobFrame))
	hdr = append(hdr, 7) // a blob frame, claiming the largest size
	streams := 0
	for i := 0; i < 6; i++ { // more connections than ConnsPerKey (4)
		c, err := rawConn(ctx, t, d, "127.0.0.3", key, proto.ALPNBackup)
		if err != nil {
			continue
		}
		defer c.CloseWithError(0, "")
		for j := 0; j < 16; j++ {
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			st, err := c.OpenStreamSync(sctx)
			scancel()
			if err != nil {
				break
			}
			if _, err := st.Write(hdr); err == nil {
				streams++
			}
		}
	}
	t.Logf("%d streams each sent a header claiming %d MiB (%d MiB claimed in all)", streams, proto.MaxBlobFrame>>20, streams*proto.MaxBlobFrame>>20)
	if streams < 16 {
		t.Fatalf("only %d streams opened; the attack did not run", streams)
	}
	time.Sleep(300 * time.Millisecond)
	honestMeanwhile(t, honest, 20*time.Second)
	heapCheck(t, 256<<20)
}

// TestRegistrationFlood: thirty devices register made-up serials as fast as
// they can, in open registration. Few get through, few of those are
// approved, the pending list stays capped, and a real new laptop registers
// and an honest one backs up meanwhile.
func TestRegistrationFlood(t *testing.T) {
	d := startDaemon(t, testLimits)
	honest := newLaptop(t, d, "HONEST3", 14)
	// The attackers' handshakes run in this process, on the cores the
	// server needs: on a loaded machine (-race, other tests) the honest
	// run's bound scales with what it takes there without the flood.
	start := time.Now()
	journalgen.Mutate(honest.src, 7, 1)
	honest.run(t)
	limit := max(20*time.Second, 15*time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), limit+10*time.Second)
	defer cancel()
	var ok, busy atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for dev := 0; dev < 30; dev++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := rawConn(ctx, t, d, fmt.Sprintf("127.0.1.%d", dev+1), freshKey(), proto.ALPNRegister)
				if err != nil {
					busy.Add(1)
					continue
				}
				st, err := c.OpenStreamSync(ctx)
				if err != nil {
					busy.Add(1)
					continue
				}
				st.Write(frame(3, fmt.Appendf(nil, `{"serial":"FAKE%02d%04d","nickname":"x"}`, dev, n)))
				st.SetReadDeadline(time.Now().Add(3 * time.Second))
				b := make([]byte, 5)
				if _, err := io.ReadFull(st, b); err == nil && b[4] == 4 {
					ok.Add(1)
				} else {
					busy.Add(1)
				}
				st.Close()
				c.CloseWithError(0, "")
			}
		}()
	}
	time.Sleep(time.Second)
	honestMeanwhile(t, honest, limit)
	close(stop)
	wg.Wait()
	time.Sleep(1500 * time.Millisecond) // the registration rate refills
	// A real new laptop is told what happened and what to do: the fake
	// registrations fill the pending list until staff look at it.
	_, err := agent.Register(ctx, agent.State{Dir: t.TempDir()}, agent.RegisterOptions{Server: d.Addr.String(), Serial: "NEWKID"})
	t.Logf("a new laptop registering after the flood: %v", err)
	if err != nil && !(errkind.Of(err) == errkind.Busy && strings.Contains(err.Error(), "wait for staff approval")) {
		t.Errorf("a new laptop after the flood: %v", err)
	}
	approved, pending := 0, d.Store.Pending()
	for _, u := range d.Store.Users() {
		if u.Approved && len(u.Serial) > 4 && u.Serial[:4] == "FAKE" {
			approved++
		}
	}
	t.Logf("registration flood: %d accepted, %d refused; %d approved fake accounts, %d pending", ok.Load(), busy.Load(), approved, pending)
	if approved > 5 {
		t.Errorf("open registration approved %d fake laptops (limit 5 an hour)", approved)
	}
	if pending > 10 {
		t.Errorf("%d registrations pending (cap 10)", pending)
	}
	if busy.Load() == 0 {
		t.Error("the flood was never refused")
	}
	heapCheck(t, 256<<20)
}

// TestCommitFlood: a laptop commits the same tree again and again; after a
// few commits it is told to come back later, the refusals are counted, and
// another laptop backs up meanwhile.
func TestCommitFlood(t *testing.T) {
	d := startDaemon(t, testLimits)
	honest := newLaptop(t, d, "HONEST4", 15)
	evil := newLaptop(t, d, "EVIL4", 16)
	ctx := context.Background()
	c := dialLaptop(t, d, evil)
	if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
		t.Fatalf("hello: %+v %v", g, err)
	}
	enc, _ := manifest.Encode(&manifest.Tree{})
	root := chunk.Sum(enc)
	if err := c.Put(ctx, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: enc, RawLen: len(enc)}}); err != nil {
		t.Fatal(err)
	}
	done, limited := 0, 0
	start := time.Now()
	for i := 0; i < 200; i++ {
		_, err := c.Commit(ctx, root)
		switch {
		case err == nil:
			done++
		case errors.Is(err, proto.ErrBusy):
			limited++
		default:
			t.Fatal(err)
		}
	}
	t.Logf("commit flood: %d committed, %d refused in %v", done, limited, time.Since(start).Round(time.Millisecond))
	if done > 3 || limited == 0 {
		t.Errorf("%d of 200 commits went through (burst 3)", done)
	}
	if v := d.Metrics.Values(); v.CommitsLimited != int64(limited) {
		t.Errorf("metrics count %d limited commits, want %d", v.CommitsLimited, limited)
	}
	c.Close()
	honestMeanwhile(t, honest, 20*time.Second)
}
