package restore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// TestSnapshotFSAndTar reads a backed-up Journal through SnapshotFS (checked
// by the standard library's fs.FS conformance test), writes it as a tar and
// extracts it again: the result equals the source.
func TestSnapshotFSAndTar(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	u := addUser(t, s, "FS1")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(3)); err != nil {
		t.Fatal(err)
	}
	mustRun(t, s, u, src, backup.Options{})
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	fsys := restore.SnapshotFS(ctx, s, sn.Root)
	var files []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(src, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err := fstest.TestFS(fsys, files...); err != nil {
		t.Fatal(err)
	}
	for _, f := range files[:3] {
		want, _ := os.ReadFile(filepath.Join(src, f))
		got, err := fs.ReadFile(fsys, f)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s read back wrong: %v", f, err)
		}
	}

	var buf bytes.Buffer
	st, err := restore.WriteTar(&buf, fsys, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	xs, err := restore.ExtractTar(bytes.NewReader(buf.Bytes()), out, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != int64(len(files)) || xs.Files != st.Files || xs.Bytes != st.Bytes {
		t.Fatalf("tar wrote %+v, extracted %+v, source has %d files", st, xs, len(files))
	}
	if err := dircmp.Compare(src, out, nil); err != nil {
		t.Fatal(err)
	}
	// One entry directory alone, with its parents.
	entry := filepath.ToSlash(filepath.Dir(filepath.Dir(files[0])))
	if strings.Count(entry, "/") != 1 {
		entry = filepath.ToSlash(filepath.Dir(files[0]))
	}
	buf.Reset()
	if _, err := restore.WriteTar(&buf, fsys, []string{entry}); err != nil {
		t.Fatal(err)
	}
	one := t.TempDir()
	if _, err := restore.ExtractTar(&buf, one, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(one, filepath.FromSlash(entry))); err != nil {
		t.Fatalf("entry %s not extracted: %v", entry, err)
	}
	// Extracting again refuses to overwrite.
	buf.Reset()
	restore.WriteTar(&buf, fsys, []string{entry})
	if _, err := restore.ExtractTar(&buf, one, false, nil); err == nil {
		t.Fatal("extracting over existing files succeeded without overwrite")
	}
}

func TestExtractTarStaysInside(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	for _, name := range []string{"../escape", "/abs/path", "a/../../escape"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 4, Mode: 0o644})
		tw.Write([]byte("evil"))
		tw.Close()
		if _, err := restore.ExtractTar(&buf, target, true, nil); err == nil {
			t.Errorf("entry %q was extracted", name)
		}
	}
	// A symlink pointing out, then a file through it: the link is skipped
	// and the file lands inside.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: parent})
	tw.WriteHeader(&tar.Header{Name: "link/escape", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644})
	tw.Write([]byte("evil"))
	tw.Close()
	restore.ExtractTar(&buf, target, true, nil)
	if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
		t.Fatal("a file was written outside the target")
	}
}
