package offsite

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/testkit"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// countingSink counts the requests a replication makes: each is a round
// trip to a mothership.
type countingSink struct {
	Sink
	mu                  sync.Mutex
	needs, puts, commit int
}

func (c *countingSink) Need(ctx context.Context, refs []blob.Ref) ([]bool, error) {
	c.mu.Lock()
	c.needs++
	c.mu.Unlock()
	return c.Sink.Need(ctx, refs)
}

func (c *countingSink) Put(ctx context.Context, blobs []blob.Blob) error {
	c.mu.Lock()
	c.puts++
	c.mu.Unlock()
	return c.Sink.Put(ctx, blobs)
}

func (c *countingSink) Commit(ctx context.Context, root chunk.ID, info manifest.CommitInfo) error {
	c.mu.Lock()
	c.commit++
	c.mu.Unlock()
	return c.Sink.Commit(ctx, root, info)
}

// schoolStore makes a store with one snapshot of a small Journal (the
// datastore's nested layout) for each of n laptops, and returns it with the
// Journals' directories.
func schoolStore(t *testing.T, n int) (*store.Store, []string) {
	t.Helper()
	ctx := context.Background()
	st := testkit.OpenStore(t)
	var dirs []string
	for i := range n {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		u, err := st.AddUser(ctx, store.NewUser{Serial: fmt.Sprintf("SHC%05d", i), PublicKey: pub, Approved: true})
		if err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		o := journalgen.Small(uint64(i) + 1)
		o.Entries = 6
		if _, err := journalgen.Generate(src, o); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Run(ctx, src, st.Target(u.ID, manifest.CommitInfo{Host: "xo"}), backup.Options{Params: st.Params(), Exclude: backup.JournalExclude}); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, src)
	}
	return st, dirs
}

func newState(t *testing.T) *State {
	s, err := LoadState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplicateAsksPerLevelNotPerSnapshot: the questions a replication asks
// (each a round trip to the mothership, 200 ms on a satellite link) do not
// grow with the number of snapshots: snapshots are walked together, level by
// level, and only the commits are one per snapshot.
func TestReplicateAsksPerLevelNotPerSnapshot(t *testing.T) {
	ctx := context.Background()
	const laptops = 24
	src, _ := schoolStore(t, laptops)
	ms, school := mothershipStore(t)
	sink := &countingSink{Sink: &StoreSink{S: ms, User: school.ID}}
	rep, err := Replicate(ctx, src, sink, newState(t), Options{School: "school-a"})
	if err != nil || rep.Snapshots != laptops || len(rep.Failed) > 0 {
		t.Fatalf("replicate: %+v %v", rep, err)
	}
	// The Journal's tree is root / xx / uid / metadata: four levels of
	// directories, a question for the trees and one for the chunks of each,
	// and the registry's own walk.
	t.Logf("%d snapshots: %d questions, %d puts, %d commits", laptops, sink.needs, sink.puts, sink.commit)
	if sink.needs > 16 {
		t.Errorf("%d questions for %d snapshots: they should be asked level by level for all of them", sink.needs, laptops)
	}
	if sink.commit != laptops+1 {
		t.Errorf("%d commits, want one per snapshot and the registry", sink.commit)
	}
	// Everything arrived: a second run sends nothing.
	rep, err = Replicate(ctx, src, &StoreSink{S: ms, User: school.ID}, newState(t), Options{School: "school-a"})
	if err != nil || rep.Blobs != 0 || rep.Snapshots != laptops {
		t.Fatalf("second replication with a forgotten state: %+v %v", rep, err)
	}
}

// TestReplicateDamagedBlob: a blob damaged on the school server fails the
// snapshots that need it and no other, although the group's walk stopped at
// it; the others arrive whole.
func TestReplicateDamagedBlob(t *testing.T) {
	ctx := context.Background()
	src, dirs := schoolStore(t, 6)
	// A photo only laptop 3 has: damage its bytes in the pack.
	photo := journalgen.Random(mrand.New(mrand.NewPCG(9, 9)), 300<<10)
	if err := os.WriteFile(filepath.Join(dirs[3], "photo"), photo, 0o644); err != nil {
		t.Fatal(err)
	}
	u3, err := src.UserBySerial("SHC00003")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, dirs[3], src.Target(u3.ID, manifest.CommitInfo{Host: "xo"}), backup.Options{Params: src.Params()}); err != nil {
		t.Fatal(err)
	}
	dir := src.Dir()
	src.Close()
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	hit := false
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		if i := bytes.Index(b, photo[100<<10:100<<10+64]); i >= 0 {
			b[i+10] ^= 0x5a
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			hit = true
		}
	}
	if !hit {
		t.Fatal("the photo's bytes are in no pack")
	}
	src, err = store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	ms, school := mothershipStore(t)
	rep, err := Replicate(ctx, src, &StoreSink{S: ms, User: school.ID}, newState(t), Options{School: "school-a"})
	if err != nil {
		t.Fatal(err)
	}
	// Laptop 3's two snapshots: the first does not have the photo.
	if len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0], "SHC00003") || rep.Snapshots != 6 {
		t.Fatalf("replication with a damaged blob: %+v", rep)
	}
	got := 0
	for _, sn := range ms.Snapshots(school.ID) {
		if sn.Origin != nil && sn.Origin.User != 0 {
			got++
		}
	}
	if got != 6 {
		t.Fatalf("the mothership has %d laptop snapshots, want the 6 intact ones", got)
	}
}

func mustPub(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// mothershipStore opens an empty mothership store (closed at the end of
// the test) with school-a registered and approved.
func mothershipStore(t *testing.T) (*store.Store, *store.User) {
	t.Helper()
	ms := testkit.OpenStore(t)
	school, err := ms.AddUser(context.Background(), store.NewUser{Serial: "school-a", PublicKey: mustPub(t), Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	return ms, school
}
