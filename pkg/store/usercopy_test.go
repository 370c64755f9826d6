package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// A laptop's user file rots (bytes flipped in its block). The key is what
// lets the laptop in: without it the laptop is "not registered" every
// night and its backups unreachable until staff act. The store keeps a
// second copy of each user file and restores it whole; check then reports
// no problem, only the file it rebuilt. Without the copy (a store of an
// earlier release, or both damaged) the backups are kept under a
// placeholder, reported as a problem.
func TestDamagedUserFileRestoredFromItsCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	s := openStore(t, dir, store.Options{})
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHCUSER1", Nickname: "ana", Approved: true, PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	journalgen.Generate(src, journalgen.Small(3))
	backupDir(t, s, u, src, nil)
	s.Close()
	file := filepath.Join(dir, "users", u.ID.String()+".json")
	b, _ := os.ReadFile(file)
	for i := len(b) / 3; i < len(b)/3+16; i++ {
		b[i] ^= 0x5a
	}
	os.WriteFile(file, b, 0o640)

	s = openStore(t, dir, store.Options{})
	got, err := s.UserBySerial("SHCUSER1")
	if err != nil {
		t.Fatalf("the laptop's serial after its user file rotted: %v (users: %v)", err, s.Users())
	}
	if !pub.Equal(ed25519.PublicKey(got.PublicKey)) || got.ID != u.ID || !got.Approved {
		t.Fatalf("restored user %+v, want the same ID, key and approval", got)
	}
	if n := len(s.Snapshots(u.ID)); n != 1 {
		t.Fatalf("%d snapshots for the user", n)
	}
	rep, err := s.Check(ctx, store.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || len(rep.Restored) != 1 {
		t.Fatalf("check after the user was restored from its copy: %v, problems %+v, restored %+v", err, rep.Problems, rep.Restored)
	}
	s.Close()

	// Both damaged: the placeholder, and a problem that says so.
	os.WriteFile(file, []byte("{"), 0o640)
	os.WriteFile(file+".copy", []byte("{"), 0o640)
	s = openStore(t, dir, store.Options{})
	ph, err := s.UserBySerial("damaged-" + u.ID.String())
	if err != nil || ph.ID != u.ID || len(s.Snapshots(u.ID)) != 1 {
		t.Fatalf("placeholder: %+v %v", ph, err)
	}
	rep, err = s.Check(ctx, store.CheckOptions{})
	if err != nil || rep.OK() || !strings.Contains(rep.Problems[len(rep.Problems)-1].Detail, "register again") {
		t.Fatalf("check with a user file lost for good: %v %+v", err, rep.Problems)
	}
}
