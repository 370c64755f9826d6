package restore_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/damage"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// missingSource is a real store in which the blobs in missing are not in
// the index: each is asked of the store under an ID it never stored, so
// the store's own not-found error comes back.
type missingSource struct {
	s       *store.Store
	missing map[chunk.ID]bool
}

func (m *missingSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	for _, r := range refs {
		asked := r
		if m.missing[r.ID] {
			asked.ID = chunk.Sum([]byte("never stored " + r.ID.String()))
		}
		if err := m.s.Fetch(ctx, []blob.Ref{asked}, func(_ blob.Ref, raw []byte) error { return fn(r, raw) }); err != nil {
			return err
		}
	}
	return nil
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// tempLeft lists restore temporaries left under dir.
func tempLeft(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".xs-restore-") {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// TestRestoreGoesOnAfterRealDamage backs up twelve files twice, damages
// bytes in pack files on disk (a chunk in the middle of a large file, a
// chunk of a changed file, a directory's tree) and makes one chunk and
// another directory's tree missing from the index, then restores the
// newest snapshot: every intact file is byte for byte (the damaged tree's
// directory too: the tree reads from its copy in the index), the damaged
// ones and the missing directory's contents are absent (no file under the
// real name, no temporary left), the list is exact and names the older
// snapshot holding an intact copy.
func TestRestoreGoesOnAfterRealDamage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	u := addUser(t, s, "DAMAGE1")
	src := t.TempDir()
	files := map[string][]byte{}
	put := func(p string, b []byte) {
		files[p] = b
		writeFile(t, filepath.Join(src, filepath.FromSlash(p)), b)
	}
	put("big.bin", randBytes(1, 6<<20)) // several chunks
	put("changed.txt", randBytes(2, 3000))
	for i, p := range []string{"d1/a", "d1/b", "d1/c", "d2/e", "d2/f", "g", "h", "missing.txt", "k"} {
		put(p, randBytes(uint64(10+i), 1000+i*500))
	}
	older := mustRun(t, s, u, src, backup.Options{})
	put("changed.txt", randBytes(3, 4000))
	put("d2/f", randBytes(4, 2000))
	mustRun(t, s, u, src, backup.Options{})
	if len(files) != 11 {
		t.Fatalf("%d files", len(files))
	}
	sn, _ := s.Snapshot(u.ID, "latest")
	look := func(p string) *chunkList {
		e, err := restore.Lookup(ctx, s, sn.Root, p)
		if err != nil {
			t.Fatal(err)
		}
		return &chunkList{e.Chunks, e.Subtree}
	}
	bigChunk := look("big.bin").chunks[1]
	changedChunk := look("changed.txt").chunks[0]
	d2Tree := look("d2").subtree
	d1Tree := look("d1").subtree
	missing := look("missing.txt").chunks[0]
	if len(look("big.bin").chunks) < 3 {
		t.Fatalf("big.bin has %d chunks: the test wants a damaged chunk in the middle", len(look("big.bin").chunks))
	}
	s.Close()
	for _, id := range []chunk.ID{bigChunk, changedChunk, d2Tree} {
		if _, err := damage.Record(dir, id); err != nil {
			t.Fatal(err)
		}
	}
	s, err = store.Open(ctx, dir, store.Options{Reserve: -1, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sn, _ = s.Snapshot(u.ID, "latest")

	out := t.TempDir()
	src2 := &missingSource{s: s, missing: map[chunk.ID]bool{missing: true, d1Tree: true}}
	res, err := restore.Restore(ctx, src2, sn.Root, out, restore.Options{Older: s.OlderSnapshots(sn)})
	var de *restore.DamagedError
	if !errors.As(err, &de) || !errors.Is(err, blob.ErrDamaged) {
		t.Fatalf("restore of a damaged snapshot: %v", err)
	}
	want := []restore.DamagedFile{
		{Path: "big.bin"},
		{Path: "changed.txt", OlderSnapshot: older.Snapshot},
		{Path: "d1", Dir: true},
		{Path: "missing.txt"},
	}
	if len(res.Damaged) != len(want) {
		t.Fatalf("damaged %+v, want %+v", res.Damaged, want)
	}
	for i, d := range res.Damaged {
		if d.Path != want[i].Path || d.Dir != want[i].Dir || d.OlderSnapshot != want[i].OlderSnapshot {
			t.Errorf("damaged[%d] = %+v, want %+v", i, d, want[i])
		}
	}
	gone := func(p string) bool {
		return p == "big.bin" || p == "changed.txt" || p == "missing.txt" || strings.HasPrefix(p, "d1/")
	}
	intact := 0
	for p, b := range files {
		got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(p)))
		switch {
		case gone(p):
			if err == nil {
				t.Errorf("%s written (%d of %d bytes) though its data is damaged", p, len(got), len(b))
			}
		case err != nil:
			t.Errorf("intact file %s not restored: %v", p, err)
		case !bytes.Equal(got, b):
			t.Errorf("intact file %s restored with wrong bytes", p)
		default:
			intact++
		}
	}
	if intact != 5 || res.Files != 5 {
		t.Fatalf("%d intact files restored (result says %d), want 5 (d2's two among them)", intact, res.Files)
	}
	if left := tempLeft(t, out); len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}

	// Store.Restore finds the older snapshots itself.
	res, err = s.Restore(ctx, sn, t.TempDir(), store.RestoreOptions{})
	if !errors.Is(err, blob.ErrDamaged) || len(res.Damaged) != 2 || res.Damaged[1].OlderSnapshot != older.Snapshot {
		t.Fatalf("Store.Restore: %v %+v", err, res.Damaged)
	}
}

type chunkList struct {
	chunks  []chunk.ID
	subtree chunk.ID
}

// cancelSource cancels the restore after the first chunk of a file.
type cancelSource struct {
	src    restore.Source
	cancel context.CancelFunc
	after  chunk.ID
}

func (c *cancelSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	return c.src.Fetch(ctx, refs, func(r blob.Ref, raw []byte) error {
		if err := fn(r, raw); err != nil {
			return err
		}
		if r.ID == c.after {
			c.cancel()
			return ctx.Err()
		}
		return nil
	})
}

// TestCancelledRestoreLeavesNoPartialFile: a restore cancelled in the
// middle of a file leaves neither the file under its name nor a temporary.
func TestCancelledRestoreLeavesNoPartialFile(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "CANCEL1")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big.bin"), randBytes(5, 6<<20))
	mustRun(t, s, u, src, backup.Options{})
	sn, _ := s.Snapshot(u.ID, "latest")
	e, err := restore.Lookup(context.Background(), s, sn.Root, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := t.TempDir()
	_, err = restore.Restore(ctx, &cancelSource{src: s, cancel: cancel, after: e.Chunks[0]}, sn.Root, out, restore.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "big.bin")); err == nil {
		t.Fatal("a cancelled restore left a partial file under its real name")
	}
	if left := tempLeft(t, out); len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}
