package store

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestNamedPipeInAPacksPlace: a named pipe where a pack file was (a
// hostile or confused hand in the store's directory). Open, check
// --read-data and a restore must not block on it waiting for a writer:
// check reports the pack's records as damaged, and the other laptop's
// snapshot (whose chunks are elsewhere or the same) is still listed.
func TestNamedPipeInAPacksPlace(t *testing.T) {
	fx := daBuild(t)
	dir := fx.clone(t)
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no pack files in the store")
	}
	if err := os.Remove(packs[0]); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(packs[0], 0o640); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		s, err := Open(context.Background(), dir, daOpts)
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		rep, err := s.Check(context.Background(), CheckOptions{ReadData: true})
		if err == nil && rep.OK() {
			t.Errorf("check --read-data found nothing wrong with a named pipe for a pack")
		}
		for _, u := range []*User{fx.a, fx.b} {
			for _, sn := range s.Snapshots(u.ID) {
				s.Restore(context.Background(), sn, t.TempDir(), RestoreOptions{}) // may leave files out; must return
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Logf("open or check: %v", err)
		}
	case <-time.After(30 * time.Second):
		// Let a blocked open go, then fail.
		if f, err := os.OpenFile(packs[0], os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("the store blocked on a named pipe in a pack's place")
	}
}
