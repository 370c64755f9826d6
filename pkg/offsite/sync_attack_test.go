package offsite

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/testkit"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/offsite/bundle"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// a4Mothership opens a mothership store with school-a registered under pub.
func a4Mothership(t *testing.T, pub ed25519.PublicKey) (*store.Store, *store.User) {
	t.Helper()
	ms := testkit.OpenStore(t)
	school, err := ms.AddUser(context.Background(), store.NewUser{Serial: "school-a", PublicKey: pub, Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	return ms, school
}

func laptopSnapshots(ms *store.Store, school store.UserID) int {
	n := 0
	for _, sn := range ms.Snapshots(school) {
		if sn.Origin != nil && sn.Origin.User != 0 {
			n++
		}
	}
	return n
}

// A blob damaged on the school server must cost an export only the
// snapshot that needs it (as it does for a network sync,
// TestReplicateDamagedBlob): the export reports that snapshot as failed and
// the mothership imports the others.
func TestExportWithADamagedBlob(t *testing.T) {
	ctx := context.Background()
	src, dirs := schoolStore(t, 6)
	photo := journalgen.Random(mrand.New(mrand.NewPCG(9, 9)), 300<<10)
	if err := os.WriteFile(filepath.Join(dirs[3], "photo"), photo, 0o644); err != nil {
		t.Fatal(err)
	}
	u3, _ := src.UserBySerial("SHC00003")
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
			os.WriteFile(p, b, 0o644)
			hit = true
		}
	}
	if !hit {
		t.Fatal("the photo's bytes are in no pack")
	}
	src, err := store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	ms, school := a4Mothership(t, pub)
	stick := t.TempDir()
	res, err := Export(ctx, src, newState(t), ExportOptions{Dir: stick, School: "school-a", Key: key})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	t.Logf("export: snapshots %d failed %v", res.Snapshots, res.Failed)
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "SHC00003") {
		t.Errorf("export with one damaged blob reports %d snapshots, failed %q: want laptop SHC00003's second snapshot failed", res.Snapshots, res.Failed)
	}
	ir, err := Import(ctx, ms, ImportOptions{Paths: []string{stick}, Key: key, DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("the mothership refuses the whole bundle for one damaged blob at the school: %v", err)
	}
	if got := laptopSnapshots(ms, school.ID); got != 6 {
		t.Errorf("mothership has %d laptop snapshots after the import (%+v), want the 6 intact ones", got, ir)
	}
}

// A school bundle (signed by the school) whose list of snapshots holds one
// the mothership refuses to commit must leave nothing visible: not the
// snapshots listed before it.
func TestImportRefusedCommitLeavesNothingVisible(t *testing.T) {
	ctx := context.Background()
	src, _ := schoolStore(t, 2)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	ms, school := a4Mothership(t, pub)
	stick := t.TempDir()
	fw, err := bundle.CreateFiles(stick, "xs-school-a", 0,
		bundle.Header{Kind: bundle.KindSchool, For: "school-a", Created: time.Now().UTC()}, key)
	if err != nil {
		t.Fatal(err)
	}
	var commits []commitRec
	done := map[blob.Ref]bool{}
	i := 0
	for _, u := range src.Users() {
		for _, sn := range src.Snapshots(u.ID) {
			err := eachBlob(ctx, src, sn.Root, done, func(r blob.Ref) error {
				b, err := src.ReadStored(ctx, r)
				if err != nil {
					return err
				}
				return fw.Writer.Blob(b)
			})
			if err != nil {
				t.Fatal(err)
			}
			it := Item{User: u.ID, Serial: u.Serial, Snap: sn}
			o := it.Origin()
			if i == 1 {
				// The second: a snapshot this mothership cannot take (as a
				// newer school release's ID format would be).
				o.Snapshot = "not-a-snapshot-id"
			}
			commits = append(commits, commitRec{Root: sn.Root, Info: manifest.CommitInfo{Host: sn.Host, Origin: o}})
			i++
		}
	}
	b, _ := json.Marshal(commits)
	if err := fw.Meta(metaCommits, b); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Import(ctx, ms, ImportOptions{Paths: []string{stick}, Key: key, DataDir: t.TempDir()})
	if err == nil {
		t.Fatal("a bundle with an invalid snapshot was imported")
	}
	t.Logf("refused: %v", err)
	if n := laptopSnapshots(ms, school.ID); n != 0 {
		t.Errorf("the import was refused, yet %d snapshot(s) of the bundle are visible on the mothership", n)
	}
}

// The first receipt a school sees pins its mothership: a receipt that any
// key signed, left on the stick by whoever carried it, makes the school
// believe every snapshot is off-site (Lag 0) and leave them out of every
// export, though the mothership never got them.
func TestForgedFirstReceiptOnTheStick(t *testing.T) {
	ctx := context.Background()
	src, _ := schoolStore(t, 3)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	state := newState(t)
	stick := t.TempDir()
	// The stranger knows the school's public key (it is in every bundle's
	// header) and the snapshot keys it wants to hide.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	r := &Receipt{Version: 1, School: "school-a", SchoolKey: pub, Mothership: stranger.Public().(ed25519.PublicKey),
		Bundle: "00112233445566778899aabbccddeeff", Imported: time.Now().UTC()}
	for _, it := range Pending(src, nil) {
		r.Snapshots = append(r.Snapshots, it.Key())
	}
	r.Sig = ed25519.Sign(stranger, r.signed())
	b, _ := json.Marshal(r)
	os.WriteFile(filepath.Join(stick, "receipt-school-a-00112233445566778899aabbccddeeff.json"), b, 0o644)
	res, err := Export(ctx, src, state, ExportOptions{Dir: stick, School: "school-a", Key: key})
	if err != nil {
		t.Logf("export refused (good): %v", err)
		return
	}
	lag := state.Lag(src)
	t.Logf("export carried %d snapshots; lag now %+v", res.Snapshots, lag)
	if res.Snapshots == 0 || lag.Snapshots == 0 {
		t.Errorf("a receipt signed by an unknown key confirmed %d snapshots never sent: the export carried %d, the lag says %d pending", len(r.Snapshots), res.Snapshots, lag.Snapshots)
	}
}

// The school's staff configured the mothership's key ([mothership] key):
// a receipt forged for a real bundle of the stick (its ID is on it),
// signed by another key, is refused, and nothing is marked off-site. The
// genuine mothership's receipt is read.
func TestConfiguredMothershipKeyRefusesAForgedReceipt(t *testing.T) {
	ctx := context.Background()
	src, _ := schoolStore(t, 3)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	msPub, msKey, _ := ed25519.GenerateKey(rand.Reader)
	state := newState(t)
	stick := t.TempDir()
	res, err := Export(ctx, src, state, ExportOptions{Dir: stick, School: "school-a", Key: key, Mothership: msPub})
	if err != nil {
		t.Fatal(err)
	}
	pending := len(Pending(src, nil))
	forge := func(signer ed25519.PrivateKey) []byte {
		r := &Receipt{Version: 1, School: "school-a", SchoolKey: key.Public().(ed25519.PublicKey), Mothership: signer.Public().(ed25519.PublicKey),
			Bundle: res.Bundle, Imported: time.Now().UTC()}
		for _, it := range Pending(src, nil) {
			r.Snapshots = append(r.Snapshots, it.Key())
		}
		r.Sig = ed25519.Sign(signer, r.signed())
		b, _ := json.Marshal(r)
		return b
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	name := filepath.Join(stick, "receipt-school-a-"+res.Bundle+".json")
	os.WriteFile(name, forge(stranger), 0o644)
	if _, err := Export(ctx, src, state, ExportOptions{Dir: t.TempDir(), Receipts: []string{name}, School: "school-a", Key: key, Mothership: msPub}); err == nil {
		t.Error("a receipt signed by a key other than the configured mothership's was read")
	}
	if lag := state.Lag(src); lag.Snapshots != pending {
		t.Fatalf("after the forged receipt %d of %d snapshots are still pending", lag.Snapshots, pending)
	}
	os.WriteFile(name, forge(msKey), 0o644)
	if _, err := Export(ctx, src, state, ExportOptions{Dir: t.TempDir(), Receipts: []string{name}, School: "school-a", Key: key, Mothership: msPub}); err != nil {
		t.Fatalf("the mothership's own receipt: %v", err)
	}
	if lag := state.Lag(src); lag.Snapshots != 0 {
		t.Errorf("after the mothership's receipt %d snapshots are pending", lag.Snapshots)
	}
}
