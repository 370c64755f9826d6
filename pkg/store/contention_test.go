package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestManyUploadersOfSharedChunks is a whole school downloading the same
// books at once: many users upload the same chunks concurrently, so their
// index transactions all touch the same owner counts. Every upload and
// commit must succeed (conflicts are retried, never returned), and the
// counts must add up afterwards.
func TestManyUploadersOfSharedChunks(t *testing.T) {
	s := openStore(t, t.TempDir(), store.Options{})
	ctx := context.Background()
	const users, shared = 256, 16
	rng := rand.New(rand.NewPCG(1, 2))
	books := make([][]byte, shared)
	for i := range books {
		books[i] = make([]byte, 2048)
		for j := range books[i] {
			books[i][j] = byte(rng.Uint32())
		}
	}
	us := make([]*store.User, users)
	for i := range us {
		us[i] = addUser(t, s, fmt.Sprintf("SHARED%03d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i, u := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var entries []manifest.Entry
			// Each uploads the books one Put at a time (as a session's
			// batches do), in its own order, then its own document.
			order := rand.New(rand.NewPCG(uint64(i), 3)).Perm(shared)
			for _, k := range order {
				id, err := putChunk(s, u.ID, books[k])
				if err != nil {
					errs <- fmt.Errorf("user %d, book %d: %w", i, k, err)
					return
				}
				entries = append(entries, manifest.Entry{Name: fmt.Sprintf("book%02d", k), Type: manifest.File, Mode: 0o644,
					Size: int64(len(books[k])), Chunks: []chunk.ID{id}})
			}
			tr := &manifest.Tree{Entries: entries}
			tr.Sort()
			data, err := manifest.Encode(tr)
			if err != nil {
				errs <- err
				return
			}
			root := chunk.Sum(data)
			if err := s.Put(ctx, u.ID, []blob.Blob{{Ref: blob.Ref{Type: blob.Tree, ID: root}, Data: data, RawLen: len(data)}}); err != nil {
				errs <- fmt.Errorf("user %d, tree: %w", i, err)
				return
			}
			if _, err := s.Commit(ctx, u.ID, root, store.CommitInfo{Source: "journal"}); err != nil {
				errs <- fmt.Errorf("user %d, commit: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, u := range us {
		if n := len(s.Snapshots(u.ID)); n != 1 {
			t.Errorf("user %s has %d snapshots, want 1", u.Serial, n)
		}
	}
	checkClean(t, s)
}

// TestManyJournalsAtOnce is the same with real Journals: 256 sessions at
// once (a server configured with a large capacity), each committing a
// Journal of nested directories that shares its books with the others, so
// the reference-count jobs of the commits all touch the same counts.
func TestManyJournalsAtOnce(t *testing.T) {
	s := openStore(t, t.TempDir(), store.Options{})
	const users = 256
	root := t.TempDir()
	us := make([]*store.User, users)
	dirs := make([]string, users)
	for i := range us {
		us[i] = addUser(t, s, fmt.Sprintf("JOURNAL%03d", i))
		dirs[i] = filepath.Join(root, fmt.Sprint(i))
		o := journalgen.Options{Seed: uint64(i + 1), Entries: 6, MediaBytes: 8 << 10, DocBytes: 2 << 10, SharedBooks: 3, BookSeed: 42, BookBytes: 96 << 10}
		if _, err := journalgen.Generate(dirs[i], o); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i, u := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tg := s.Target(u.ID, store.CommitInfo{Source: dirs[i]})
			if _, err := backup.Run(context.Background(), dirs[i], tg, backup.Options{Params: s.Params(), Cache: backup.NewCache(), Exclude: backup.JournalExclude}); err != nil {
				errs <- fmt.Errorf("user %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, u := range us {
		sns := s.Snapshots(u.ID)
		if len(sns) != 1 {
			t.Errorf("user %s has %d snapshots, want 1", u.Serial, len(sns))
			continue
		}
		if i%64 == 0 {
			restoreAndCompare(t, s, sns[0], dirs[i])
		}
	}
	checkClean(t, s)
}
