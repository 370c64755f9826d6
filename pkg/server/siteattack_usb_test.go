package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// saUSBSchool is a school without a network to its mothership: registered
// there by its key, its backups go by stick.
func saUSBSchool(t *testing.T, ms *server.Daemon, clk *saClock) (*saSchool, ed25519.PrivateKey) {
	t.Helper()
	s := saStartSchool(t, ms, "school-u", clk, func(c *server.Config) { c.Mothership.Address = "" })
	s.cfg.Mothership.School = "school-u"
	key := loadKey(t, s.cfg.Data)
	if _, err := (&admin.Service{S: ms.Store}).Register(context.Background(), admin.RegisterRequest{Serial: "school-u",
		Key: hex.EncodeToString(key.Public().(ed25519.PublicKey))}); err != nil {
		t.Fatal(err)
	}
	return s, key
}

// export is `xs-admin export --to stick` on the school, whose system clock
// is its clock.
func (s *saSchool) export(t *testing.T, key ed25519.PrivateKey, stick string) *offsite.ExportResult {
	t.Helper()
	state, err := offsite.LoadState(s.cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := offsite.Export(context.Background(), s.d.Store, state, offsite.ExportOptions{Dir: stick, School: "school-u",
		Key: key, KeyDir: s.cfg.Data, Now: s.clk.Now})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return res
}

func saImport(ms *server.Daemon, files []string) (*offsite.ImportResult, error) {
	key, _ := server.LoadOrCreateKey(filepath.Join(ms.Config.Data, "server.key"))
	return offsite.Import(context.Background(), ms.Store, offsite.ImportOptions{Paths: files, Key: key, DataDir: ms.Config.Data})
}

// TestSiteAttackImportAfterClockSetBack: a school's stick goes back and
// forth. After one trip its clock resets to 2000 (a power cut); the laptops
// back up, staff export as every week and carry the stick (with last trip's
// receipt read) to the mothership. The new bundle holds backups the
// mothership has never seen: it must be imported, not refused as a replay
// of an older bundle.
func TestSiteAttackImportAfterClockSetBack(t *testing.T) {
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s, key := saUSBSchool(t, ms, clk)
	l := newLaptop(t, s.d, "SHCUSB01", 81)
	saBackups(t, s, l, 1, 100)
	stick := t.TempDir()
	e1 := s.export(t, key, stick)
	if _, err := saImport(ms, e1.Files); err != nil {
		t.Fatal(err)
	}
	clk.set(saReset)
	newest := saBackups(t, s, l, 1, 200)[0]
	e2 := s.export(t, key, stick) // reads the receipt on the stick
	if e2.Snapshots != 1 {
		t.Fatalf("second export: %+v", e2.Report)
	}
	if _, err := saImport(ms, e2.Files); err != nil {
		t.Fatalf("a bundle of new backups, made while the school's clock read 2000, is refused: %v", err)
	}
	held := false
	for _, sn := range ms.Store.Snapshots(userBySerial(t, ms, "school-u").ID) {
		held = held || sn.Origin != nil && sn.Origin.Snapshot == string(newest)
	}
	if !held {
		t.Fatalf("the mothership lacks %s", newest)
	}
}

// TestSiteAttackImportAfterClockWasAhead: the school's clock was a year
// ahead the day staff made one export (imported at the mothership), then
// corrected. Every later bundle must still be imported: a single export
// made with a wrong clock must not stop the school's sneakernet for a year.
func TestSiteAttackImportAfterClockWasAhead(t *testing.T) {
	ms := startMothership(t)
	clk := newSAClock(saJan2026.AddDate(1, 0, 0))
	s, key := saUSBSchool(t, ms, clk)
	l := newLaptop(t, s.d, "SHCUSB02", 82)
	saBackups(t, s, l, 1, 100)
	stick := t.TempDir()
	e1 := s.export(t, key, stick)
	if _, err := saImport(ms, e1.Files); err != nil {
		t.Fatal(err)
	}
	clk.set(saJan2026) // corrected
	saBackups(t, s, l, 1, 200)
	e2 := s.export(t, key, stick)
	if _, err := saImport(ms, e2.Files); err != nil {
		t.Fatalf("after one export made with the clock a year ahead, the next bundle is refused: %v", err)
	}
}

// TestSiteAttackStaleBundleAfterNetworkSync (expected to pass): a bundle
// exported before a network sync of the same backups, imported after it,
// adds nothing twice; importing it again is a replay; the receipt lists
// every backup once.
func TestSiteAttackStaleBundleAfterNetworkSync(t *testing.T) {
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	l := newLaptop(t, s.d, "SHCUSB03", 83)
	saBackups(t, s, l, 2, 100)
	s.approve(t)
	key := loadKey(t, s.cfg.Data)
	stick := t.TempDir()
	state, _ := offsite.LoadState(s.cfg.Data)
	e1, err := offsite.Export(context.Background(), s.d.Store, state, offsite.ExportOptions{Dir: stick, School: "school-a", Key: key, KeyDir: s.cfg.Data, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.syncAt(t)
	school := userBySerial(t, ms, "school-a")
	before := len(ms.Store.Snapshots(school.ID))
	r, err := saImport(ms, e1.Files)
	if err != nil {
		t.Fatalf("a stale bundle after a network sync: %v", err)
	}
	if r.Snapshots != 0 || len(ms.Store.Snapshots(school.ID)) != before+1 { // only its older registry copy is new (no laptop's backup)
		t.Fatalf("stale bundle imported %d snapshots (%d before, %d after)", r.Snapshots, before, len(ms.Store.Snapshots(school.ID)))
	}
	if _, err := saImport(ms, e1.Files); !errors.Is(err, errkind.ErrExists) {
		t.Fatalf("replayed: %v", err)
	}
	rc, err := offsite.ReadReceipt(r.Receipt, nil, key.Public().(ed25519.PublicKey))
	if err != nil || len(rc.Snapshots) != 2 {
		t.Fatalf("receipt: %+v %v", rc, err)
	}
	// The receipt's registry is the newest copy (the network sync's), so
	// the next export does not send the registry again.
	if rc.Registry != state.Registry {
		t.Errorf("the receipt names registry %s, the school's newest copy (synced) is %s", rc.Registry, state.Registry)
	}
}

// TestSiteAttackReplicationAfterClockBefore2000: the school's clock read
// 1999-12-31 (UTC) for a night: an RTC kept in local time, reset to
// 2000-01-01 00:00 in a UTC+2 country. The backup made then is refused by
// the mothership ("no valid time"); that must not stop every later backup
// from going off-site.
func TestSiteAttackReplicationAfterClockBefore2000(t *testing.T) {
	ms := startMothership(t)
	clk := newSAClock(time.Date(1999, 12, 31, 22, 0, 0, 0, time.UTC))
	s := saStartSchool(t, ms, "school-a", clk, nil)
	l := newLaptop(t, s.d, "SHCY2K01", 84)
	saBackups(t, s, l, 1, 100)
	clk.set(saJan2026) // corrected
	later := saBackups(t, s, l, 2, 200)
	s.approve(t)
	rep, _, err := s.d.Sync(context.Background(), false)
	t.Logf("sync: %+v %v", rep, err)
	held := map[string]bool{}
	for _, sn := range ms.Store.Snapshots(userBySerial(t, ms, "school-a").ID) {
		if sn.Origin != nil {
			held[sn.Origin.Snapshot] = true
		}
	}
	for _, id := range later {
		if !held[string(id)] {
			t.Errorf("backup %s (made after the clock was corrected) never reaches the mothership: one backup dated 1999 stops replication", id)
		}
	}
	// Every later run stops at the same place: the school never learns
	// that the later backups are off-site, and its registry (laptops, keys,
	// the sealed key) never goes: the school cannot be rebuilt.
	if _, _, err := s.d.Sync(context.Background(), false); err != nil {
		t.Logf("next sync: %v", err)
	}
	lag := mustLag(t, s.d)
	if lag.Snapshots > 1 {
		t.Errorf("the school still counts %d backups as not off-site (only the one dated 1999 may be)", lag.Snapshots)
	}
	msKey := loadKey(t, ms.Config.Data)
	if _, err := offsite.ExportRecovery(context.Background(), ms.Store, userBySerial(t, ms, "school-a"), msKey, t.TempDir(), 0); err != nil {
		t.Errorf("the school's registry never reached the mothership, so it cannot be rebuilt: %v", err)
	}
}

// TestSiteAttackRecoverOntoFreshFilesystem: the new machine's data
// directory is the mount point of a freshly made filesystem (it holds an
// empty lost+found). Recovery must work there, and a refused one must not
// delete lost+found.
func TestSiteAttackRecoverOntoFreshFilesystem(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	l := newLaptop(t, s.d, "SHCMNT01", 85)
	saBackups(t, s, l, 1, 100)
	s.approve(t)
	s.sync(t)
	msKey := loadKey(t, ms.Config.Data)
	rdir := t.TempDir()
	if _, err := offsite.ExportRecovery(ctx, ms.Store, userBySerial(t, ms, "school-a"), msKey, rdir, 0); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.Mkdir(filepath.Join(data, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := offsite.Recover(ctx, offsite.RecoverOptions{DataDir: data, Paths: []string{rdir},
		Mothership: msKey.Public().(ed25519.PublicKey), School: "school-a", Passphrase: s.kit.Passphrase, Store: store.Options{Reserve: -1}})
	if err != nil {
		t.Errorf("recover onto a fresh filesystem's mount point: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "lost+found")); err != nil {
		t.Errorf("lost+found: %v", err)
	}
}

// A stick exported before a network sync is imported after it: its older
// registry copy (without the laptop registered since) arrived last. A
// rebuild takes the school's newest copy by the school's own numbering,
// not the one the mothership received last (nor the one the school's
// clock dated last): the laptop registered since comes back.
func TestRebuildTakesNewestRegistryAfterAStaleStick(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	l := newLaptop(t, s.d, "SHCUSB05", 86)
	saBackups(t, s, l, 1, 100)
	s.approve(t)
	key := loadKey(t, s.cfg.Data)
	stick := t.TempDir()
	state, _ := offsite.LoadState(s.cfg.Data)
	e1, err := offsite.Export(ctx, s.d.Store, state, offsite.ExportOptions{Dir: stick, School: "school-a", Key: key, KeyDir: s.cfg.Data, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	later := newLaptop(t, s.d, "SHCUSB06", 87)
	saBackups(t, s, later, 1, 200)
	s.syncAt(t)
	if _, err := saImport(ms, e1.Files); err != nil {
		t.Fatalf("the stale stick: %v", err)
	}
	msKey := loadKey(t, ms.Config.Data)
	rdir := t.TempDir()
	if _, err := offsite.ExportRecovery(ctx, ms.Store, userBySerial(t, ms, "school-a"), msKey, rdir, 0); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if _, err := offsite.Recover(ctx, offsite.RecoverOptions{DataDir: data, Paths: []string{rdir},
		Mothership: msKey.Public().(ed25519.PublicKey), School: "school-a", Passphrase: s.kit.Passphrase, Store: store.Options{Reserve: -1}}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	st, err := store.Open(ctx, data, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.UserBySerial("SHCUSB06"); err != nil {
		t.Errorf("the laptop registered after the stale stick was made is missing from the rebuilt server: %v", err)
	}
	rs, err := offsite.LoadState(data)
	if err != nil || rs.RegistrySeq < 2 {
		t.Errorf("the rebuilt school numbers its next registry copies from %d (want after the recovered one's, at least 2): %v", rs.RegistrySeq, err)
	}
}
