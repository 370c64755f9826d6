package proto

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
)

// bareQUIC starts a real QUIC listener with the key skey that speaks only
// the protocol alpn and closes every connection it accepts, and returns its
// address.
func bareQUIC(t *testing.T, skey ed25519.PrivateKey, alpn string) string {
	t.Helper()
	cert, err := certificate(skey)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{alpn}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			c.CloseWithError(0, "")
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		tr.Close()
		pc.Close()
		<-accepted
	})
	return ln.Addr().String()
}

// TestDialToAnotherVersionSaysSo: a server that answers but refuses the
// handshake (here one that speaks only another protocol version, a real
// QUIC listener with another ALPN) is not "unreachable", which a run
// would report as a quiet skip night after night: Dial says the server
// refused and what to do. So do registration, where a person waits for
// the answer, and a school server fetching its recovery bundle from the
// mothership.
func TestDialToAnotherVersionSaysSo(t *testing.T) {
	skey, _ := GenerateKey()
	addr := bareQUIC(t, skey, "xs-backup/2")
	lkey, _ := GenerateKey()
	refused := func(what string, err error) {
		t.Helper()
		if err == nil || errors.Is(err, ErrUnreachable) || KindOf(err) != KindBadRequest {
			t.Fatalf("%s, a server of another version: %v (kind %v), want a refused handshake", what, err, KindOf(err))
		}
		t.Logf("%s: %v", what, err)
	}
	_, err := Dial(t.Context(), ClientConfig{Addr: addr, Key: lkey, ServerKey: skey.Public().(ed25519.PublicKey)})
	refused("Dial", err)
	_, err = Register(t.Context(), addr, lkey, "SHC0001", "ana")
	refused("Register", err)
	var got bytes.Buffer
	_, err = FetchRecovery(t.Context(), addr, lkey, skey.Public().(ed25519.PublicKey), &got)
	refused("FetchRecovery", err)
	if !strings.Contains(err.Error(), "mothership") || got.Len() != 0 {
		t.Errorf("recovery's error does not name the mothership, or it wrote %d bytes: %v", got.Len(), err)
	}
}

// TestFetchRecoveryFromAnotherMothership: a mothership whose key is not the
// one staff gave is refused as such (ErrServerKeyChanged), not reported as
// unreachable, and nothing is written.
func TestFetchRecoveryFromAnotherMothership(t *testing.T) {
	skey, _ := GenerateKey()
	addr := bareQUIC(t, skey, ALPNRecover)
	other, _ := GenerateKey()
	key, _ := GenerateKey()
	var got bytes.Buffer
	_, err := FetchRecovery(t.Context(), addr, key, other.Public().(ed25519.PublicKey), &got)
	if !errors.Is(err, ErrServerKeyChanged) || errors.Is(err, ErrUnreachable) || got.Len() != 0 {
		t.Fatalf("a mothership with another key: %v (%d bytes written), want ErrServerKeyChanged", err, got.Len())
	}
}

// TestDialErrKinds: how dialErr tells the failures apart.
func TestDialErrKinds(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want func(error) bool
	}{
		{"remote TLS alert", &quic.TransportError{Remote: true, ErrorCode: 0x100 + 120}, func(e error) bool { return KindOf(e) == KindBadRequest && !errors.Is(e, ErrUnreachable) }},
		{"local TLS failure", &quic.TransportError{ErrorCode: 0x100 + 42}, func(e error) bool { return KindOf(e) == KindBadRequest && !errors.Is(e, ErrUnreachable) }},
		{"remote refusal", &quic.ApplicationError{Remote: true, ErrorCode: quic.ApplicationErrorCode(KindRevoked), ErrorMessage: "revoked"}, func(e error) bool { return errors.Is(e, ErrRevoked) }},
		{"no answer", &quic.IdleTimeoutError{}, func(e error) bool { return errors.Is(e, ErrUnreachable) }},
		{"handshake timeout", &quic.HandshakeTimeoutError{}, func(e error) bool { return errors.Is(e, ErrUnreachable) }},
		{"deadline", context.DeadlineExceeded, func(e error) bool { return errors.Is(e, ErrUnreachable) }},
		{"pinned key", ErrServerKeyChanged, func(e error) bool { return errors.Is(e, ErrServerKeyChanged) }},
	} {
		if got := dialErr("school:7457", dialSide, tc.err); !tc.want(got) {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}
