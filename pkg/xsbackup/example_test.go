package xsbackup_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/xsbackup"
)

// Back a folder up into a local store, lose a file, and get it back.
func Example() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "xsbackup-example-")
	defer os.RemoveAll(tmp)
	docs := filepath.Join(tmp, "docs")
	os.Mkdir(docs, 0o755)
	os.WriteFile(filepath.Join(docs, "poem.txt"), []byte("Roses are red\n"), 0o644)

	repo, err := xsbackup.OpenLocal(ctx, filepath.Join(tmp, "store"), xsbackup.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()
	snap, err := repo.Backup(ctx, docs)
	if err != nil {
		log.Fatal(err)
	}
	os.Remove(filepath.Join(docs, "poem.txt")) // oops
	if err := repo.Restore(ctx, snap, docs, "poem.txt"); err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(docs, "poem.txt"))
	fmt.Print(string(b))
	// Output: Roses are red
}

// Back a laptop's folder up to a school server. Here the server runs in
// this process on loopback; on a laptop it is xs-backupd on the school
// server, and registration happened once, with xo-backup register (then
// Dial is all it takes).
func Example_server() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "xsbackup-example-")
	defer os.RemoveAll(tmp)
	addr, stop := startSchoolServer(filepath.Join(tmp, "server"))
	defer stop()
	docs := filepath.Join(tmp, "docs")
	os.Mkdir(docs, 0o755)
	os.WriteFile(filepath.Join(docs, "story.txt"), []byte("Once upon a time\n"), 0o644)

	state := filepath.Join(tmp, "laptop-state") // "" is the laptop's own
	reg, err := xsbackup.Register(ctx, state, xsbackup.RegisterOptions{Server: addr, Serial: "SHC12345678", Nickname: "Ana"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("registered:", reg.Serial, "approved:", reg.Approved)

	repo, err := xsbackup.Dial(ctx, state, xsbackup.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()
	snap, err := repo.Backup(ctx, docs)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backed up %d file(s), %d bytes\n", snap.Files, snap.Size)
	if err := repo.Restore(ctx, snap, filepath.Join(tmp, "restored"), "story.txt"); err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(tmp, "restored", "story.txt"))
	fmt.Print(string(b))
	// Output:
	// registered: SHC12345678 approved: true
	// backed up 1 file(s), 17 bytes
	// Once upon a time
}

// Dial the school server this laptop registered with (xo-backup register)
// and back the Sugar Journal up, as the laptop's timer would.
func ExampleDial() {
	ctx := context.Background()
	repo, err := xsbackup.Dial(ctx, "", xsbackup.Options{Exclude: xsbackup.JournalExclude})
	if err != nil {
		log.Fatal(err) // e.g. not registered: call xsbackup.Register first
	}
	defer repo.Close()
	home, _ := os.UserHomeDir()
	snap, err := repo.Backup(ctx, filepath.Join(home, ".sugar", "default", "datastore"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("backed up as", snap.ID)
}

// List the documents of a backed-up Sugar Journal by title, straight from
// the snapshot: nothing is restored, only the metadata is read.
func ExampleRepo_Open() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "xsbackup-example-")
	defer os.RemoveAll(tmp)
	datastore := filepath.Join(tmp, "datastore")
	writeEntry(datastore, "1f2e3d4c-0000-4000-8000-000000000001", "Ma tortue", "org.laptop.TurtleArtActivity", "1788000000")
	writeEntry(datastore, "a0b1c2d3-0000-4000-8000-000000000002", "My holidays", "org.laptop.AbiWordActivity", "1788003600")

	repo, err := xsbackup.OpenLocal(ctx, filepath.Join(tmp, "store"), xsbackup.Options{Exclude: xsbackup.JournalExclude})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()
	snap, err := repo.Backup(ctx, datastore)
	if err != nil {
		log.Fatal(err)
	}
	fsys, err := repo.Open(ctx, snap)
	if err != nil {
		log.Fatal(err)
	}
	entries, err := journal.Read(fsys)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Printf("%-10s %-12s %s\n", journal.ActivityName(e.Activity), e.Title, e.Time.UTC().Format("2006-01-02 15:04"))
	}
	// Output:
	// Write      My holidays  2026-08-29 11:40
	// TurtleArt  Ma tortue    2026-08-29 10:40
}

// writeEntry writes one Journal entry in Sugar's datastore layout.
func writeEntry(datastore, uid, title, activity, timestamp string) {
	dir := filepath.Join(datastore, uid[:2], uid)
	os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), []byte("the document of "+title), 0o644)
	for k, v := range map[string]string{"title": title, "activity": activity, "timestamp": timestamp} {
		os.WriteFile(filepath.Join(dir, "metadata", k), []byte(v), 0o644)
	}
}

// startSchoolServer runs a school server (xs-backupd's daemon) in this
// process, on a free loopback port, with open registration.
func startSchoolServer(dir string) (addr string, stop func()) {
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.RestorePage.Listen = "127.0.0.1:0", dir, "", ""
	cfg.Reserve = 0 // no free-space reserve: the example runs on any disk
	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready:
	case err := <-done:
		log.Fatal(err)
	}
	return d.Addr.String(), func() {
		cancel()
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
}
