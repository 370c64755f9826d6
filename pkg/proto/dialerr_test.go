package proto

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/quic-go/quic-go"
)

// TestDialToAnotherVersionSaysSo: a server that answers but refuses the
// handshake (here one that speaks only another protocol version, a real
// QUIC listener with another ALPN) is not "unreachable", which a run
// would report as a quiet skip night after night: Dial says the server
// refused and what to do.
func TestDialToAnotherVersionSaysSo(t *testing.T) {
	skey, _ := GenerateKey()
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
		ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{"xs-backup/2"}}, nil)
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
	defer func() {
		ln.Close()
		tr.Close()
		pc.Close()
		<-accepted
	}()
	lkey, _ := GenerateKey()
	_, err = Dial(t.Context(), ClientConfig{Addr: ln.Addr().String(), Key: lkey, ServerKey: skey.Public().(ed25519.PublicKey)})
	if err == nil || errors.Is(err, ErrUnreachable) || KindOf(err) != KindBadRequest {
		t.Fatalf("a server of another version: %v (kind %v), want a refused handshake", err, KindOf(err))
	}
	t.Log(err)
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
		if got := dialErr("school:7457", tc.err); !tc.want(got) {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}
