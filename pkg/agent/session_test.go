package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestFailedResumptionForgetsTheSession: a session file that is intact by
// its checksum but whose state the server does not accept (here: each byte
// of the state flipped in turn and the checksum made again, as a bug or a
// tampered file would) may fail one connection, never the next: the run
// after it makes a full handshake.
func TestFailedResumptionForgetsTheSession(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve, cfg.RestorePage.Listen = "127.0.0.1:0", t.TempDir(), "", 0, ""
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-d.Ready
	st := State{Dir: t.TempDir()}
	if _, err := Register(ctx, st, RegisterOptions{Server: d.Addr.String(), Serial: "FORGET1"}); err != nil {
		t.Fatal(err)
	}
	dial := func() (resumed bool, err error) {
		c, _, err := Dial(ctx, st, 0)
		if err != nil {
			return false, err
		}
		defer c.Close()
		if _, err := c.Hello(ctx, "backup"); err != nil {
			return false, err
		}
		return c.Resumed(), nil
	}
	if _, err := dial(); err != nil {
		t.Fatal(err)
	}
	path := st.path(sessionName)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bind, key, ticket, state, err := decodeSession(good)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := dial(); err != nil || !r {
		t.Fatalf("the good session: resumed %v, %v", r, err)
	}
	failed := 0
	for at := 0; at < len(state); at += 5 {
		s := bytes.Clone(state)
		s[at] ^= 0x01
		if err := os.WriteFile(path, encodeSession(bind, key, ticket, s), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := dial()
		if err == nil {
			continue
		}
		failed++
		// The server refuses the binder, or the certificate the state
		// holds is not the pinned key's (said as loudly as a new key
		// from the network would be): never "unreachable", a quiet skip.
		if errors.Is(err, proto.ErrUnreachable) || (proto.KindOf(err) != proto.KindBadRequest && !errors.Is(err, proto.ErrServerKeyChanged)) {
			t.Errorf("state byte %d: a failed handshake reported as %v", at, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("state byte %d: the session that failed is still kept (%v)", at, err)
		}
		if r, err := dial(); err != nil || r {
			t.Errorf("state byte %d: the connection after a failed resumption: resumed %v, %v", at, r, err)
		}
	}
	if failed == 0 {
		t.Fatal("no flipped byte of the state failed a handshake: the test tests nothing")
	}
	t.Logf("%d of %d flipped state bytes failed one handshake", failed, (len(state)+4)/5)
}

// FuzzDecodeSession: the session file's decoder never panics, refuses
// what is over its cap, and what it accepts encodes back to the same bytes.
func FuzzDecodeSession(f *testing.F) {
	var bind [32]byte
	bind[3] = 9
	f.Add(encodeSession(bind, "xs-backup", []byte("ticket"), []byte("state")))
	f.Add([]byte(sessionMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		bind, key, ticket, state, err := decodeSession(b)
		if err != nil {
			return
		}
		if len(b) > maxSessionFile {
			t.Fatalf("accepted %d bytes, over the cap", len(b))
		}
		if again := encodeSession(bind, key, ticket, state); !bytes.Equal(again, b) {
			t.Fatalf("decoded %q, encodes to %q", b, again)
		}
	})
}
