package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestSpace: the pack bytes are the pack files' sizes, the reserve is the
// configured one, and a closed store says so.
func TestSpace(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{Reserve: 1 << 20})
	empty, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	if empty.PackBytes != 0 || empty.Reserve != 1<<20 || empty.Free <= 0 {
		t.Fatalf("empty store: %+v", empty)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), make([]byte, 100<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	backupDir(t, s, addUser(t, s, "SHC1"), src, nil)
	sp, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	var packs int64
	matches, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		packs += fi.Size()
	}
	if sp.PackBytes == 0 || sp.PackBytes != packs {
		t.Fatalf("PackBytes = %d, the pack files hold %d", sp.PackBytes, packs)
	}
	s.Close()
	if _, err := s.Space(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Space of a closed store: %v", err)
	}
}
