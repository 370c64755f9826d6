package restore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// ra2Source is a restore.Source over blobs held in memory, so that a test
// can hand Restore any snapshot a hostile laptop (or server) could make.
type ra2Source struct {
	blobs map[blob.Ref][]byte
}

func newRA2Source() *ra2Source { return &ra2Source{blobs: map[blob.Ref][]byte{}} }

func (m *ra2Source) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	for _, r := range refs {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, ok := m.blobs[r]
		if !ok {
			return fmt.Errorf("%w: %s not found", blob.ErrDamaged, r)
		}
		if err := fn(r, b); err != nil {
			return err
		}
	}
	return nil
}

// file adds a file's content and returns its entry.
func (m *ra2Source) file(name string, data []byte, mode os.FileMode, mtime time.Time) manifest.Entry {
	e := manifest.Entry{Name: name, Type: manifest.File, Mode: mode, MTime: mtime.UnixNano(), Size: int64(len(data))}
	if len(data) > 0 {
		id := chunk.Sum(data)
		m.blobs[blob.Ref{Type: blob.Chunk, ID: id}] = data
		e.Chunks = []chunk.ID{id}
	}
	return e
}

// tree adds a directory and returns its ID.
func (m *ra2Source) tree(t *testing.T, ents ...manifest.Entry) chunk.ID {
	t.Helper()
	tr := &manifest.Tree{Entries: ents}
	tr.Sort()
	raw, err := manifest.Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	id := chunk.Sum(raw)
	m.blobs[blob.Ref{Type: blob.Tree, ID: id}] = raw
	return id
}

func ra2Dir(name string, sub chunk.ID, mode os.FileMode, mtime time.Time) manifest.Entry {
	return manifest.Entry{Name: name, Type: manifest.Dir, Mode: mode, MTime: mtime.UnixNano(), Subtree: sub}
}

func ra2Link(name, target string) manifest.Entry {
	return manifest.Entry{Name: name, Type: manifest.Symlink, Mode: 0o777, Target: target}
}

var ra2T0 = time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)

// ra2CutReader gives the first n bytes of r, then fails: a tar stream cut
// short (the daemon stopped, the admin socket dropped, Ctrl-C).
type ra2CutReader struct {
	r io.Reader
	n int
}

func (c *ra2CutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errors.New("connection to the daemon lost")
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// TestExtractTarOverwriteKeepsFileOnCutStream: `xs-admin restore
// --to DIR --overwrite` extracts the daemon's tar stream with ExtractTar.
// When that stream breaks in the middle of a file that replaces an existing
// one, the existing file must still be there, whole: Restore (xo-backup's
// path) writes under a temporary name and renames, and never leaves a
// partial file under the real name. ExtractTar opens the existing file
// with O_TRUNC and, on the error, removes it: both the old and the new copy
// are gone.
func TestExtractTarOverwriteKeepsFileOnCutStream(t *testing.T) {
	target := t.TempDir()
	precious := []byte("the teacher's only copy of this essay\n")
	if err := os.WriteFile(filepath.Join(target, "essay.txt"), precious, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte("restored version "), 4096)
	tw.WriteHeader(&tar.Header{Name: "essay.txt", Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o644, ModTime: ra2T0})
	tw.Write(body)
	tw.Close()
	// Cut the stream in the middle of the file's content.
	_, err := restore.ExtractTar(&ra2CutReader{r: bytes.NewReader(buf.Bytes()), n: 512 + len(body)/2}, target, true, nil)
	if err == nil {
		t.Fatal("a cut stream extracted without error")
	}
	got, rerr := os.ReadFile(filepath.Join(target, "essay.txt"))
	switch {
	case rerr != nil:
		t.Fatalf("after a failed overwrite (%v) the existing file is gone: %v", err, rerr)
	case !bytes.Equal(got, precious):
		t.Fatalf("after a failed overwrite (%v) the existing file holds %d bytes of something else", err, len(got))
	}
}

// TestExtractTarOverwriteReplacesLinks: overwriting a name replaces
// what the name points at in the target directory (as Restore does, by
// renaming), it does not write into another file through it. ExtractTar
// opens the existing name with O_TRUNC and writes through it: a hard link
// (here to a file outside the target) gets the restored bytes, and a
// symlink to another file of the target rewrites that file.
func TestExtractTarOverwriteReplacesLinks(t *testing.T) {
	parent := t.TempDir()
	target := filepath.Join(parent, "restore")
	os.MkdirAll(target, 0o755)
	outside := filepath.Join(parent, "staff-notes.txt")
	os.WriteFile(outside, []byte("staff notes\n"), 0o644)
	if err := os.Link(outside, filepath.Join(target, "hard.txt")); err != nil {
		t.Skip("no hard links here:", err)
	}
	os.WriteFile(filepath.Join(target, "keep.txt"), []byte("keep me\n"), 0o644)
	os.Symlink("keep.txt", filepath.Join(target, "soft.txt"))

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"hard.txt", "soft.txt"} {
		body := []byte("restored " + name + "\n")
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o644, ModTime: ra2T0})
		tw.Write(body)
	}
	tw.Close()
	if _, err := restore.ExtractTar(&buf, target, true, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "staff notes\n" {
		t.Errorf("a file outside the target, hard-linked into it, was rewritten: now %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep.txt")); string(b) != "keep me\n" {
		t.Errorf("keep.txt was rewritten through the symlink soft.txt: now %q", b)
	}
	for _, name := range []string{"hard.txt", "soft.txt"} {
		fi, err := os.Lstat(filepath.Join(target, name))
		b, _ := os.ReadFile(filepath.Join(target, name))
		if err != nil || !fi.Mode().IsRegular() || string(b) != "restored "+name+"\n" {
			t.Errorf("%s after overwrite: %v %v %q, want a regular file with the restored bytes", name, fi.Mode(), err, b)
		}
	}
}

// TestRestoreOverlappingPaths: `xo-backup restore --to DIR d d/f`
// (or the same path twice) into an empty directory names a directory and a
// file inside it. Every file should be restored once; the restore must not
// fail claiming that a file it wrote itself already exists.
func TestRestoreOverlappingPaths(t *testing.T) {
	m := newRA2Source()
	sub := m.tree(t, m.file("f", []byte("content of f"), 0o644, ra2T0), m.file("g", []byte("content of g"), 0o644, ra2T0))
	root := m.tree(t, ra2Dir("d", sub, 0o755, ra2T0), ra2Link("l", "d/f"))
	for _, paths := range [][]string{{"d", "d/f"}, {"d/f", "d"}, {"d/f", "d/f"}, {"d/f", "./d/f"}, {"l", "l"}} {
		out := t.TempDir()
		res, err := restore.Restore(context.Background(), m, root, out, restore.Options{Paths: paths})
		if err != nil {
			t.Errorf("restore of %q into an empty directory: %v", paths, err)
			continue
		}
		if paths[0] != "l" {
			if b, err := os.ReadFile(filepath.Join(out, "d", "f")); err != nil || string(b) != "content of f" {
				t.Errorf("restore of %q: d/f = %q %v", paths, b, err)
			}
			if res.Files > 2 {
				t.Errorf("restore of %q counts %d files for at most 2 distinct", paths, res.Files)
			}
		}
	}
}

// TestRestoreSymlinksCannotLeadOut: symlinks already in the target (to
// a directory or a file outside it) and symlinks in the snapshot pointing
// outside never make Restore write outside its target, with or without
// overwrite. The snapshot's links are restored as links; with overwrite, a
// symlink in the target where the snapshot has a file is replaced, not
// written through; a target that is itself a symlink is followed.
func TestRestoreSymlinksCannotLeadOut(t *testing.T) {
	m := newRA2Source()
	sub := m.tree(t, m.file("f", []byte("inside"), 0o644, ra2T0))
	root := m.tree(t,
		ra2Dir("d", sub, 0o755, ra2T0),                  // the target has d -> a directory outside
		m.file("x", []byte("x restored"), 0o644, ra2T0), // the target has x -> a file outside
		ra2Link("up", "../../../../../../etc"),          // snapshot links pointing out
		ra2Link("abs", "/etc/passwd"),
	)
	ctx := context.Background()
	for _, overwrite := range []bool{false, true} {
		for _, paths := range [][]string{nil, {"d"}, {"d/f"}, {"x"}, {"up", "abs"}} {
			parent := t.TempDir()
			outDir := filepath.Join(parent, "outside")
			os.MkdirAll(outDir, 0o755)
			outFile := filepath.Join(parent, "outside.txt")
			os.WriteFile(outFile, []byte("not yours"), 0o644)
			target := filepath.Join(parent, "target")
			os.MkdirAll(target, 0o755)
			os.Symlink(outDir, filepath.Join(target, "d"))
			os.Symlink(outFile, filepath.Join(target, "x"))
			_, err := restore.Restore(ctx, m, root, target, restore.Options{Overwrite: overwrite, Paths: paths})
			t.Logf("overwrite=%v paths=%q: %v", overwrite, paths, err)
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("overwrite=%v paths=%q: written outside the target through the symlink d: %v", overwrite, paths, ents)
			}
			if b, _ := os.ReadFile(outFile); string(b) != "not yours" {
				t.Errorf("overwrite=%v paths=%q: the file outside was rewritten through the symlink x: %q", overwrite, paths, b)
			}
			if len(paths) == 1 && paths[0] == "x" {
				fi, lerr := os.Lstat(filepath.Join(target, "x"))
				switch {
				case overwrite && (err != nil || lerr != nil || !fi.Mode().IsRegular()):
					t.Errorf("overwrite: x is %v (%v, %v), want the restored file in place of the symlink", fi.Mode(), err, lerr)
				case !overwrite && err == nil:
					t.Errorf("without overwrite, restoring x over an existing symlink succeeded")
				}
			}
			if len(paths) == 2 && err == nil {
				for name, want := range map[string]string{"up": "../../../../../../etc", "abs": "/etc/passwd"} {
					if tg, err := os.Readlink(filepath.Join(target, name)); err != nil || tg != want {
						t.Errorf("snapshot symlink %s restored as %q %v", name, tg, err)
					}
				}
			}
		}
	}
	// A target that is itself a symlink to a directory is followed (staff
	// chose it).
	parent := t.TempDir()
	real := filepath.Join(parent, "real")
	os.MkdirAll(real, 0o755)
	os.Symlink(real, filepath.Join(parent, "via"))
	if _, err := restore.Restore(ctx, m, root, filepath.Join(parent, "via"), restore.Options{Paths: []string{"x"}}); err != nil {
		t.Fatalf("restore into a symlinked target: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(real, "x")); err != nil || string(b) != "x restored" {
		t.Fatalf("restore through a symlinked target: %q %v", b, err)
	}
}

// TestExtractTarNeverLeavesTarget: what the existing test does not try:
// a symlink already in the target pointing out (a directory entry and a file
// under it), a hard-link entry to an absolute path, "../" as a directory, a
// PAX name with ".." inside; nothing lands outside the target.
func TestExtractTarNeverLeavesTarget(t *testing.T) {
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside")
	os.MkdirAll(outside, 0o755)
	target := filepath.Join(parent, "t")
	os.MkdirAll(target, 0o755)
	os.Symlink(outside, filepath.Join(target, "d"))
	type ent struct {
		name, link string
		typ        byte
	}
	for _, es := range [][]ent{
		{{"d", "", tar.TypeDir}, {"d/f", "", tar.TypeReg}},
		{{"d/f", "", tar.TypeReg}},
		{{"../", "", tar.TypeDir}},
		{{"ok/../../f", "", tar.TypeReg}},
		{{"h", "/etc/passwd", tar.TypeLink}, {"h", "", tar.TypeReg}},
		{{"h2", "../outside/g", tar.TypeLink}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Format: tar.FormatPAX}
			if e.typ == tar.TypeReg {
				h.Size = 4
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if e.typ == tar.TypeReg {
				tw.Write([]byte("evil"))
			}
		}
		tw.Close()
		_, err := restore.ExtractTar(&buf, target, true, nil)
		t.Logf("%v: %v", es, err)
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("%v: written outside the target: %v", es, ents)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 2 {
			t.Errorf("%v: written next to the target: %v", es, ents)
		}
	}
	if b, _ := os.ReadFile("/etc/passwd"); bytes.Equal(b, []byte("evil")) {
		t.Fatal("/etc/passwd rewritten")
	}
}

// TestWriteTarOddSnapshotForGNUTar: a snapshot with the names a laptop
// can really have (not UTF-8, a newline, a leading dash, a backslash, a
// path longer than 100 bytes, a name of 255 bytes), times before 1970 and
// after 2242 (past the ustar field) and a symlink pointing out, written by WriteTar, is read by
// GNU tar without complaint, extracts inside its directory only, with the
// same bytes, modes and mtimes.
func TestWriteTarOddSnapshotForGNUTar(t *testing.T) {
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar here")
	}
	m := newRA2Source()
	long := strings.Repeat("n", 255)
	old := time.Date(1965, 3, 4, 5, 6, 7, 0, time.UTC)
	future := time.Date(2250, 1, 2, 3, 4, 5, 0, time.UTC) // past the ustar field, within Unix nanoseconds
	files := map[string]struct {
		data  string
		mode  os.FileMode
		mtime time.Time
	}{
		"café\u202e.txt":     {"utf-8 name", 0o644, ra2T0},
		"new\nline":          {"newline", 0o600, ra2T0},
		"-rf":                {"dash", 0o755, old},
		`back\slash`:         {"backslash", 0o640, future},
		"d1/" + long:         {"long name", 0o644, ra2T0},
		"d1/d2/" + long[:99]: {"long path", 0o444, ra2T0},
		"empty":              {"", 0o644, ra2T0},
	}
	d2 := m.tree(t, m.file(long[:99], []byte("long path"), 0o444, ra2T0))
	d1 := m.tree(t, m.file(long, []byte("long name"), 0o644, ra2T0), ra2Dir("d2", d2, 0o750, ra2T0))
	var top []manifest.Entry
	for p, f := range files {
		if !strings.Contains(p, "/") {
			top = append(top, m.file(p, []byte(f.data), f.mode, f.mtime))
		}
	}
	top = append(top, ra2Dir("d1", d1, 0o755, old), ra2Link("out", "../../../../etc/passwd"))
	root := m.tree(t, top...)

	var buf bytes.Buffer
	if _, err := restore.WriteTar(&buf, restore.SnapshotFS(context.Background(), m, root), nil); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	arch := filepath.Join(parent, "x.tar")
	os.WriteFile(arch, buf.Bytes(), 0o644)
	out := filepath.Join(parent, "out")
	os.MkdirAll(out, 0o755)
	cmd := exec.Command(gnutar, "-x", "-p", "-f", arch, "-C", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("GNU tar -x: %v\n%s", err, b)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// GNU tar only warns about times before 1970 and in the future, which we mean.
		if line != "" && !strings.Contains(line, "implausibly old time stamp 1965") && !strings.Contains(line, "time stamp 2250-01-02 03:04:05 is") {
			t.Errorf("GNU tar -x says: %s", line)
		}
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 2 {
		t.Fatalf("extracting wrote next to its directory: %v", ents)
	}
	for p, f := range files {
		fp := filepath.Join(out, filepath.FromSlash(p))
		b, err := os.ReadFile(fp)
		fi, _ := os.Stat(fp)
		switch {
		case err != nil:
			t.Errorf("%q not extracted: %v", p, err)
		case string(b) != f.data:
			t.Errorf("%q extracted as %q", p, b)
		case fi.Mode().Perm() != f.mode:
			t.Errorf("%q mode %v, want %v", p, fi.Mode().Perm(), f.mode)
		case !fi.ModTime().Equal(f.mtime):
			t.Errorf("%q mtime %v, want %v", p, fi.ModTime().UTC(), f.mtime)
		}
	}
	if tg, err := os.Readlink(filepath.Join(out, "out")); err != nil || tg != "../../../../etc/passwd" {
		t.Errorf("symlink: %q %v", tg, err)
	}
	if fi, err := os.Stat(filepath.Join(out, "d1")); err != nil || !fi.ModTime().Equal(old) || fi.Mode().Perm() != 0o755 {
		t.Errorf("directory d1: %v %v", fi, err)
	}
	// And ExtractTar reads its own tar back.
	if _, err := restore.ExtractTar(bytes.NewReader(buf.Bytes()), filepath.Join(parent, "go"), false, nil); err != nil {
		t.Errorf("ExtractTar of WriteTar's archive: %v", err)
	}
}

// TestExtractTarKeepsModesAndTimes: `xs-admin restore --to DIR` is
// WriteTar then ExtractTar; it should give back what `xo-backup restore
// --to DIR` (Restore) gives: each file's permission bits whatever the
// umask, and each directory's mtime (Restore sets both; GNU tar -p does
// too from the same archive, see TestWriteTarOddSnapshotForGNUTar).
func TestExtractTarKeepsModesAndTimes(t *testing.T) {
	m := newRA2Source()
	dirTime := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	sub := m.tree(t,
		m.file("shared.odt", []byte("group-writable"), 0o664, ra2T0),
		m.file("run.sh", []byte("#!/bin/sh\n"), 0o775, ra2T0))
	root := m.tree(t, ra2Dir("class", sub, 0o775, dirTime))
	var buf bytes.Buffer
	if _, err := restore.WriteTar(&buf, restore.SnapshotFS(context.Background(), m, root), nil); err != nil {
		t.Fatal(err)
	}
	viaTar, viaRestore := t.TempDir(), t.TempDir()
	if _, err := restore.ExtractTar(&buf, viaTar, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Restore(context.Background(), m, root, viaRestore, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"class", "class/shared.odt", "class/run.sh"} {
		a, err1 := os.Stat(filepath.Join(viaTar, p))
		b, err2 := os.Stat(filepath.Join(viaRestore, p))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", p, err1, err2)
		}
		if a.Mode() != b.Mode() {
			t.Errorf("%s: mode %v through the tar (xs-admin restore --to), %v through Restore (xo-backup restore --to)", p, a.Mode(), b.Mode())
		}
		if !a.ModTime().Equal(b.ModTime()) {
			t.Errorf("%s: mtime %v through the tar, %v through Restore", p, a.ModTime().UTC(), b.ModTime().UTC())
		}
	}
}

// TestExtractTarExistingFileSaysHow: `xs-admin restore --to DIR` into a
// directory that already holds one of the files stops; its message should
// say, as Restore's does ("use the overwrite option to replace it"), that
// --overwrite replaces it, not only "openat x: file exists".
func TestExtractTarExistingFileSaysHow(t *testing.T) {
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "data"), []byte("old"), 0o644)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644})
	tw.Write([]byte("new"))
	tw.Close()
	_, err := restore.ExtractTar(&buf, target, false, nil)
	if err == nil || !strings.Contains(err.Error(), "overwrite") {
		t.Fatalf("extracting over an existing file: %v; want a message naming the overwrite option", err)
	}
}

// requested keeps each path once, and none inside another: "d" and "d/f"
// are "d", but "d-x/f" is not inside "d".
func TestRequestedPaths(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, []string{""}},
		{[]string{"d", "d/f"}, []string{"d"}},
		{[]string{"d/f", "d"}, []string{"d"}},
		{[]string{"d", "d-x/f", "d/f", "./d-x/f"}, []string{"d", "d-x/f"}},
		{[]string{"a/b", "a/bc", "/", "x"}, []string{""}},
		{[]string{"a/b/c", "a/b", "a/bb"}, []string{"a/b", "a/bb"}},
	} {
		if got := restore.Requested(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRestoreOfARepeatingTreeIsRefused: a tree that names one subtree 32
// times, six levels deep, is a few kilobytes stored and ~10^9 paths
// expanded. Restore refuses it at MaxItems, before writing or holding more.
func TestRestoreOfARepeatingTreeIsRefused(t *testing.T) {
	src := newRA2Source()
	id := src.tree(t, src.file("f", []byte("x"), 0o644, time.Now()))
	for range 6 {
		ents := make([]manifest.Entry, 32)
		for i := range ents {
			ents[i] = manifest.Entry{Name: fmt.Sprintf("d%02d", i), Type: manifest.Dir, Mode: 0o755, Subtree: id}
		}
		id = src.tree(t, ents...)
	}
	target := t.TempDir()
	_, err := restore.Restore(t.Context(), src, id, target, restore.Options{})
	if !errors.Is(err, restore.ErrTooManyItems) {
		t.Fatalf("restore of a tree listing 32^6 paths: %v", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("the refused restore wrote %d entries", len(ents))
	}
}
