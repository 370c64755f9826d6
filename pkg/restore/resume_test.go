package restore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// A restore with a progress file cut off half way, then run again: the
// files the first run wrote whole are not fetched again, unless anything
// touched them since (a write that kept size and time, a chmod, a file put
// back by rename); the result is the snapshot, and the progress file goes.
func TestResumeSkipsOnlyWhatIsStillAsWritten(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	u := addUser(t, s, "RESUME1")
	src := t.TempDir()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		b := make([]byte, 64<<10+rnd.IntN(200<<10)) // each fetched on its own
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		writeFile(t, filepath.Join(src, fmt.Sprintf("%02d", i%8), fmt.Sprintf("entry-%02d", i), "data"), b)
	}
	writeFile(t, filepath.Join(src, "big"), make([]byte, 3<<20))
	mustRun(t, s, u, src, backup.Options{})
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	progress := filepath.Join(t.TempDir(), "progress")
	// Cut off (the lid closed) once 20 files are written.
	cctx, cancel := context.WithCancel(ctx)
	first, err := restore.Restore(cctx, s, sn.Root, out, restore.Options{ResumeFile: progress, Progress: func(p restore.Progress) {
		if p.Files >= 20 {
			cancel()
		}
	}})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the cut restore: %v", err)
	}
	if first.Files == 0 {
		t.Fatal("the cut restore wrote nothing: the test cuts too early")
	}
	var written []string
	filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(out, p)
			written = append(written, rel)
		}
		return nil
	})
	if len(written) < 4 {
		t.Fatalf("only %d files written by the cut restore", len(written))
	}
	// Three of them touched in ways that keep size and modification time.
	old, _ := os.Lstat(filepath.Join(out, written[0]))
	rewritten := filepath.Join(out, written[0])
	b, _ := os.ReadFile(rewritten)
	b[0] ^= 1
	os.WriteFile(rewritten, b, 0o644)
	os.Chtimes(rewritten, old.ModTime(), old.ModTime())
	os.Chmod(filepath.Join(out, written[1]), 0o600)
	os.Chmod(filepath.Join(out, written[1]), old.Mode().Perm())
	moved := filepath.Join(out, written[2])
	b, _ = os.ReadFile(moved)
	b[len(b)-1] ^= 1
	st, _ := os.Lstat(moved)
	os.WriteFile(moved+".x", b, st.Mode().Perm())
	os.Chtimes(moved+".x", st.ModTime(), st.ModTime())
	os.Rename(moved+".x", moved)
	os.Remove(filepath.Join(out, written[3]))

	again := &rotSource{src: s}
	res, err := restore.Restore(ctx, again, sn.Root, out, restore.Options{ResumeFile: progress, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(src, out, nil); err != nil {
		t.Fatalf("after the second run: %v", err)
	}
	if want := int64(len(written) - 4); res.Kept != want {
		t.Errorf("the second run kept %d files, want the %d the first wrote whole and nothing touched since", res.Kept, want)
	}
	if res.Files != 61 {
		t.Errorf("the second run counts %d files, want 61", res.Files)
	}
	if _, err := os.Stat(progress); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the progress file stays after a whole restore: %v", err)
	}
	t.Logf("first run: %d files; second: %d kept, %d requests", first.Files, res.Kept, again.requests.Load())
}

// A progress file that belongs to another snapshot or another target, or
// holds garbage, is not trusted: everything is restored.
func TestResumeIgnoresAForeignProgressFile(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	u := addUser(t, s, "RESUME2")
	src := t.TempDir()
	for i := range 10 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), []byte(fmt.Sprintf("file %d", i)))
	}
	mustRun(t, s, u, src, backup.Options{})
	sn, _ := s.Snapshot(u.ID, "latest")
	out := t.TempDir()
	progress := filepath.Join(t.TempDir(), "progress")
	if _, err := restore.Restore(ctx, s, sn.Root, out, restore.Options{ResumeFile: progress}); err != nil {
		t.Fatal(err)
	}
	// The files as they are, listed for another snapshot, another target, or after garbage.
	listing := func() string {
		lines := ""
		for i := range 10 {
			fi, _ := os.Lstat(filepath.Join(out, fmt.Sprintf("f%d", i)))
			st := fi.Sys().(*syscall.Stat_t)
			lines += fmt.Sprintf("%d %d %d %d %q\n", st.Ino, fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Nano(), fmt.Sprintf("f%d", i))
		}
		return lines
	}
	abs, _ := filepath.Abs(out)
	var other chunk.ID
	other[0] = 1
	for name, head := range map[string]string{
		"other snapshot": fmt.Sprintf("xs-backup restore progress v1 %x %q\n", other[:], abs),
		"other target":   fmt.Sprintf("xs-backup restore progress v1 %x %q\n", sn.Root[:], abs+"x"),
		"garbage":        "\x00\xff",
	} {
		t.Run(name, func(t *testing.T) {
			for i := range 10 {
				p := filepath.Join(out, fmt.Sprintf("f%d", i))
				fi, _ := os.Lstat(p)
				os.WriteFile(p, []byte("zzzzzz"), 0o644)
				os.Chtimes(p, fi.ModTime(), fi.ModTime())
			}
			os.WriteFile(progress, []byte(head+listing()), 0o600)
			res, err := restore.Restore(ctx, s, sn.Root, out, restore.Options{ResumeFile: progress, Overwrite: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Kept != 0 {
				t.Errorf("kept %d files on the word of a progress file for %s", res.Kept, name)
			}
			if err := dircmp.Compare(src, out, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The right header for the files as they are: kept (the test above can fail).
	os.WriteFile(progress, []byte(fmt.Sprintf("xs-backup restore progress v1 %x %q\n", sn.Root[:], abs)+listing()), 0o600)
	res, err := restore.Restore(ctx, s, sn.Root, out, restore.Options{ResumeFile: progress, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 10 {
		t.Errorf("kept %d of the 10 files a right progress file lists", res.Kept)
	}
}
