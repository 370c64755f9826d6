package proto

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/internal/procstat"
)

// The transport benchmark's receiving end runs in a process of its own, so
// that each end's CPU is measured apart: this test is that process when
// XS_TRANSPORT_SINK says how to listen, and is skipped otherwise.
const sinkEnv = "XS_TRANSPORT_SINK"

// transportCase is one way of moving bytes from a laptop to the server.
type transportCase struct {
	name string
	tcp  bool   // TCP with TLS 1.3 instead of QUIC
	mode string // what the sink and the sender change: "", "no-gso", "1452", "big-window"
}

// tune makes conf (the laptop's or the server's) what the case measures.
func (c transportCase) tune(conf *quic.Config) {
	switch c.mode {
	case "1452":
		conf.InitialPacketSize = 1452
	case "big-window":
		// quic-go's own defaults: windows that grow to 6 MiB (stream)
		// and 15 MiB (connection).
		conf.InitialStreamReceiveWindow, conf.MaxStreamReceiveWindow = 0, 0
		conf.InitialConnectionReceiveWindow, conf.MaxConnectionReceiveWindow = 0, 0
	}
}

func (c transportCase) env() []string {
	if c.mode == "no-gso" {
		return []string{"QUIC_GO_DISABLE_GSO=true"}
	}
	return nil
}

// TestTransportSink is BenchmarkTransport's receiver: it listens on
// loopback, prints its address, and for every stream (or TCP connection)
// reads everything, answers with the byte count, until its stdin closes.
func TestTransportSink(t *testing.T) {
	spec := os.Getenv(sinkEnv)
	if spec == "" {
		t.Skip("the receiving process of BenchmarkTransport")
	}
	tcp, mode, _ := strings.Cut(spec, ",")
	c := transportCase{tcp: tcp == "tcp", mode: mode}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// The server's own TLS and QUIC configuration, with nothing behind it.
	srv, err := NewServer(ServerConfig{Backend: &sinkBackend{}, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := srv.tls
	sink := func(r io.Reader, w io.Writer) {
		n, _ := io.Copy(io.Discard, r)
		binary.Write(w, binary.BigEndian, n)
	}
	if c.tcp {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(ln.Addr())
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer conn.Close()
					sink(conn, conn)
				}()
			}
		}()
	} else {
		sconf := srv.quicConfig()
		c.tune(sconf)
		ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, sconf)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(ln.Addr())
		go func() {
			for {
				conn, err := ln.Accept(context.Background())
				if err != nil {
					return
				}
				go func() {
					for {
						st, err := conn.AcceptStream(context.Background())
						if err != nil {
							return
						}
						go func() {
							sink(st, st)
							st.Close()
						}()
					}
				}()
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0) // the listener's goroutines end with the process
}

// BenchmarkTransport measures what moving a laptop's upload costs each end
// on loopback, per GiB, with no store behind it: QUIC as xs-backup
// configures it (mutual TLS 1.3 with ed25519 keys, the server's 128 KiB
// upload window, GSO on), the variants quic-go offers (no GSO, full-size
// packets from the first, quic-go's own growing windows), and TCP with the
// same TLS 1.3 as the baseline. The receiver is a separate process (this
// test binary, TestTransportSink), so "send" is this process's CPU and
// "recv" the receiver's. bench/README.md has the figures.
//
//	go test -run '^$' -bench Transport -benchtime 4x ./pkg/proto/
func BenchmarkTransport(b *testing.B) {
	const size = 128 << 20
	for _, c := range []transportCase{
		{name: "quic"},
		{name: "quic-no-gso", mode: "no-gso"},
		{name: "quic-1452", mode: "1452"},
		{name: "quic-big-window", mode: "big-window"},
		{name: "tcp-tls", tcp: true},
	} {
		b.Run(c.name, func(b *testing.B) {
			for _, kv := range c.env() {
				k, v, _ := strings.Cut(kv, "=")
				b.Setenv(k, v)
			}
			exe, err := os.Executable()
			if err != nil {
				b.Fatal(err)
			}
			spec := "quic," + c.mode
			if c.tcp {
				spec = "tcp,"
			}
			cmd := exec.Command(exe, "-test.run=^TestTransportSink$")
			cmd.Env = append(os.Environ(), sinkEnv+"="+spec)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			addr, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				b.Fatalf("the sink printed no address: %v", err)
			}
			addr = strings.TrimSpace(addr)
			key, err := GenerateKey()
			if err != nil {
				b.Fatal(err)
			}
			tlsConf := clientTLS(fixedKey(key), ALPNBackup, nil, nil, nil)
			// open returns a stream to the sink: a fresh connection each
			// time, its handshake outside the measurement.
			open := func() (io.ReadWriteCloser, func(), error) {
				if c.tcp {
					conn, err := tls.Dial("tcp", addr, tlsConf)
					if err != nil {
						return nil, nil, err
					}
					if err := conn.Handshake(); err != nil {
						return nil, nil, err
					}
					return halfCloser{conn}, func() { conn.Close() }, nil
				}
				cconf := clientQUIC(0)
				c.tune(cconf)
				conn, err := quic.DialAddr(context.Background(), addr, tlsConf, cconf)
				if err != nil {
					return nil, nil, err
				}
				st, err := conn.OpenStreamSync(context.Background())
				if err != nil {
					return nil, nil, err
				}
				return st, func() { conn.CloseWithError(0, "") }, nil
			}
			buf := make([]byte, 256<<10)
			for i := range buf {
				buf[i] = byte(i * 7)
			}
			var send, recv, wall time.Duration
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				st, done, err := open()
				if err != nil {
					b.Fatal(err)
				}
				s0, r0, t0 := procstat.Self(), mustCPU(b, cmd.Process.Pid), time.Now()
				for sent := 0; sent < size; sent += len(buf) {
					if _, err := st.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				st.Close()
				var n int64
				if err := binary.Read(st, binary.BigEndian, &n); err != nil || n != size {
					b.Fatalf("the sink received %d of %d bytes (%v)", n, size, err)
				}
				send += procstat.Self() - s0
				recv += mustCPU(b, cmd.Process.Pid) - r0
				wall += time.Since(t0)
				done()
			}
			gib := float64(b.N) * size / (1 << 30)
			b.ReportMetric(send.Seconds()/gib, "send-CPU-s/GiB")
			b.ReportMetric(recv.Seconds()/gib, "recv-CPU-s/GiB")
			b.ReportMetric(float64(b.N)*size/1e6/wall.Seconds(), "MB/s")
		})
	}
}

func mustCPU(b *testing.B, pid int) time.Duration {
	d, err := procstat.CPU(pid, false)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// halfCloser makes Close on a TLS connection end only the sending half, as
// Close does on a QUIC stream, so the answer can still be read.
type halfCloser struct{ *tls.Conn }

func (h halfCloser) Close() error { return h.CloseWrite() }
