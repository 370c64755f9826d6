package main

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// a4Store makes a store at dir with one laptop waiting for approval,
// whose nickname (sent by the laptop at registration) is hostile.
func a4Store(t *testing.T, dir, nickname string) {
	t.Helper()
	s, err := store.Open(context.Background(), dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub, _, _ := ed25519.GenerateKey(nil)
	if _, err := s.AddUser(context.Background(), store.NewUser{Serial: "SHC4444", Nickname: nickname, PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
}

// A laptop chooses its nickname when it registers (proto RegisterRequest):
// xs-admin users makes it safe for the terminal, and so must xs-admin
// pending, the very listing staff read about new laptops.
func TestPendingEscapesHostileNickname(t *testing.T) {
	data := t.TempDir()
	hostile := "ana\x1b]0;owned\x07\x1b[2J\x1b[31mAPPROVE ME\r\u202e"
	a4Store(t, data, hostile)
	for _, cmd := range []string{"users", "pending"} {
		out, errOut, code := xsAdmin(t, nil, "--data", data, cmd)
		if code != 0 || !strings.Contains(out, "SHC4444") {
			t.Fatalf("%s: exit %d\n%s%s", cmd, code, out, errOut)
		}
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u202e"} {
			if strings.Contains(out, bad) {
				t.Errorf("xs-admin %s prints the laptop's nickname raw (contains %q):\n%q", cmd, bad, out)
			}
		}
	}
}

// A data directory with a long path (the socket inside it is longer than
// a unix socket address may be): with the daemon stopped, xs-admin must
// still open the store itself, not fail on the impossible socket.
func TestLongDataDirWithDaemonStopped(t *testing.T) {
	data := filepath.Join(t.TempDir(), strings.Repeat("d", 110))
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	a4Store(t, data, "ana")
	out, errOut, code := xsAdmin(t, nil, "--data", data, "users")
	if code != 0 || !strings.Contains(out, "SHC4444") {
		t.Errorf("users on a store with a long path, daemon stopped: exit %d\n%s%s", code, out, errOut)
	}
}

// quota --soft above --hard can never act (backups are refused at the
// hard quota, the nightly run deletes only above the soft one): the
// laptop would be stuck. It was accepted with exit 0.
func TestQuotaSoftAboveHardRefused(t *testing.T) {
	data := t.TempDir()
	a4Store(t, data, "ana")
	out, errOut, code := xsAdmin(t, nil, "--data", data, "quota", "SHC4444", "--soft", "5GB", "--hard", "1GB")
	if code == 0 {
		t.Errorf("quota --soft 5GB --hard 1GB accepted (exit 0):\n%s%s", out, errOut)
	}
}
