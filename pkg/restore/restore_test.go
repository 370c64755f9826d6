package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

// rotSource serves blobs from a real store, counting requests, and flips a
// byte in the chunks listed in rot (bit rot on the way: the restore's own
// hash check must catch it).
type rotSource struct {
	src      restore.Source
	rot      map[chunk.ID]bool
	requests atomic.Int64
}

func (r *rotSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	r.requests.Add(1)
	return r.src.Fetch(ctx, refs, func(ref blob.Ref, raw []byte) error {
		if r.rot[ref.ID] {
			raw = bytes.Clone(raw)
			raw[len(raw)/2] ^= 0x40
		}
		return fn(ref, raw)
	})
}

// TestRestoreManySmallFiles: a Journal is hundreds of small files in nested
// directories. A restore fetches them (and their trees) many to a request,
// not one round trip each; a damaged chunk costs only the file it belongs
// to, wherever it sits in a request.
func TestRestoreManySmallFiles(t *testing.T) {
	s := openStore(t)
	u := addUser(t, s, "SMALL1")
	src := t.TempDir()
	const entries = 150
	for i := range entries {
		dir := filepath.Join(src, fmt.Sprintf("%02x", i%16), fmt.Sprintf("entry-%03d", i))
		writeFile(t, filepath.Join(dir, "data"), bytes.Repeat([]byte(fmt.Sprintf("document %d ", i)), 50+i*7))
		writeFile(t, filepath.Join(dir, "metadata", "title"), []byte(fmt.Sprintf("Drawing %d", i)))
		writeFile(t, filepath.Join(dir, "metadata", "activity"), []byte("org.laptop.Oficina"))
	}
	writeFile(t, filepath.Join(src, "empty-file"), nil)
	mustRun(t, s, u, src, backup.Options{})
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}

	clean := &rotSource{src: s}
	out := t.TempDir()
	res, err := restore.Restore(context.Background(), clean, sn.Root, out, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(src, out, nil); err != nil {
		t.Fatalf("restore differs: %v", err)
	}
	files := int64(entries*3 + 1)
	if res.Files != files {
		t.Fatalf("restored %d files, want %d", res.Files, files)
	}
	if n := clean.requests.Load(); n > files/10 {
		t.Fatalf("%d requests for %d files and %d directories: small files and trees are not fetched together", n, files, res.Dirs)
	}
	t.Logf("%d files, %d directories in %d requests", res.Files, res.Dirs, clean.requests.Load())

	// Damage the data of three entries: first, middle and last of the walk.
	want := []string{"00/entry-000/data", "07/entry-071/data", "05/entry-149/data"}
	rot := &rotSource{src: s, rot: map[chunk.ID]bool{}}
	for _, p := range want {
		e, err := restore.Lookup(context.Background(), s, sn.Root, p)
		if err != nil {
			t.Fatal(err)
		}
		rot.rot[e.Chunks[0]] = true
	}
	out = t.TempDir()
	res, err = restore.Restore(context.Background(), rot, sn.Root, out, restore.Options{})
	if !errors.Is(err, blob.ErrDamaged) {
		t.Fatalf("restore with damaged chunks: %v", err)
	}
	slices.Sort(want)
	var got []string
	for _, d := range res.Damaged {
		got = append(got, d.Path)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("damaged %v, want %v", res.Damaged, want)
	}
	if res.Files != files-3 {
		t.Fatalf("restored %d files, want every other one (%d)", res.Files, files-3)
	}
	for _, p := range want {
		if _, err := os.Stat(filepath.Join(out, p)); err == nil {
			t.Errorf("damaged file %s was written", p)
		}
	}
	skip := func(rel string, isDir bool) bool { return slices.Contains(want, filepath.ToSlash(rel)) }
	if err := dircmp.Compare(src, out, skip); err != nil {
		t.Fatalf("intact files differ: %v", err)
	}
}
