package backup_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Back a directory up into a store, leaving some of it out, then back it up
// again with the file cache a laptop keeps between runs: unchanged files
// are not read again, and only the one changed file is sent.
func ExampleRun() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-backup-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "docs")
	exampleWrite(src, map[string]string{
		"poem.txt":        "Roses are red\n",
		"story/part1.txt": "Once upon a time\n",
		"story/part2.txt": "they lived happily\n",
		"tmp/scratch.swp": "editor junk",
	})
	// A file backed up within a tick of its last write is read again by
	// the next run (it could still change unseen): wait that tick.
	time.Sleep(30 * time.Millisecond)

	// Reserve: -1 turns off the free-space reserve so that the example
	// runs on any disk.
	s, err := store.Open(ctx, filepath.Join(tmp, "store"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Approved: true})
	if err != nil {
		log.Fatal(err)
	}

	cacheFile := filepath.Join(tmp, "cache") // kept in the laptop's state
	runOnce := func() *backup.Result {
		cache, err := backup.LoadCache(cacheFile) // empty the first time
		if err != nil {
			log.Fatal(err)
		}
		res, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{Host: "xo-ana"}), backup.Options{
			Params: s.Params(), // always the target's parameters
			Cache:  cache,
			Exclude: func(rel string, isDir bool) bool {
				return isDir && rel == "tmp" // leaves tmp/ and all it holds out
			},
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := cache.Save(cacheFile); err != nil {
			log.Fatal(err)
		}
		return res
	}

	res := runOnce()
	fmt.Printf("first: %d files, %d dirs below the root, %d bytes read, %d chunks sent\n", res.Files, res.Dirs, res.BytesRead, res.ChunksNew)

	os.WriteFile(filepath.Join(src, "poem.txt"), []byte("Roses are red,\nviolets are blue\n"), 0o644)
	res = runOnce()
	fmt.Printf("second: %d files, %d bytes read, %d chunk sent\n", res.Files, res.BytesRead, res.ChunksNew)
	fmt.Println("snapshots:", len(s.Snapshots(u.ID)))
	// Output:
	// first: 3 files, 1 dirs below the root, 50 bytes read, 3 chunks sent
	// second: 3 files, 32 bytes read, 1 chunk sent
	// snapshots: 2
}

// Tell the server how big tonight's backup will be before asking for a
// place (EstimateScan reads no file content), then let Run reuse that walk.
func ExampleEstimateScan() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-backup-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	journal := filepath.Join(tmp, "datastore")
	exampleWrite(journal, map[string]string{
		"version": "6",
		"1f/1f2e3d4c-0000-4000-8000-000000000001/data":           "my first TurtleArt project",
		"1f/1f2e3d4c-0000-4000-8000-000000000001/metadata/title": "Ma tortue",
		"index/postlist.DB": "the Xapian index, rebuilt by Sugar",
	})

	s, err := store.Open(ctx, filepath.Join(tmp, "store"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Approved: true})
	if err != nil {
		log.Fatal(err)
	}

	cache := backup.NewCache()
	bytes, files, scan, err := backup.EstimateScan(ctx, journal, cache, backup.JournalExclude)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("to send: %d files, %d bytes (scan found %d files)\n", files, bytes, scan.Files())

	res, err := backup.Run(ctx, journal, s.Target(u.ID, store.CommitInfo{}), backup.Options{
		Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude, Scan: scan,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backed up: %d files, %d bytes\n", res.Files, res.BytesScanned)
	// Output:
	// to send: 3 files, 36 bytes (scan found 3 files)
	// backed up: 3 files, 36 bytes
}

// memTarget is a Target that keeps blobs in memory: what a program that
// sends backups somewhere of its own implements (the store and
// proto.Session are the two the project ships).
type memTarget struct {
	mu    sync.Mutex
	blobs map[blob.Ref]blob.Blob
	snaps []chunk.ID
}

func (m *memTarget) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	need := make([]bool, len(refs))
	for i, r := range refs {
		_, have := m.blobs[r]
		need[i] = !have
	}
	return need, nil
}

func (m *memTarget) Put(ctx context.Context, blobs []blob.Blob) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blobs {
		b.Data = append([]byte(nil), b.Data...) // Run reuses Data's memory
		m.blobs[b.Ref] = b
	}
	return nil
}

func (m *memTarget) Commit(ctx context.Context, root chunk.ID) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[blob.Ref{Type: blob.Tree, ID: root}]; !ok {
		return "", fmt.Errorf("root %s: %w", root.Short(), blob.ErrNotHeld)
	}
	m.snaps = append(m.snaps, root)
	return fmt.Sprintf("snap-%d", len(m.snaps)), nil
}

// Run backs up into anything that implements Target: here a map in memory.
// Two files with the same content are one chunk.
func ExampleTarget() {
	ctx := context.Background()
	src, err := os.MkdirTemp("", "xs-backup-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(src)
	exampleWrite(src, map[string]string{
		"a.txt":     "same words\n",
		"sub/b.txt": "same words\n",
	})

	t := &memTarget{blobs: map[blob.Ref]blob.Blob{}}
	res, err := backup.Run(ctx, src, t, backup.Options{Params: chunk.DefaultParams()})
	if err != nil {
		log.Fatal(err)
	}
	var chunks, trees int
	for r := range t.blobs {
		switch r.Type {
		case blob.Chunk:
			chunks++
		case blob.Tree:
			trees++
		}
	}
	fmt.Println("snapshot:", res.Snapshot)
	fmt.Printf("%d files, %d chunk, %d trees held\n", res.Files, chunks, trees)
	// Output:
	// snapshot: snap-1
	// 2 files, 1 chunk, 2 trees held
}

// exampleWrite creates files (slash-separated names) under dir.
func exampleWrite(dir string, files map[string]string) {
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
