package restore_test

// Helpers shared with pkg/backup's tests: a store, a user, a backup.

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), t.TempDir(), store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addUser(t *testing.T, s *store.Store, serial string) *store.User {
	t.Helper()
	u, err := s.AddUser(context.Background(), store.NewUser{Serial: serial, Nickname: serial, Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// run backs dir up as u; opts.Params is filled in from the store.
func run(s *store.Store, u *store.User, dir string, opts backup.Options) (*backup.Result, error) {
	opts.Params = s.Params()
	return backup.Run(context.Background(), dir, s.Target(u.ID, store.CommitInfo{Source: dir}), opts)
}

func mustRun(t *testing.T, s *store.Store, u *store.User, dir string, opts backup.Options) *backup.Result {
	t.Helper()
	res, err := run(s, u, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot == "" {
		t.Fatalf("no snapshot ID in %+v", res)
	}
	return res
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
