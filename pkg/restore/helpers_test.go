package restore_test

// Helpers shared with pkg/backup's tests: a store, a user, a backup.

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
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

// paths lists every path in the snapshot tree root.
func paths(t *testing.T, s *store.Store, root chunk.ID) []string {
	t.Helper()
	var out []string
	err := s.Walk(context.Background(), root, func(p string, e *manifest.Entry) error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func restoreLatest(t *testing.T, s *store.Store, u *store.User, want string, skip func(string, bool) bool) {
	t.Helper()
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := s.Restore(context.Background(), sn, out, store.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(want, out, skip); err != nil {
		t.Fatalf("restore differs from the source: %v", err)
	}
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

func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	if len(out) == 0 {
		t.Fatal("no data files generated")
	}
	return out
}
