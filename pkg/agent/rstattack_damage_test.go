package agent

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/damage"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestRstAttackDamagedBookHealsButRestoreAllNeverFetchesIt: a reflashed
// laptop's restore --all meets a damaged chunk of a book another laptop
// also has. It writes every other file and names the book. The laptop's
// timer runs as it does every 5 minutes; the next day the other laptop's
// backup sends the chunk again (the damage heals). Running restore --all
// again (--force) should now fetch the book the first run could not.
func TestRstAttackDamagedBookHealsButRestoreAllNeverFetchesIt(t *testing.T) {
	ctx := context.Background()
	d, src, st, jr := rstReflash(t, "RST-ROT-A", journalgen.Small(3)) // books 3 and 4
	other := State{Dir: t.TempDir()}
	osrc := t.TempDir()
	if _, err := journalgen.Generate(osrc, journalgen.Small(4)); err != nil { // books 4 and 5
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if _, err := Register(ctx, other, RegisterOptions{Server: d.Addr.String(), Serial: "RST-ROT-B"}); err != nil {
		t.Fatal(err)
	}
	run := func(st State, src string) {
		t.Helper()
		if res, err := Run(ctx, st, RunOptions{Source: src, Force: true, PowerSupplyDir: t.TempDir()}); err != nil || res.Outcome != Done {
			t.Fatalf("backup: %+v %v", res, err)
		}
	}
	run(other, osrc)
	// The shared book in the first laptop's Journal.
	book := journalgen.Book(42, 4, 200<<10)
	var rel string
	filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Equal(b, book) {
				rel, _ = filepath.Rel(src, p)
			}
		}
		return nil
	})
	if rel == "" {
		t.Fatal("the shared book is not in the Journal")
	}
	u, _ := d.Store.UserBySerial("RST-ROT-A")
	sn, err := d.Store.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	e, err := d.Store.Lookup(ctx, sn.Root, filepath.ToSlash(rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := damage.Record(d.Config.Data, e.Chunks[len(e.Chunks)/2]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store.Scrub(ctx, store.ScrubOptions{All: true}); err != nil {
		t.Fatal(err)
	}

	res, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr})
	var de *restore.DamagedError
	if !errors.As(err, &de) || len(res.Damaged) != 1 || res.Damaged[0].Path != filepath.ToSlash(rel) {
		t.Fatalf("restore --all with the book damaged: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(jr, rel)); err == nil {
		t.Fatal("the damaged book was written")
	}
	rstTimer(t, st, jr) // the laptop's timer, minutes later
	run(other, osrc)    // the other laptop's next backup heals the chunk
	if _, err := d.Store.Scrub(ctx, store.ScrubOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	if dm, _ := d.Store.Damaged(ctx); len(dm) != 0 {
		t.Fatalf("the other laptop's backup did not heal the chunk: %+v", dm)
	}
	// The book is whole on the server again, in the backup restore --all took.
	out := t.TempDir()
	if _, _, err := Restore(ctx, st, RestoreOptions{Snapshot: string(sn.ID), Target: out, Paths: []string{filepath.ToSlash(rel)}}); err != nil {
		t.Fatalf("the healed book from %s: %v", sn.ID, err)
	}
	res, got, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Overwrite: true})
	if err != nil {
		t.Fatalf("restore --all again after the damage healed: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(jr, rel)); err != nil || !bytes.Equal(b, book) {
		t.Fatalf("restore --all run again after the damage healed restored %d files from %s (the backup the timer made of the Journal without the book, not %s) and reported success; the book is still missing: %v",
			res.Files, got.ID, sn.ID, err)
	}
}
