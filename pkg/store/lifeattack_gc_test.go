package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestLifeAttackCommitAfterGCSweptItsChunkFailsCleanly: a laptop uploaded a
// chunk, went away for a week (its upload expired and GC swept it), and
// comes back with a manifest naming that chunk (its file cache says the
// server has it). The commit must be refused, no snapshot made, and the
// backup, retried as the client does, must upload again and commit whole.
func TestLifeAttackCommitAfterGCSweptItsChunkFailsCleanly(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, PendingExpiry: 72 * time.Hour})
	u := addUser(t, s, "SHCSWEPT")
	data := journalgen.Random(rand.New(rand.NewPCG(4, 4)), 80<<10)
	id, err := putChunk(s, u.ID, data)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(7 * 24 * time.Hour)
	if _, err := s.Lifecycle(ctx, store.LifecycleOptions{ScrubDays: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, blobRef(id)); err == nil {
		t.Fatal("the abandoned chunk was not swept")
	}
	root := uploadTree(t, s, u.ID, &manifest.Tree{Entries: []manifest.Entry{
		{Name: "report.odt", Type: manifest.File, Mode: 0o644, Size: int64(len(data)), Chunks: []chunk.ID{id}}}})
	if _, err := s.Commit(ctx, u.ID, root, store.CommitInfo{}); !errors.Is(err, store.ErrNotOwned) {
		t.Fatalf("commit naming a swept chunk: %v, want ErrNotOwned", err)
	}
	if n := len(s.Snapshots(u.ID)); n != 0 {
		t.Fatalf("%d snapshots after a refused commit", n)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "report.odt"), data, 0o644)
	_, sn := backupDir(t, s, u, src, backup.NewCache())
	restoreAndCompare(t, s, sn, src)
	checkClean(t, s)
}

// TestLifeAttackPinnedOnlyOverHardQuota: a laptop whose only snapshots are
// pinned and together over its hard quota (staff lowered it) cannot upload
// anything new, is told so, keeps every snapshot through the lifecycle, and
// can still commit its unchanged Journal (which needs no upload).
func TestLifeAttackPinnedOnlyOverHardQuota(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, ScrubDays: -1})
	u := addUser(t, s, "SHCPINQ")
	src := t.TempDir()
	var made []*store.Snapshot
	for i := 0; i < 3; i++ {
		made = append(made, replaceFile(t, s, u, src, uint64(600+i), 100<<10))
		clk.Add(40 * 24 * time.Hour)
	}
	for _, sn := range made {
		if _, err := s.SetPin(ctx, u.ID, sn.ID, true, "exam work"); err != nil {
			t.Fatal(err)
		}
	}
	us, _ := s.Usage(ctx, u.ID)
	if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error {
		u.Quota = &store.Quota{Soft: us.Bytes / 4, Hard: us.Bytes / 2}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Lifecycle(ctx, store.LifecycleOptions{Now: clk.Now().AddDate(1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Retention.Deleted+rep.Quota.Deleted != 0 || len(s.Snapshots(u.ID)) != 3 {
		t.Fatalf("pinned snapshots deleted: retention %d, quota %d", rep.Retention.Deleted, rep.Quota.Deleted)
	}
	os.WriteFile(filepath.Join(src, "new.odt"), journalgen.Random(rand.New(rand.NewPCG(6, 6)), 30<<10), 0o644)
	tg := s.Target(u.ID, store.CommitInfo{})
	if _, err := backup.Run(ctx, src, tg, backup.Options{Params: s.Params()}); !errors.Is(err, store.ErrOverQuota) {
		t.Fatalf("a new file over the hard quota: %v", err)
	}
	os.Remove(filepath.Join(src, "new.odt"))
	if _, sn := backupDir(t, s, u, src, nil); sn == nil || sn.Root != made[2].Root {
		t.Fatalf("the unchanged Journal was not committed: %+v", sn)
	}
	checkClean(t, s)
}

func blobRef(id chunk.ID) blob.Ref { return blob.Ref{Type: blob.Chunk, ID: id} }
