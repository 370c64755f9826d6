package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// exampleSnapshot backs files up into a new store under dir and returns
// the store (a restore.Source) and the snapshot's root tree.
func exampleSnapshot(ctx context.Context, dir string, files map[string]string) (*store.Store, chunk.ID) {
	src := filepath.Join(dir, "src")
	for name, content := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	// Reserve: -1 turns off the free-space reserve (any disk will do).
	s, err := store.Open(ctx, filepath.Join(dir, "store"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Approved: true})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()}); err != nil {
		log.Fatal(err)
	}
	sn, err := s.Snapshot(u.ID, "latest")
	if err != nil {
		log.Fatal(err)
	}
	return s, sn.Root
}

// Restore one directory of a snapshot into a folder. A second restore
// over the same files needs Overwrite.
func ExampleRestore() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-restore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	s, root := exampleSnapshot(ctx, tmp, map[string]string{
		"poem.txt":        "Roses are red\n",
		"story/part1.txt": "Once upon a time\n",
		"story/part2.txt": "they lived happily\n",
	})
	defer s.Close()

	out := filepath.Join(tmp, "restored") // created if needed
	res, err := restore.Restore(ctx, s, root, out, restore.Options{Paths: []string{"story"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("restored %d files, %d bytes\n", res.Files, res.Bytes)
	b, _ := os.ReadFile(filepath.Join(out, "story", "part1.txt"))
	fmt.Print(string(b))
	_, err = os.Stat(filepath.Join(out, "poem.txt"))
	fmt.Println("poem.txt restored:", err == nil)

	_, err = restore.Restore(ctx, s, root, out, restore.Options{Paths: []string{"story"}})
	fmt.Println("again without Overwrite refused:", errors.Is(err, fs.ErrExist))
	_, err = restore.Restore(ctx, s, root, out, restore.Options{Paths: []string{"story"}, Overwrite: true})
	fmt.Println("again with Overwrite:", err)
	// Output:
	// restored 2 files, 36 bytes
	// Once upon a time
	// poem.txt restored: false
	// again without Overwrite refused: true
	// again with Overwrite: <nil>
}

// Read a snapshot as an fs.FS without restoring it: list it and read one
// file. Only the trees and chunks touched are fetched.
func ExampleSnapshotFS() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-restore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	s, root := exampleSnapshot(ctx, tmp, map[string]string{
		"poem.txt":        "Roses are red\n",
		"story/part1.txt": "Once upon a time\n",
	})
	defer s.Close()

	fsys := restore.SnapshotFS(ctx, s, root)
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Println(p, d.IsDir())
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	b, err := fs.ReadFile(fsys, "story/part1.txt")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// . true
	// poem.txt false
	// story true
	// story/part1.txt false
	// Once upon a time
}

// Stream a snapshot as a tar archive (a download), and unpack it elsewhere.
func ExampleWriteTar() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-restore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	s, root := exampleSnapshot(ctx, tmp, map[string]string{
		"poem.txt":        "Roses are red\n",
		"story/part1.txt": "Once upon a time\n",
	})
	defer s.Close()

	var archive bytes.Buffer
	st, err := restore.WriteTar(&archive, restore.SnapshotFS(ctx, s, root), []string{"story"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("archived %d file, %d dir\n", st.Files, st.Dirs)

	out := filepath.Join(tmp, "unpacked")
	if _, err := restore.ExtractTar(&archive, out, false, nil); err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, "story", "part1.txt"))
	fmt.Print(string(b))
	// Output:
	// archived 1 file, 1 dir
	// Once upon a time
}

// rottenSource passes blobs through from a store, except that one chunk
// comes back with a byte flipped, as bit rot would leave it.
type rottenSource struct {
	restore.Source
	rotten chunk.ID
}

func (r rottenSource) Fetch(ctx context.Context, refs []blob.Ref, fn func(blob.Ref, []byte) error) error {
	return r.Source.Fetch(ctx, refs, func(ref blob.Ref, raw []byte) error {
		if ref.ID == r.rotten {
			raw = bytes.Clone(raw)
			raw[0] ^= 1
		}
		return fn(ref, raw)
	})
}

// Damage costs only what it touches: the file whose chunk does not verify
// is left out (never written in part) and named, everything else is
// restored, and the error matches blob.ErrDamaged.
func ExampleDamagedError() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-restore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	s, root := exampleSnapshot(ctx, tmp, map[string]string{
		"poem.txt":        "Roses are red\n",
		"story/part1.txt": "Once upon a time\n",
	})
	defer s.Close()

	src := rottenSource{Source: s, rotten: chunk.Sum([]byte("Once upon a time\n"))}
	out := filepath.Join(tmp, "restored")
	res, err := restore.Restore(ctx, src, root, out, restore.Options{})
	fmt.Println("damaged:", errors.Is(err, blob.ErrDamaged))
	var de *restore.DamagedError
	if errors.As(err, &de) {
		for _, f := range de.Files {
			fmt.Println("left out:", f.Path)
		}
	}
	fmt.Println("restored:", res.Files)
	b, _ := os.ReadFile(filepath.Join(out, "poem.txt"))
	fmt.Print(string(b))
	// Output:
	// damaged: true
	// left out: story/part1.txt
	// restored: 1
	// Roses are red
}
