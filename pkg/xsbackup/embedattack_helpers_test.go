package xsbackup_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// eaWrite writes files (slash paths -> content) under dir.
func eaWrite(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// eaOpen opens a local Repo in a fresh (or given) store directory.
func eaOpen(t testing.TB, dir string) *xsbackup.Repo {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	repo, err := xsbackup.OpenLocal(context.Background(), dir, xsbackup.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// eaCheckStore opens the store directory with pkg/store and checks it,
// reading every blob.
func eaCheckStore(t testing.TB, dir string) {
	t.Helper()
	s, err := store.Open(context.Background(), dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatalf("store.Open after the run: %v", err)
	}
	defer s.Close()
	rep, err := s.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Check found problems: %+v", rep.Problems)
	}
}

// eaSame compares a source tree with a restored one byte for byte.
func eaSame(t testing.TB, src, out string, skip func(string, bool) bool) {
	t.Helper()
	if err := dircmp.Compare(src, out, skip); err != nil {
		t.Fatalf("restored tree differs from %s: %v", src, err)
	}
}

// eaTempFiles lists restore temp files (and any other dot-xs files) left in dir.
func eaTempFiles(dir string) []string {
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".xs-") {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// eaSnapshot snapshots the contents of a tree (path -> content, symlinks
// as "->target") so that a later restore can be compared with it after the
// source changed.
func eaSnapshotTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tg, _ := os.Readlink(p)
			out[rel] = "->" + tg
		case d.IsDir():
			out[rel+"/"] = ""
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

func eaDiff(want, got map[string]string) string {
	var b strings.Builder
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			b.WriteString("missing " + k + "; ")
		} else if g != v {
			b.WriteString("differs " + k + "; ")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			b.WriteString("extra " + k + "; ")
		}
	}
	return b.String()
}
