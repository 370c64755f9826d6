package offsite_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// A school without a network link to its mothership sends its backups on a
// USB stick: Export writes a signed bundle of what the mothership lacks,
// the mothership's Import verifies it whole, ingests it and writes a signed
// receipt on the stick, and the school's next Export reads that receipt
// and carries only what is new.
func ExampleExport() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-offsite-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// The school server: its store (one laptop, one backup) and its key.
	schoolDir := filepath.Join(tmp, "school")
	school, err := store.Open(ctx, schoolDir, store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer school.Close()
	defer offsite.ForgetState(schoolDir)
	_, schoolKey, _ := ed25519.GenerateKey(nil) // xs-backupd keeps it in server.key
	laptop, _ := school.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Approved: true})
	journal := filepath.Join(tmp, "journal")
	os.MkdirAll(journal, 0o755)
	backUp := func(text string) {
		os.WriteFile(filepath.Join(journal, "diary.txt"), []byte(text), 0o644)
		if _, err := backup.Run(ctx, journal, school.Target(laptop.ID, store.CommitInfo{}), backup.Options{Params: school.Params()}); err != nil {
			log.Fatal(err)
		}
	}
	backUp("Monday: it rained\n")

	// The mothership: its store and key; its staff register the school by
	// the school server's public key (xs-admin register on the mothership).
	msDir := filepath.Join(tmp, "mothership")
	ms, err := store.Open(ctx, msDir, store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer ms.Close()
	_, msKey, _ := ed25519.GenerateKey(nil)
	acct, _ := ms.AddUser(ctx, store.NewUser{Serial: "school-a", PublicKey: schoolKey.Public().(ed25519.PublicKey), Approved: true})

	state, err := offsite.LoadState(schoolDir) // what the school knows is off-site
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("not off-site:", state.Lag(school).Snapshots)

	stick := filepath.Join(tmp, "stick") // a mounted USB stick: it must exist
	os.Mkdir(stick, 0o755)
	export := func() *offsite.ExportResult {
		res, err := offsite.Export(ctx, school, state, offsite.ExportOptions{Dir: stick, School: "school-a", Key: schoolKey})
		if err != nil {
			log.Fatal(err)
		}
		return res
	}
	importAt := func(files []string) (*offsite.ImportResult, error) {
		return offsite.Import(ctx, ms, offsite.ImportOptions{Paths: files, Key: msKey, DataDir: msDir})
	}

	// First trip.
	e1 := export()
	fmt.Printf("first export: %d snapshot, registry %v, %d piece\n", e1.Snapshots, e1.Registry, len(e1.Files))
	r1, err := importAt(e1.Files)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("imported for %s: %d snapshot (the laptop's; the registry apart)\n", r1.School, r1.Snapshots)
	_, err = importAt(e1.Files)
	fmt.Println("same bundle again refused:", errors.Is(err, errkind.ErrExists))
	os.RemoveAll(e1.Files[0]) // the stick keeps only the receipt

	// Second trip, a day later: the export reads the receipt first.
	backUp("Tuesday: sunshine\n")
	e2 := export()
	fmt.Printf("second export: %d snapshot, %d receipt read, based on the first: %v\n", e2.Snapshots, len(e2.Receipts), e2.Base == e1.Bundle)
	if _, err := importAt(e2.Files); err != nil {
		log.Fatal(err)
	}
	fmt.Println("on the mothership:", len(ms.Snapshots(acct.ID)), "snapshots")
	// Output:
	// not off-site: 1
	// first export: 1 snapshot, registry true, 1 piece
	// imported for school-a: 1 snapshot (the laptop's; the registry apart)
	// same bundle again refused: true
	// second export: 1 snapshot, 1 receipt read, based on the first: true
	// on the mothership: 3 snapshots
}

// Replicate sends what a State does not know to be off-site to any Sink:
// here straight into another store as the school's account (StoreSink),
// as a mothership's import does. A second run has nothing to send.
func ExampleReplicate() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-offsite-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	school, err := store.Open(ctx, filepath.Join(tmp, "school"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer school.Close()
	laptop, _ := school.AddUser(ctx, store.NewUser{Serial: "SHC12345678", Approved: true})
	journal := filepath.Join(tmp, "journal")
	os.MkdirAll(journal, 0o755)
	os.WriteFile(filepath.Join(journal, "diary.txt"), []byte("Monday: it rained\n"), 0o644)
	if _, err := backup.Run(ctx, journal, school.Target(laptop.ID, store.CommitInfo{}), backup.Options{Params: school.Params()}); err != nil {
		log.Fatal(err)
	}

	copyStore, err := store.Open(ctx, filepath.Join(tmp, "copy"), store.Options{Reserve: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer copyStore.Close()
	acct, _ := copyStore.AddUser(ctx, store.NewUser{Serial: "school-a", Approved: true})
	sink := &offsite.StoreSink{S: copyStore, User: acct.ID}

	// A State not made by LoadState lives in memory only.
	state := &offsite.State{Confirmed: map[string]time.Time{}}
	for run := 1; run <= 2; run++ {
		rep, err := offsite.Replicate(ctx, school, sink, state, offsite.Options{School: "school-a"})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("run %d: %d snapshot committed, %d blobs sent, registry sent %v\n", run, rep.Snapshots, rep.Blobs, rep.Registry)
	}
	fmt.Println("not off-site:", state.Lag(school).Snapshots)
	fmt.Println("snapshots in the copy:", len(copyStore.Snapshots(acct.ID)))
	// Output:
	// run 1: 1 snapshot committed, 2 blobs sent, registry sent true
	// run 2: 0 snapshot committed, 0 blobs sent, registry sent false
	// not off-site: 0
	// snapshots in the copy: 2
}
