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

// makeStore makes an empty store at dir, as xs-backupd's first start does
// (xs-admin never creates one).
func makeStore(t *testing.T, dir string) {
	t.Helper()
	s, err := store.Open(context.Background(), dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

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

// A mistyped --data made every writing command open a new, empty store
// there: xs-admin gc, retention or register "worked" on nothing, and later
// commands read that empty store. Staff never create a store: each command
// says there is none and leaves the directory as it was, whether it is
// missing or exists without a store in it.
func TestMistypedDataCreatesNoStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "xs-bakup")
	empty := t.TempDir()
	for _, args := range [][]string{{"gc"}, {"retention"}, {"users"}, {"quota", "SHC4444", "--hard", "1GB"}, {"check", "--repair"}} {
		for _, dir := range []string{missing, empty} {
			out, errOut, code := xsAdmin(t, nil, append([]string{"--data", dir}, args...)...)
			if code == 0 || !strings.Contains(errOut, "no store in "+dir) || !strings.Contains(errOut, "--data") {
				t.Errorf("%v on %s: exit %d, want a failure that says there is no store and to check --data\n%s%s", args, dir, code, out, errOut)
			}
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("%v created the mistyped directory %s", args, missing)
		}
		if ents, _ := os.ReadDir(empty); len(ents) != 0 {
			t.Fatalf("%v wrote %d files into a directory holding no store (%s...)", args, len(ents), ents[0].Name())
		}
	}
	// The real store still opens, and one that lost its configuration file
	// (it has its packs) is still repaired.
	data := t.TempDir()
	a4Store(t, data, "ana")
	if out, errOut, code := xsAdmin(t, nil, "--data", data, "users"); code != 0 || !strings.Contains(out, "SHC4444") {
		t.Fatalf("users on the real store: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.Remove(filepath.Join(data, "xs-store.json")); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := xsAdmin(t, nil, "--data", data, "check", "--repair"); code != 0 {
		t.Fatalf("check --repair of a store without its configuration file: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "xs-store.json")); err != nil {
		t.Errorf("the repair did not write the configuration again: %v", err)
	}
}
