package xsbackup_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// journalFiles generates a small Journal and lists its files (slash paths),
// leaving out those exclude leaves out.
func journalFiles(t *testing.T, exclude func(string, bool) bool) (string, []string) {
	t.Helper()
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(7)); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		if err != nil || rel == "." {
			return err
		}
		if exclude != nil && exclude(rel, d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	return src, files
}

// checkRepo backs src up twice through repo, reads the latest snapshot as
// an fs.FS (fstest.TestFS), restores it whole and one file alone.
func checkRepo(t *testing.T, repo *xsbackup.Repo, src string, files []string, exclude func(string, bool) bool) {
	t.Helper()
	ctx := context.Background()
	first, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if first.Files != int64(len(files)) || first.ID == "" || first.Time.IsZero() {
		t.Fatalf("snapshot %+v, want %d files", first, len(files))
	}
	if err := journalgen.Mutate(src, 1, 1); err != nil {
		t.Fatal(err)
	}
	second, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	sns, err := repo.Snapshots(ctx)
	if err != nil || len(sns) != 2 || sns[0].ID != first.ID || sns[1].ID != second.ID {
		t.Fatalf("snapshots %+v %v", sns, err)
	}
	fsys, err := repo.Open(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	var now []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(src, p)
		if err == nil && !d.IsDir() && (exclude == nil || !exclude(filepath.ToSlash(rel), false)) {
			now = append(now, filepath.ToSlash(rel))
		}
		return nil
	})
	if err := fstest.TestFS(fsys, now...); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := repo.Restore(ctx, second, out); err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(src, out, exclude); err != nil {
		t.Fatalf("restore differs: %v", err)
	}
	one := t.TempDir()
	if err := repo.Restore(ctx, second, one, now[0]); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(src, now[0]))
	got, err := os.ReadFile(filepath.Join(one, filepath.FromSlash(now[0])))
	if err != nil || string(got) != string(want) {
		t.Fatalf("one file restored: %v", err)
	}
	if ents, _ := os.ReadDir(one); len(ents) != 1 {
		t.Fatalf("restoring one file wrote %d top-level entries", len(ents))
	}
}

func TestLocal(t *testing.T) {
	for _, exclude := range []func(string, bool) bool{nil, xsbackup.JournalExclude} {
		src, files := journalFiles(t, exclude)
		dir := t.TempDir()
		repo, err := xsbackup.OpenLocal(context.Background(), dir, xsbackup.Options{Exclude: exclude, Reserve: -1})
		if err != nil {
			t.Fatal(err)
		}
		checkRepo(t, repo, src, files, exclude)
		if err := repo.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopened: the same local user and its snapshots.
		repo, err = xsbackup.OpenLocal(context.Background(), dir, xsbackup.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if sns, err := repo.Snapshots(context.Background()); err != nil || len(sns) != 2 {
			t.Fatalf("after reopening: %v %v", sns, err)
		}
		repo.Close()
	}
}

func TestServer(t *testing.T) {
	ctx := context.Background()
	addr, stop := startSchoolServer(t.TempDir())
	defer stop()
	src, files := journalFiles(t, xsbackup.JournalExclude)
	state := t.TempDir()
	if _, err := xsbackup.Register(ctx, state, xsbackup.RegisterOptions{Server: addr, Serial: "SHC0042"}); err != nil {
		t.Fatal(err)
	}
	repo, err := xsbackup.Dial(ctx, state, xsbackup.Options{Exclude: xsbackup.JournalExclude})
	if err != nil {
		t.Fatal(err)
	}
	checkRepo(t, repo, src, files, xsbackup.JournalExclude)
	badSnapshots(t, repo)
	traversal(t, repo)
	closed(t, repo)
}

func TestDialNotRegistered(t *testing.T) {
	_, err := xsbackup.Dial(context.Background(), t.TempDir(), xsbackup.Options{})
	if !errors.Is(err, xsbackup.ErrNotRegistered) {
		t.Fatalf("got %v, want ErrNotRegistered", err)
	}
	if !strings.Contains(err.Error(), "xsbackup.Register") {
		t.Errorf("%q does not say to call xsbackup.Register", err)
	}
	if strings.Contains(err.Error(), "xo-backup") {
		t.Errorf("%q names a program: the library cannot know it was called from one", err)
	}
}

func TestLocalErrors(t *testing.T) {
	src, _ := journalFiles(t, nil)
	repo, err := xsbackup.OpenLocal(context.Background(), t.TempDir(), xsbackup.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Backup(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	badSnapshots(t, repo)
	traversal(t, repo)
	closed(t, repo)
}

func latest(t *testing.T, repo *xsbackup.Repo) xsbackup.Snapshot {
	t.Helper()
	sns, err := repo.Snapshots(context.Background())
	if err != nil || len(sns) == 0 {
		t.Fatalf("snapshots: %v %v", sns, err)
	}
	return sns[len(sns)-1]
}

func badSnapshots(t *testing.T, repo *xsbackup.Repo) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"", "latest", "nope", "20260101T000000Z-abcdef", "../../users"} {
		sn := xsbackup.Snapshot{ID: id}
		if _, err := repo.Open(ctx, sn); !errors.Is(err, xsbackup.ErrNotFound) {
			t.Errorf("Open(%q): %v, want ErrNotFound", id, err)
		}
		if err := repo.Restore(ctx, sn, t.TempDir()); !errors.Is(err, xsbackup.ErrNotFound) {
			t.Errorf("Restore(%q): %v, want ErrNotFound", id, err)
		}
	}
}

func traversal(t *testing.T, repo *xsbackup.Repo) {
	t.Helper()
	ctx := context.Background()
	sn := latest(t, repo)
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	for _, p := range []string{"../escape", "/etc/passwd", "version/../../escape", "", "a//b", "./version", "version/"} {
		err := repo.Restore(ctx, sn, target, p)
		if !errors.Is(err, xsbackup.ErrInvalidPath) {
			t.Errorf("Restore path %q: %v, want ErrInvalidPath", p, err)
		}
	}
	if err := repo.Restore(ctx, sn, "", "version"); !errors.Is(err, xsbackup.ErrInvalidPath) {
		t.Errorf("Restore to \"\": %v, want ErrInvalidPath", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("refused restores wrote %v", ents)
	}
	// A valid path that is not in the snapshot is an error, not a traversal.
	if err := repo.Restore(ctx, sn, target, "no/such/file"); err == nil || errors.Is(err, xsbackup.ErrInvalidPath) {
		t.Errorf("missing path: %v", err)
	}
}

func closed(t *testing.T, repo *xsbackup.Repo) {
	t.Helper()
	ctx := context.Background()
	sn := latest(t, repo)
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := repo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := repo.Backup(ctx, t.TempDir()); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("Backup after Close: %v", err)
	}
	if _, err := repo.Snapshots(ctx); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("Snapshots after Close: %v", err)
	}
	if _, err := repo.Open(ctx, sn); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
	if err := repo.Restore(ctx, sn, t.TempDir()); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("Restore after Close: %v", err)
	}
	if _, err := fs.ReadFile(fsys, "version"); !errors.Is(err, xsbackup.ErrClosed) {
		t.Errorf("reading a snapshot opened before Close: %v", err)
	}
}
