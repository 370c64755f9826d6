package store_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestBitRot flips bytes inside pack files: check --read-data names every
// damaged chunk and the snapshot that uses it, and a restore writes every
// intact file, leaves the damaged ones out and lists them: never a file with
// wrong bytes.
func TestBitRot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, store.Options{})
	u := addUser(t, s, "ROT1")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(12)); err != nil {
		t.Fatal(err)
	}
	_, sn := backupDir(t, s, u, src, nil)
	s.Close()

	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	r := rand.New(rand.NewPCG(1, 2))
	flipped := 0
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		if len(b) < 4096 {
			continue
		}
		for i := 0; i < 3; i++ {
			off := 1024 + r.IntN(len(b)-2048)
			b[off] ^= 0x5a
			flipped++
		}
		os.WriteFile(p, b, 0o644)
	}
	if flipped == 0 {
		t.Fatal("no pack big enough to damage")
	}
	s = openStore(t, dir, store.Options{})
	rep, err := s.Check(ctx, store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	damaged, snapProblem := 0, false
	for _, p := range rep.Problems {
		switch p.Kind {
		case "damaged":
			damaged++
		case "snapshot":
			snapProblem = p.Snapshot == sn.ID
		}
	}
	if damaged == 0 || !snapProblem {
		t.Fatalf("check after %d flipped bytes: %+v", flipped, rep.Problems)
	}
	out := t.TempDir()
	res, err := s.Restore(ctx, sn, out, store.RestoreOptions{})
	if !errors.Is(err, store.ErrCorrupt) || len(res.Damaged) == 0 {
		t.Fatalf("restore of a damaged snapshot: %v %+v", err, res)
	}
	left := map[string]bool{}
	for _, p := range res.Damaged {
		left[p.Path] = true
	}
	intact := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if backup.JournalExclude(filepath.ToSlash(rel), false) {
			return nil
		}
		got, gerr := os.ReadFile(filepath.Join(out, rel))
		want, _ := os.ReadFile(p)
		switch {
		case left[filepath.ToSlash(rel)]:
			if gerr == nil {
				t.Errorf("damaged file %s was written", rel)
			}
		case gerr != nil:
			t.Errorf("intact file %s missing: %v", rel, gerr)
		case !bytes.Equal(got, want):
			t.Errorf("file %s restored with wrong bytes", rel)
		default:
			intact++
		}
		return nil
	})
	t.Logf("%d bytes flipped: %d damaged blobs, %d files left out, %d restored intact", flipped, damaged, len(res.Damaged), intact)
}
