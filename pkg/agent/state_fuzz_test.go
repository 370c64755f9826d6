package agent

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzStateFiles: each small state file of a laptop (key, server.json,
// last.json, slot.json, clock.json, restore-from) holding any bytes: a
// disk that failed, a run killed mid-write on a file system without
// ordering. No panic; the key is a key or an error that says to register
// again; a damaged registration says to register again; the other files
// read as absent when they do not decode.
func FuzzStateFiles(f *testing.F) {
	f.Add([]byte(`{"server":"10.0.0.1:7457","server_key":"00","serial":"SHC0001","approved":true}`))
	f.Add([]byte(`{"time":"2026-12-05T02:00:00Z","snapshot":"20261205T020000Z-abcdef"}`))
	f.Add([]byte(`{"Slot":"2026-12-05T02:00:00Z"}`))
	f.Add([]byte(`{"boot":"x","offset":-1}`))
	f.Add([]byte("0101010101010101010101010101010101010101010101010101010101010101\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		for _, name := range []string{"key", "server.json", "last.json", "slot.json", "clock.json", restoreFrom} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s := State{Dir: dir}
		if k, err := s.Key(); err == nil && len(k) != ed25519.PrivateKeySize {
			t.Fatalf("a key of %d bytes", len(k))
		} else if err != nil && !strings.Contains(err.Error(), "register again") {
			t.Fatalf("a damaged key: %v (does not say to register again)", err)
		}
		if _, err := s.Registration(); err != nil && !strings.Contains(err.Error(), "register with the school server again") {
			t.Fatalf("a damaged registration: %v (does not say to register again)", err)
		}
		s.LastRun()
		s.Slot()
		s.clockNote()
		if id := s.restoreFromID(); len(id) > 64 {
			t.Fatalf("restore-from read as %d bytes", len(id))
		}
	})
}
