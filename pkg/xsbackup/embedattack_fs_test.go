package xsbackup_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// The docs: "The file system works until the Repo is closed; after that
// every read fails with ErrClosed." Reads that hit the decoded-tree cache
// (ReadDir, Stat) or need no chunk (an empty file) must fail too.
func TestEmbedAttackFSReadsAfterClose(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"sub/a.txt": "hello", "empty": "", "b.txt": "bbbbbbbb"})
	repo := eaOpen(t, "")
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: list and stat everything once while open.
	if _, err := fs.ReadDir(fsys, "."); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadDir(fsys, "sub"); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open("b.txt")
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := f.Read(one); err != nil {
		t.Fatal(err)
	}
	if err := repo.Close(); err != nil {
		t.Fatal(err)
	}
	var bad []string
	if _, err := fs.ReadDir(fsys, "sub"); !errors.Is(err, xsbackup.ErrClosed) {
		bad = append(bad, "ReadDir(sub): "+errString(err))
	}
	if _, err := fs.Stat(fsys, "sub/a.txt"); !errors.Is(err, xsbackup.ErrClosed) {
		bad = append(bad, "Stat(sub/a.txt): "+errString(err))
	}
	if _, err := fs.ReadFile(fsys, "empty"); !errors.Is(err, xsbackup.ErrClosed) {
		bad = append(bad, "ReadFile(empty): "+errString(err))
	}
	if _, err := io.ReadAll(f); !errors.Is(err, xsbackup.ErrClosed) {
		bad = append(bad, "Read of a file opened before Close: "+errString(err))
	}
	if len(bad) > 0 {
		t.Fatalf("reads after Close did not fail with ErrClosed:\n  %s", strings.Join(bad, "\n  "))
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil> (succeeded)"
	}
	return err.Error()
}

// fs.FS misuse: invalid names must be refused with fs.ErrInvalid (never a
// panic, never a lookup of something else), per the io/fs contract.
func TestEmbedAttackFSInvalidNames(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"a/b": "x", "b": "y"})
	repo := eaOpen(t, "")
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "/", "/b", "a/../b", "./b", "a//b", "a/b/", "a/.", "..", "../b", "a/b\x00", "b\x00"} {
		if _, err := fsys.Open(name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Open(%q): %v, want fs.ErrInvalid", name, err)
		}
		if _, err := fs.Stat(fsys, name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Stat(%q): %v, want fs.ErrInvalid", name, err)
		}
		if _, err := fs.ReadDir(fsys, name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ReadDir(%q): %v, want fs.ErrInvalid", name, err)
		}
	}
	// A file is not a directory.
	if _, err := fsys.Open("b/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(b/c) through a file: %v", err)
	}
	// Reading a closed file.
	f, err := fsys.Open("b")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := f.Read(make([]byte, 4)); err == nil {
		t.Errorf("Read after File.Close succeeded")
	}
	// A directory read as a file.
	d, err := fsys.Open("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(make([]byte, 4)); err == nil {
		t.Errorf("Read of a directory succeeded")
	}
}

// Odd names (newline, backslash, unicode NFC and NFD variants, 255-byte
// names, Latin-1 bytes) back up, list and read back per fstest.TestFS, and
// each restores by its own path.
func TestEmbedAttackFSOddNames(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	long := strings.Repeat("L", 255)
	files := map[string]string{
		"new\nline":   "1",
		"caf\u00e9":   "3 NFC",
		"cafe\u0301":  "4 NFD",
		long:          "5",
		"dir/" + long: "6",
		" space ":     "8",
		"-dash":       "9",
		"*?[":         "10",
	}
	eaWrite(t, src, files)
	repo := eaOpen(t, "")
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Files != int64(len(files)) {
		t.Errorf("snapshot has %d files, want %d", sn.Files, len(files))
	}
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for p := range files {
		names = append(names, p)
	}
	if err := fstest.TestFS(fsys, names...); err != nil {
		t.Errorf("TestFS: %v", err)
	}
	for p, c := range files {
		b, err := fs.ReadFile(fsys, p)
		if err != nil || string(b) != c {
			t.Errorf("ReadFile(%q): %q %v", p, b, err)
		}
		out := t.TempDir()
		if err := repo.Restore(ctx, sn, out, p); err != nil {
			t.Errorf("Restore(%q): %v", p, err)
		}
	}
	out := t.TempDir()
	if err := repo.Restore(ctx, sn, out); err != nil {
		t.Fatal(err)
	}
	eaSame(t, src, out, nil)
}

// A file whose name is not UTF-8 (a Latin-1 name from an old USB stick,
// or a name with a backslash) is backed up, listed and read by Open; the
// docs say Restore writes "some files and folders of it": it must restore
// that file by the very name Open lists (ErrInvalidPath is documented for
// "..", a leading "/" or an empty path only).
func TestEmbedAttackRestoreNameOpenLists(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := map[string]string{"caf\xe9.txt": "latin1", "back\\slash": "bs", "dir\xff/x": "in a latin1 dir"}
	eaWrite(t, src, files)
	repo := eaOpen(t, "")
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		b, err := fs.ReadFile(fsys, p)
		if err != nil || string(b) != c {
			t.Fatalf("Open lists/reads %q: %q %v", p, b, err)
		}
		out := t.TempDir()
		if err := repo.Restore(ctx, sn, out, p); err != nil {
			t.Errorf("Restore(%q), a file Open reads: %v", p, err)
		}
	}
}

// Many files open at once, and concurrent reads of one file system from
// many goroutines (run with -race).
func TestEmbedAttackFSManyOpenConcurrent(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := map[string]string{}
	for i := range 200 {
		files["d"+string(rune('a'+i%7))+"/f"+strings.Repeat("x", i%13)+string(rune('A'+i%26))+itoa(i)] = strings.Repeat(itoa(i), 50+i)
	}
	eaWrite(t, src, files)
	repo := eaOpen(t, "")
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := repo.Open(ctx, sn)
	if err != nil {
		t.Fatal(err)
	}
	var open []fs.File
	for range 20 {
		for p := range files {
			f, err := fsys.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, f)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			i := 0
			for p, c := range files {
				i++
				if i%8 != g {
					continue
				}
				b, err := fs.ReadFile(fsys, p)
				if err != nil || string(b) != c {
					errs <- errors.New(p + ": " + errString(err))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, f := range open {
		f.Close()
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
