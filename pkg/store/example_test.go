package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "xs-store-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The first Open creates the store, with the default chunker parameters.
	s, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	p := s.Params()
	fmt.Println("default parameters:", p == chunk.DefaultParams())
	fmt.Printf("chunks of %d KiB to %d KiB, about %d KiB past the minimum\n", p.MinSize>>10, p.MaxSize>>10, (1<<p.AverageBits)>>10)
	s.Close()

	// A store keeps the parameters it was created with: every client must
	// cut files the same way, or dedup ends.
	other := chunk.DefaultParams()
	other.AverageBits = 20
	other.MaxSize = 4 << 20
	_, err = store.Open(context.Background(), dir, store.Options{Params: other})
	fmt.Println("reopen with other parameters refused:", errors.Is(err, store.ErrInvalid))
	// Output:
	// default parameters: true
	// chunks of 16 KiB to 512 KiB, about 64 KiB past the minimum
	// reopen with other parameters refused: true
}

func ExampleStore_Target() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// A tiny Sugar Journal datastore: one entry, its metadata, and the
	// Xapian index that backups leave out.
	journal := filepath.Join(tmp, "datastore")
	for name, content := range map[string]string{
		"version": "6",
		"1f/1f2e3d4c-0000-4000-8000-000000000001/data":           "my first TurtleArt project",
		"1f/1f2e3d4c-0000-4000-8000-000000000001/metadata/title": "Ma tortue",
		"index/postlist.DB": "disposable",
	} {
		p := filepath.Join(journal, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	// A file backed up within a tick of the filesystem's clock of its last
	// write is read again by the next backup (it could change unseen); a
	// Journal is not written a moment before its backup.
	time.Sleep(30 * time.Millisecond)

	// Reserve: -1 turns off the free-space reserve so that the example runs
	// on any disk; a server keeps the default.
	s, err := store.Open(ctx, filepath.Join(tmp, "store"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Nickname: "Ana", Approved: true})
	if err != nil {
		log.Fatal(err)
	}

	// Back the Journal up straight into the store, as that user, without
	// the network.
	target := s.Target(u.ID, store.CommitInfo{Host: "xo-ana", Source: journal})
	opts := backup.Options{Params: s.Params(), Exclude: backup.JournalExclude, Cache: backup.NewCache()}
	res, err := backup.Run(ctx, journal, target, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("first backup: %d files, %d chunks and %d trees sent\n", res.Files, res.ChunksNew, res.TreesNew)

	// Unchanged files are neither read nor sent again.
	res, err = backup.Run(ctx, journal, target, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("second backup: %d bytes read, %d bytes sent\n", res.BytesRead, res.BytesSent)

	for _, sn := range s.Snapshots(u.ID) {
		fmt.Printf("snapshot from %s: %d files, %d bytes\n", sn.Host, sn.Files, sn.Size)
	}
	// Output:
	// first backup: 3 files, 3 chunks and 4 trees sent
	// second backup: 0 bytes read, 0 bytes sent
	// snapshot from xo-ana: 3 files, 36 bytes
	// snapshot from xo-ana: 3 files, 36 bytes
}

func ExampleStore_Restore() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	files := map[string]string{
		"version": "6",
		"1f/1f2e3d4c-0000-4000-8000-000000000001/data":           "my first TurtleArt project",
		"1f/1f2e3d4c-0000-4000-8000-000000000001/metadata/title": "Ma tortue",
	}
	journal := filepath.Join(tmp, "datastore")
	for name, content := range files {
		p := filepath.Join(journal, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	s, err := store.Open(ctx, filepath.Join(tmp, "store"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Approved: true})
	if err != nil {
		log.Fatal(err)
	}
	_, err = backup.Run(ctx, journal, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()})
	if err != nil {
		log.Fatal(err)
	}

	// Restore the latest snapshot into an empty directory.
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		log.Fatal(err)
	}
	out := filepath.Join(tmp, "restored")
	res, err := s.Restore(ctx, sn, out, store.RestoreOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("restored %d files, %d bytes\n", res.Files, res.Bytes)
	same := true
	for name, content := range files {
		got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(name)))
		same = same && err == nil && bytes.Equal(got, []byte(content))
	}
	fmt.Println("content matches:", same)

	// One document can also be read without restoring anything.
	e, err := s.Lookup(ctx, sn.Root, "1f/1f2e3d4c-0000-4000-8000-000000000001/metadata/title")
	if err != nil {
		log.Fatal(err)
	}
	var title bytes.Buffer
	if _, err := title.ReadFrom(s.FileReader(ctx, e)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("title:", title.String())
	// Output:
	// restored 3 files, 36 bytes
	// content matches: true
	// title: Ma tortue
}

// The nightly lifecycle on a store with one laptop that backed up every day
// for two months: 45 days after the last backup, the default policy keeps the
// newest snapshot of each month (the last one is also the latest) and the
// pinned one.
func ExampleStore_Lifecycle() {
	dir, err := os.MkdirTemp("", "xs-store-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	day := time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)
	s, err := store.Open(ctx, dir, store.Options{Reserve: -1, Now: func() time.Time { return day }})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	u, _ := s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
	src, _ := os.MkdirTemp("", "xs-journal-")
	defer os.RemoveAll(src)
	for i := 0; i < 61; i++ { // March 1 .. April 30
		os.WriteFile(filepath.Join(src, "diary.txt"), fmt.Appendf(nil, "day %d", i), 0o644)
		if _, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()}); err != nil {
			log.Fatal(err)
		}
		day = day.Add(24 * time.Hour)
	}
	first := s.Snapshots(u.ID)[0]
	s.SetPin(ctx, u.ID, first.ID, true, "first day at school")

	rep, err := s.Lifecycle(ctx, store.LifecycleOptions{Now: day.AddDate(0, 0, 45)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted by retention:", rep.Retention.Deleted)
	for _, sn := range s.Snapshots(u.ID) {
		if sn.Pinned {
			fmt.Printf("kept %s (pinned: %s)\n", sn.Time.Format("Jan 2"), sn.PinReason)
		} else {
			fmt.Println("kept", sn.Time.Format("Jan 2"))
		}
	}
	fmt.Println("unused chunks collected:", rep.GC.BlobsDeleted > 0)
	// Output:
	// deleted by retention: 58
	// kept Mar 1 (pinned: first day at school)
	// kept Mar 31
	// kept Apr 30
	// unused chunks collected: true
}

// A disk rots under one document: the scrub finds it, the laptop's next
// backup (its Journal unchanged) sends that document's chunk again, and the
// damage is healed for every snapshot that used it.
func ExampleStore_Scrub() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	journal := filepath.Join(tmp, "datastore")
	os.MkdirAll(journal, 0o755)
	os.WriteFile(filepath.Join(journal, "essay.txt"), bytes.Repeat([]byte("My holidays. "), 1000), 0o644)

	s, err := store.Open(ctx, filepath.Join(tmp, "store"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	u, _ := s.AddUser(ctx, store.NewUser{Serial: "SHC1234", Approved: true})
	cache := backup.NewCache()
	backupNow := func() {
		t := s.Target(u.ID, store.CommitInfo{})
		if _, err := backup.Run(ctx, journal, t, backup.Options{Params: s.Params(), Cache: cache}); err != nil {
			log.Fatal(err)
		}
	}
	backupNow()

	// Bit rot: one byte in the middle of the pack file changes.
	packs, _ := filepath.Glob(filepath.Join(tmp, "store", "packs", "*", "*.pack"))
	b, _ := os.ReadFile(packs[0])
	b[len(b)/2] ^= 1
	os.WriteFile(packs[0], b, 0o640)

	rep, _ := s.Scrub(ctx, store.ScrubOptions{All: true})
	fmt.Println("damaged blobs found by the scrub:", len(rep.Damaged))
	backupNow() // the laptop's next backup heals it
	left, _ := s.Damaged(ctx)
	fmt.Println("damaged blobs after the next backup:", len(left))
	// Output:
	// damaged blobs found by the scrub: 1
	// damaged blobs after the next backup: 0
}
