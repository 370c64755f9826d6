// Package testkit holds the helpers the library's tests share: a store in
// a temporary directory, an approved user, a backup of a directory into
// it. Tests only; nothing outside _test.go files imports it.
package testkit

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// OpenStore opens a new store in a temporary directory (no free-space
// reserve), closed when the test ends.
func OpenStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), t.TempDir(), store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// AddUser registers an approved laptop with this serial (also its nickname).
func AddUser(t testing.TB, s *store.Store, serial string) *store.User {
	t.Helper()
	u, err := s.AddUser(context.Background(), store.NewUser{Serial: serial, Nickname: serial, Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Run backs dir up as u into s, in process; opts.Params is filled in from
// the store.
func Run(s *store.Store, u *store.User, dir string, opts backup.Options) (*backup.Result, error) {
	opts.Params = s.Params()
	return backup.Run(context.Background(), dir, s.Target(u.ID, store.CommitInfo{Source: dir}), opts)
}

// MustRun is Run that fails the test on an error or a missing snapshot.
func MustRun(t testing.TB, s *store.Store, u *store.User, dir string, opts backup.Options) *backup.Result {
	t.Helper()
	res, err := Run(s, u, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot == "" {
		t.Fatalf("no snapshot ID in %+v", res)
	}
	return res
}

// WriteFile writes data to path, creating its directories.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
