package traffic

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/bench/netem"
)

func listenLocal() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// bulkFlow is a class's bulk download through the same link: a QUIC
// server that sends without end and a client that reads, both through a
// relay on the link (QUIC's congestion control, as a TCP download's).
type bulkFlow struct {
	pc    net.PacketConn
	ln    *quic.Listener
	relay *netem.Relay
	got   atomic.Int64
	mu    sync.Mutex
	from  time.Time
	to    time.Time
	gotAt [2]int64
}

func selfSigned() (tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func startBulk(link *netem.Link) (*bulkFlow, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln, err := quic.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"bulk"}}, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		pc.Close()
		return nil, err
	}
	relay, err := netem.NewRelay(link, pc.LocalAddr().String())
	if err != nil {
		ln.Close()
		pc.Close()
		return nil, err
	}
	return &bulkFlow{pc: pc, ln: ln, relay: relay}, nil
}

// window runs the download from at for d, counting what arrives.
func (b *bulkFlow) window(ctx context.Context, at time.Time, d time.Duration) {
	if !sleepUntil(ctx, at) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	go func() {
		conn, err := b.ln.Accept(ctx)
		if err != nil {
			return
		}
		st, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for ctx.Err() == nil {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
		conn.CloseWithError(0, "")
	}()
	conn, err := quic.DialAddr(ctx, b.relay.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"bulk"}},
		&quic.Config{MaxIdleTimeout: time.Minute, MaxStreamReceiveWindow: 4 << 20, MaxConnectionReceiveWindow: 8 << 20})
	if err != nil {
		return
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	// Measure after a 3-second start (slow start).
	go func() {
		if sleepUntil(ctx, time.Now().Add(3*time.Second)) {
			b.mu.Lock()
			b.from, b.gotAt[0] = time.Now(), b.got.Load()
			b.mu.Unlock()
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := st.Read(buf)
		b.got.Add(int64(n))
		if err != nil {
			break
		}
	}
	b.mu.Lock()
	b.to, b.gotAt[1] = time.Now(), b.got.Load()
	b.mu.Unlock()
}

// rate is the download's rate in bits per second over its window.
func (b *bulkFlow) rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.from.IsZero() || !b.to.After(b.from) {
		return 0
	}
	return float64(b.gotAt[1]-b.gotAt[0]) * 8 / b.to.Sub(b.from).Seconds()
}

func (b *bulkFlow) Close() {
	b.relay.Close()
	b.ln.Close()
	b.pc.Close()
}
