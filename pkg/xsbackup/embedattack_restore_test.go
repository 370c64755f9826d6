package xsbackup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

func eaBacked(t *testing.T, files map[string]string) (*xsbackup.Repo, xsbackup.Snapshot, string) {
	t.Helper()
	src := t.TempDir()
	eaWrite(t, src, files)
	repo := eaOpen(t, "")
	t.Cleanup(func() { repo.Close() })
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return repo, sn, src
}

// Restore into a target that is a regular file: an error, and the file is
// left as it was.
func TestEmbedAttackRestoreTargetIsFile(t *testing.T) {
	repo, sn, _ := eaBacked(t, map[string]string{"a.txt": "A"})
	target := filepath.Join(t.TempDir(), "file")
	os.WriteFile(target, []byte("precious"), 0o644)
	if err := repo.Restore(context.Background(), sn, target); err == nil {
		t.Fatal("restore onto a regular file succeeded")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("target file now %q", b)
	}
}

// A symlink inside the target that points elsewhere: nothing may be
// written through it ("Nothing is ever written outside target").
func TestEmbedAttackRestoreSymlinkInTarget(t *testing.T) {
	repo, sn, _ := eaBacked(t, map[string]string{"sub/a.txt": "A", "sub/deeper/b.txt": "B", "c.txt": "C"})
	outside := t.TempDir()
	target := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(target, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "c.txt"), filepath.Join(target, "c.txt")); err != nil {
		t.Fatal(err)
	}
	for _, paths := range [][]string{nil, {"sub"}, {"sub/a.txt"}, {"sub/deeper/b.txt"}, {"c.txt"}} {
		repo.Restore(context.Background(), sn, target, paths...) // may fail; must not escape
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("Restore %v wrote %d entries outside the target, through a symlink in it", paths, len(ents))
		}
	}
}

// Snapshot 1 has d -> outside (a symlink), snapshot 2 has d/ as a real
// directory with files: restoring 1 then 2 into one target must not write
// through the link restored by the first.
func TestEmbedAttackRestoreLinkThenDir(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	src := t.TempDir()
	os.Symlink(outside, filepath.Join(src, "d"))
	repo := eaOpen(t, "")
	defer repo.Close()
	s1, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "d"))
	eaWrite(t, src, map[string]string{"d/f": "evil", "d/g/h": "evil2"})
	s2, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := repo.Restore(ctx, s1, target); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(target, "d")); err != nil || l != outside {
		t.Fatalf("symlink not restored: %q %v", l, err)
	}
	for _, p := range [][]string{nil, {"d"}, {"d/f"}, {"d/g/h"}} {
		repo.Restore(ctx, s2, target, p...)
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("Restore %v of the second snapshot wrote through the first's symlink: %d entries outside", p, len(ents))
		}
	}
}

// "Existing files are not overwritten: restoring onto one is an error."
// The existing file keeps its content and no temp file is left.
func TestEmbedAttackRestoreOverExisting(t *testing.T) {
	repo, sn, _ := eaBacked(t, map[string]string{"a.txt": "theirs", "dir/b.txt": "theirs too"})
	target := t.TempDir()
	eaWrite(t, target, map[string]string{"a.txt": "mine", "dir/b.txt": "mine too"})
	for _, p := range [][]string{nil, {"a.txt"}, {"dir"}, {"dir/b.txt"}} {
		err := repo.Restore(context.Background(), sn, target, p...)
		if err == nil {
			t.Errorf("Restore %v over existing files succeeded", p)
		}
		if !errors.Is(err, os.ErrExist) {
			t.Errorf("Restore %v over existing files: %v, want an error matching fs.ErrExist", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(target, "a.txt")); string(b) != "mine" {
		t.Errorf("a.txt overwritten: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "dir/b.txt")); string(b) != "mine too" {
		t.Errorf("dir/b.txt overwritten: %q", b)
	}
	if left := eaTempFiles(target); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// The error for an existing file must not send an embedder to an option
// Repo.Restore does not have ("use the overwrite option"): xsbackup's
// Restore has no overwrite option at all.
func TestEmbedAttackRestoreExistingErrorAdvice(t *testing.T) {
	repo, sn, _ := eaBacked(t, map[string]string{"a.txt": "theirs"})
	target := t.TempDir()
	eaWrite(t, target, map[string]string{"a.txt": "mine"})
	err := repo.Restore(context.Background(), sn, target, "a.txt")
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"overwrite option", "--overwrite", "xo-backup", "xs-admin"} {
		if strings.Contains(err.Error(), w) {
			t.Errorf("error %q advises %q, which xsbackup.Repo.Restore does not offer", err, w)
		}
	}
}

// Hostile Restore paths: never a panic, never a write outside target;
// those fs.ValidPath refuses are ErrInvalidPath, others "not found".
func TestEmbedAttackRestoreHostilePaths(t *testing.T) {
	repo, sn, _ := eaBacked(t, map[string]string{"a/b.txt": "B", "c": "C"})
	parent := t.TempDir()
	target := filepath.Join(parent, "t")
	ctx := context.Background()
	for _, p := range []string{"a/../c", "./c", "a//b.txt", "/c", "c/", "..", "a/..", "\xff/..", "a/./b.txt"} {
		if err := repo.Restore(ctx, sn, target, "c", p); !errors.Is(err, xsbackup.ErrInvalidPath) {
			t.Errorf("Restore(%q): %v, want ErrInvalidPath", p, err)
		}
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("refused restores created %v", ents)
	}
	for _, p := range []string{"c\x00", "a\x00/b.txt", "c\n", strings.Repeat("x/", 3000) + "y", strings.Repeat("z", 100000), "a/b.txt/x"} {
		err := repo.Restore(ctx, sn, target, p)
		if err == nil {
			t.Errorf("Restore(%.40q) succeeded", p)
		}
	}
	filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("a refused restore wrote %s", p)
		}
		return nil
	})
}

// A snapshot value from another Repo (valid ID, other store) or forged
// with a future/past ID is ErrNotFound, for Open and Restore.
func TestEmbedAttackForeignSnapshot(t *testing.T) {
	ctx := context.Background()
	repoA, snA, _ := eaBacked(t, map[string]string{"a": "A"})
	repoB, snB, _ := eaBacked(t, map[string]string{"b": "B"})
	_ = repoA
	forged := []xsbackup.Snapshot{snA, {ID: snA.ID + "0"}, {ID: strings.ToUpper(snA.ID)}, {ID: snA.ID[:len(snA.ID)-1]}, {ID: snA.ID + "/../" + snA.ID}, {ID: "99991231T235959Z-ffffff"}}
	for _, sn := range forged {
		if sn.ID == snB.ID {
			continue
		}
		if _, err := repoB.Open(ctx, sn); !errors.Is(err, xsbackup.ErrNotFound) {
			t.Errorf("Open(%q) on another repo: %v, want ErrNotFound", sn.ID, err)
		}
		if err := repoB.Restore(ctx, sn, t.TempDir()); !errors.Is(err, xsbackup.ErrNotFound) {
			t.Errorf("Restore(%q) on another repo: %v, want ErrNotFound", sn.ID, err)
		}
	}
	// A Snapshot value whose other fields lie still restores by ID.
	lie := snB
	lie.Files, lie.Size, lie.Time = -5, -1, time.Time{}
	out := t.TempDir()
	if err := repoB.Restore(ctx, lie, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "b")); string(b) != "B" {
		t.Fatalf("restored %q", b)
	}
}

// A Restore with a cancelled ctx fails with an error matching
// context.Canceled and writes no file.
func TestEmbedAttackRestoreCancelledBefore(t *testing.T) {
	repo, sn, _ := eaBacked(t, map[string]string{"a": "A", "d/b": "B"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	target := t.TempDir()
	err := repo.Restore(ctx, sn, target)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Restore with a cancelled ctx: %v, want context.Canceled", err)
	}
	filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("cancelled restore wrote %s", p)
		}
		return nil
	})
}

// Cancel a Restore at many points: no temp file is left, every file
// under its real name is whole, and a second Restore of the rest works.
func TestEmbedAttackRestoreCancelMidway(t *testing.T) {
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("d%d/f%03d", i%10, i)] = strings.Repeat(fmt.Sprintf("%d-", i), 200+i*10)
	}
	big := make([]byte, 12<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>9)
	}
	files["big.bin"] = string(big)
	repo, sn, src := eaBacked(t, files)
	deadline := time.Now().Add(6 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		target := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%20)*3*time.Millisecond+time.Millisecond)
		err := repo.Restore(ctx, sn, target)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled restore: %v (does not match the ctx error)", err)
		}
		if left := eaTempFiles(target); len(left) > 0 {
			t.Fatalf("round %d: temp files left after a cancelled restore: %v", i, left[:min(3, len(left))])
		}
		got := eaSnapshotTree(t, target)
		for p, c := range got {
			if strings.HasSuffix(p, "/") {
				continue
			}
			if files[p] != c {
				t.Fatalf("round %d: %s under its real name but not whole (%d of %d bytes)", i, p, len(c), len(files[p]))
			}
		}
		if i > 10 {
			break
		}
	}
	out := t.TempDir()
	if err := repo.Restore(context.Background(), sn, out); err != nil {
		t.Fatal(err)
	}
	eaSame(t, src, out, nil)
}

// A local Repo's restore into its own store directory, a folder inside it,
// or a folder holding it (the parent of the store, by another spelling
// through a symbolic link) is refused as an invalid path, and the store
// is left whole; a folder beside it restores.
func TestEmbedAttackRestoreIntoTheStore(t *testing.T) {
	src := t.TempDir()
	eaWrite(t, src, map[string]string{"key": "not the store's key", "packs/x": "P", "a.txt": "A"})
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	repo := eaOpen(t, dir)
	defer repo.Close()
	sn, err := repo.Backup(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(parent, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{dir, filepath.Join(dir, "packs"), filepath.Join(dir, "new", "folder"), parent, link, filepath.Join(link, "store", "..", "store")} {
		err := repo.Restore(context.Background(), sn, target)
		if !errors.Is(err, xsbackup.ErrInvalidPath) || !strings.Contains(err.Error(), "store's directory") {
			t.Errorf("Restore into %s: %v, want ErrInvalidPath naming the store's directory", target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Error("a refused restore created a folder inside the store")
	}
	beside := filepath.Join(parent, "restored")
	if err := repo.Restore(context.Background(), sn, beside); err != nil {
		t.Fatalf("restore beside the store: %v", err)
	}
	eaSame(t, src, beside, nil)
	repo.Close()
	eaCheckStore(t, dir)
}

// A Sugar tool restoring a deleted entry into the Journal it runs on: the
// entry is written and Sugar is asked to index it (its index would not
// know it, and the Journal would not list it); a restore into a plain
// folder keeps the snapshot's files as they are.
func TestEmbedRestoreIntoSugarsJournalAsksForAnIndex(t *testing.T) {
	const a, b = "aa/aa000000-0000-0000-0000-000000000000", "bb/bb000000-0000-0000-0000-000000000000"
	repo, sn, _ := eaBacked(t, map[string]string{
		"version": "6", a + "/data": "kept", a + "/metadata/title": "Kept",
		b + "/data": "deleted by mistake", b + "/metadata/title": "Deleted",
	})
	live := t.TempDir()
	eaWrite(t, live, map[string]string{"version": "6", "index_updated": "", "index/postlist.glass": "x", "checksums/queue/q": "",
		a + "/data": "kept", a + "/metadata/title": "Kept"})
	if err := repo.Restore(context.Background(), sn, live, b); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(live, b, "data")); string(got) != "deleted by mistake" {
		t.Fatalf("the entry restored as %q", got)
	}
	for _, name := range []string{"version", "index_updated"} {
		if _, err := os.Lstat(filepath.Join(live, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left in Sugar's Journal (%v): Sugar would not list the restored entry", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(live, "index", "postlist.glass")); err != nil {
		t.Errorf("Sugar's index touched: %v", err)
	}

	plain := t.TempDir()
	if err := repo.Restore(context.Background(), sn, plain); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(plain, "version")); err != nil || string(got) != "6" {
		t.Errorf("a restore into a plain folder changed the snapshot's version file: %q %v", got, err)
	}
}
