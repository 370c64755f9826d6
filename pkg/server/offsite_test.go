package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/offsite/kit"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func startMothership(t *testing.T) *server.Daemon {
	return startDaemon(t, func(c *server.Config) {
		c.Role, c.Registration = "mothership", "approve"
		c.RestorePage.Listen = ""
		c.Lifecycle.At = ""
	})
}

func startSchool(t *testing.T, ms *server.Daemon, name string) *server.Daemon {
	return startDaemon(t, func(c *server.Config) {
		c.Mothership.Address, c.Mothership.School = ms.Addr.String(), name
		c.Mothership.Every = server.Duration(24 * time.Hour) // tests run it by hand
		c.Lifecycle.At = ""
	})
}

// TestReplicateToMothership: two schools and a mothership over QUIC on
// loopback. A school waits for the mothership's staff; then every snapshot
// goes up with its time and ID, restores byte for byte from the mothership,
// content shared by the two schools is stored once, neither school can tell
// what the other holds, a second sync sends nothing, and a snapshot deleted
// at the school stays on the mothership.
func TestReplicateToMothership(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	a, b := startSchool(t, ms, "school-a"), startSchool(t, ms, "school-b")
	var laps []*laptop
	for i := 0; i < 2; i++ {
		laps = append(laps, newLaptop(t, a, fmt.Sprintf("SHCA%03d", i), uint64(i)))
	}
	lb := newLaptop(t, b, "SHCB000", 7)
	for _, l := range laps {
		l.run(t)
	}
	lb.run(t)

	// Not approved yet: the school waits for the mothership's staff.
	for _, d := range []*server.Daemon{a, b} {
		if _, _, err := d.Sync(ctx, false); !errors.Is(err, errkind.ErrNotApproved) {
			t.Fatalf("sync before approval: %v, want not approved", err)
		}
	}
	msAdmin := &admin.Service{S: ms.Store}
	for _, name := range []string{"school-a", "school-b"} {
		if _, err := msAdmin.Approve(ctx, admin.ApproveRequest{Serial: name}); err != nil {
			t.Fatal(err)
		}
	}
	rep, lag, err := a.Sync(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 2 || lag.Snapshots != 0 || !rep.Registry {
		t.Fatalf("first sync: %+v, lag %+v", rep, lag)
	}
	t.Logf("school-a first sync: %d snapshots, %d blobs, %d bytes in %v", rep.Snapshots, rep.Blobs, rep.Bytes, rep.Took)

	// Every snapshot is there, same root (content-addressed: same bytes),
	// same time and origin; and it restores byte for byte.
	ua := userBySerial(t, ms, "school-a")
	onMS := ms.Store.Snapshots(ua.ID)
	if len(onMS) != 3 { // two laptops and the registry
		t.Fatalf("mothership has %d snapshots of school-a, want 3", len(onMS))
	}
	for _, l := range laps {
		u, _ := a.Store.UserBySerial(l.serial)
		for _, sn := range a.Store.Snapshots(u.ID) {
			var got *store.Snapshot
			for _, m := range onMS {
				if m.Origin != nil && m.Origin.User == uint64(u.ID) && m.Origin.Snapshot == string(sn.ID) {
					got = m
				}
			}
			if got == nil || got.Root != sn.Root || !got.Time.Equal(sn.Time) || got.Origin.Serial != l.serial {
				t.Fatalf("snapshot %s of %s on the mothership: %+v", sn.ID, l.serial, got)
			}
			out := t.TempDir()
			if _, err := ms.Store.Restore(ctx, got, out, store.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := dircmp.Compare(l.src, out, backup.JournalExclude); err != nil {
				t.Fatalf("restore from the mothership differs: %v", err)
			}
		}
	}

	var metrics strings.Builder
	if err := a.WriteMetrics(&metrics); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"xs_offsite_pending_snapshots 0", "xs_offsite_confirmed_snapshots 2", "xs_offsite_last_failed 0"} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A second sync with nothing new sends nothing.
	rep, _, err = a.Sync(ctx, false)
	if err != nil || rep.Snapshots != 0 || rep.Blobs != 0 || rep.Registry {
		t.Fatalf("unchanged sync: %+v %v", rep, err)
	}

	// School b shares the books (journalgen's shared set): stored once.
	before := diskUsage(t, ms)
	rep, _, err = b.Sync(ctx, false)
	if err != nil || rep.Snapshots != 1 {
		t.Fatalf("school-b sync: %+v %v", rep, err)
	}
	ub := userBySerial(t, ms, "school-b")
	book := sharedChunk(t, ctx, a.Store, b.Store)
	for _, u := range []store.UserID{ua.ID, ub.ID} {
		if held, _ := ms.Store.Holds(ctx, u, book); !held {
			t.Fatalf("school %s does not hold the shared book chunk", u)
		}
	}
	info, err := ms.Store.Stat(ctx, book)
	if err != nil || info.Owners != 2 {
		t.Fatalf("shared chunk on the mothership: %+v %v (want one copy, two owners)", info, err)
	}
	t.Logf("mothership disk: %d before school-b, %d after (school-b sent %d bytes)", before, diskUsage(t, ms), rep.Bytes)

	// Privacy: a chunk only school-a has is "needed" for school-b, exactly
	// like one nobody has.
	own := uniqueChunk(t, ctx, a.Store, b.Store)
	need, err := ms.Store.Need(ctx, ub.ID, []blob.Ref{own})
	if err != nil || !need[0] {
		t.Fatalf("school-b learns that school-a holds %s: need=%v %v", own, need, err)
	}

	// The school deletes its oldest snapshot (retention, GC): the
	// mothership keeps it and it still restores.
	l0 := laps[0]
	u0, _ := a.Store.UserBySerial(l0.serial)
	old := a.Store.Snapshots(u0.ID)[0]
	l0.run(t) // a newer one, so the old one may go
	if err := a.Store.DeleteSnapshot(ctx, u0.ID, old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store.GC(ctx, store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if rep, _, err = a.Sync(ctx, false); err != nil || rep.Snapshots != 1 {
		t.Fatalf("sync after the school's GC: %+v %v", rep, err)
	}
	var kept *store.Snapshot
	for _, m := range ms.Store.Snapshots(ua.ID) {
		if m.Origin != nil && m.Origin.Snapshot == string(old.ID) {
			kept = m
		}
	}
	if kept == nil {
		t.Fatal("the mothership lost a snapshot the school deleted")
	}
	if _, err := ms.Store.Restore(ctx, kept, t.TempDir(), store.RestoreOptions{}); err != nil {
		t.Fatalf("restore of a snapshot the school deleted: %v", err)
	}
}

// TestReplicationResumes: a sync cut off in the middle (its window ends)
// resumes without sending again what already arrived.
func TestReplicationResumes(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	a := startDaemon(t, func(c *server.Config) {
		c.Mothership.Address, c.Mothership.School = ms.Addr.String(), "school-a"
		c.Mothership.Every = server.Duration(24 * time.Hour)
		c.Mothership.Rate = 1 << 20 // 1 MB/s: the first sync takes seconds
		c.Lifecycle.At = ""
	})
	for i := 0; i < 3; i++ {
		newLaptop(t, a, fmt.Sprintf("SHCA%03d", i), uint64(10+i)).run(t)
	}
	if _, _, err := a.Sync(ctx, false); !errors.Is(err, errkind.ErrNotApproved) {
		t.Fatalf("sync before approval: %v", err)
	}
	if _, err := (&admin.Service{S: ms.Store}).Approve(ctx, admin.ApproveRequest{Serial: "school-a"}); err != nil {
		t.Fatal(err)
	}
	lag0 := mustLag(t, a)
	// Cut off once some bytes went: after 1.5 s, or longer on a loaded
	// machine where connecting took that long (a cut before any byte
	// tests nothing, and leaves nothing to resume).
	var rep1 *offsite.Report
	for wait := 1500 * time.Millisecond; ; wait *= 2 {
		cut, cancel := context.WithTimeout(ctx, wait)
		var err error
		rep1, _, err = a.Sync(cut, false)
		cancel()
		if err == nil {
			t.Fatalf("the sync was not cut off after %v (%+v): make the data bigger", wait, rep1)
		}
		if rep1 != nil && rep1.Bytes > 0 || wait > 10*time.Second {
			break
		}
		t.Logf("cut after %v before any byte went: again, longer", wait)
	}
	if rep1 == nil {
		t.Fatal("a sync cut off reported nothing")
	}
	rep2, lag, err := a.Sync(ctx, false)
	if err != nil || lag.Snapshots != 0 {
		t.Fatalf("resumed sync: %+v %+v %v", rep2, lag, err)
	}
	// What the first run sent is not sent again: both runs together send
	// about what one run would (a batch in flight at the cut may go twice).
	full := lag0.Bytes
	t.Logf("cut after %d bytes; resumed with %d; the snapshots hold %d", rep1.Bytes, rep2.Bytes, full)
	if rep1.Bytes == 0 || rep1.Bytes+rep2.Bytes > full+8<<20 {
		t.Fatalf("resume sent again: %d + %d bytes for %d", rep1.Bytes, rep2.Bytes, full)
	}
	ua := userBySerial(t, ms, "school-a")
	if n := len(ms.Store.Snapshots(ua.ID)); n != 4 {
		t.Fatalf("mothership has %d snapshots, want 3 and the registry", n)
	}
}

func mustLag(t *testing.T, d *server.Daemon) offsiteLag {
	t.Helper()
	_, lag, err := d.Sync(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	return offsiteLag{Snapshots: lag.Snapshots, Bytes: lag.Bytes}
}

type offsiteLag struct {
	Snapshots int
	Bytes     int64
}

func diskUsage(t *testing.T, d *server.Daemon) int64 {
	t.Helper()
	sp, err := d.Store.Space()
	if err != nil {
		t.Fatal(err)
	}
	return sp.PackBytes
}

// chunks returns every chunk of the latest snapshots of st.
func chunks(t *testing.T, ctx context.Context, st *store.Store) map[blob.Ref]bool {
	t.Helper()
	out := map[blob.Ref]bool{}
	for _, u := range st.Users() {
		sns := st.Snapshots(u.ID)
		for _, sn := range sns {
			err := st.Walk(ctx, sn.Root, func(p string, e *manifest.Entry) error {
				for _, c := range e.Chunks {
					out[blob.Ref{Type: blob.Chunk, ID: c}] = true
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func sharedChunk(t *testing.T, ctx context.Context, a, b *store.Store) blob.Ref {
	t.Helper()
	cb := chunks(t, ctx, b)
	for r := range chunks(t, ctx, a) {
		if cb[r] {
			return r
		}
	}
	t.Fatal("the two schools share no chunk")
	return blob.Ref{}
}

func uniqueChunk(t *testing.T, ctx context.Context, a, b *store.Store) blob.Ref {
	t.Helper()
	cb := chunks(t, ctx, b)
	for r := range chunks(t, ctx, a) {
		if !cb[r] {
			return r
		}
	}
	t.Fatal("school-a has no chunk of its own")
	return blob.Ref{}
}

// TestSneakernetAndRecovery: a school with no network to its mothership
// exports a bundle to a stick; the mothership imports it and writes a
// receipt on the stick; the next export holds only the delta. Tampered,
// replayed and foreign bundles are refused and change nothing. Then the
// school server dies: a new machine is rebuilt from the mothership's
// recovery bundle with the recovery passphrase, and the same laptops back
// up and restore without registering again.
func TestSneakernetAndRecovery(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	msKey := loadKey(t, ms.Config.Data)
	cfgA := server.DefaultConfig()
	cfgA.Listen, cfgA.Data, cfgA.Metrics, cfgA.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfgA.RestorePage.Listen, cfgA.Lifecycle.At = "", ""
	a, stopA := runDaemon(t, cfgA)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stopA()
		}
	})
	laps := []*laptop{newLaptop(t, a, "SHCA000", 21), newLaptop(t, a, "SHCA001", 22)}
	for _, l := range laps {
		l.run(t)
	}
	// Staff settings that a rebuilt server must keep: a pin, a quota and a
	// policy of one laptop's own.
	u1, _ := a.Store.UserBySerial("SHCA001")
	pinned := a.Store.Snapshots(u1.ID)[0]
	if _, err := a.Store.SetPin(ctx, u1.ID, pinned.ID, true, "science fair"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store.UpdateUser(ctx, u1.ID, func(u *store.User) error {
		u.Quota = &store.Quota{Soft: 300 << 20, Hard: 400 << 20}
		u.Retention = &store.Policy{KeepLast: 9}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	aKey := loadKey(t, cfgA.Data)
	kitA, err := offsite.MakeKit(cfgA.Data, "school-a", aKey)
	if err != nil {
		t.Fatal(err)
	}
	// The mothership's staff register the school by its public key.
	pubHex, _ := os.ReadFile(filepath.Join(cfgA.Data, offsite.RegPub))
	if _, err := (&admin.Service{S: ms.Store}).Register(ctx, admin.RegisterRequest{Serial: "school-a", Key: string(pubHex)}); err != nil {
		t.Fatal(err)
	}
	stick := t.TempDir()
	stateA, err := offsite.LoadState(cfgA.Data)
	if err != nil {
		t.Fatal(err)
	}
	exp := func() *offsite.ExportResult {
		t.Helper()
		res, err := offsite.Export(ctx, a.Store, stateA, offsite.ExportOptions{Dir: stick, PieceSize: 256 << 10, School: "school-a", Key: aKey, KeyDir: cfgA.Data})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	imp := func(paths ...string) (*offsite.ImportResult, error) {
		return offsite.Import(ctx, ms.Store, offsite.ImportOptions{Paths: paths, Key: msKey, DataDir: ms.Config.Data, ReceiptDir: stick})
	}
	e1 := exp()
	if len(e1.Files) < 2 || e1.Snapshots != 2 {
		t.Fatalf("first export: %d files, %+v", len(e1.Files), e1.Report)
	}

	// Tampered: one byte of one piece flipped. Refused, nothing visible.
	bad := t.TempDir()
	for i, f := range e1.Files {
		b, _ := os.ReadFile(f)
		if i == 1 {
			b[len(b)/2] ^= 0x40
		}
		os.WriteFile(filepath.Join(bad, filepath.Base(f)), b, 0o644)
	}
	ua := userBySerial(t, ms, "school-a")
	if _, err := imp(bad); err == nil {
		t.Fatal("a tampered bundle was imported")
	}
	if n := len(ms.Store.Snapshots(ua.ID)); n != 0 {
		t.Fatalf("a refused bundle left %d snapshots", n)
	}
	// A piece missing: refused.
	if _, err := imp(e1.Files[1:]...); err == nil {
		t.Fatal("a bundle with a missing piece was imported")
	}

	r1, err := imp(e1.Files...)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Snapshots != 2 { // two laptops (the registry is counted apart)
		t.Fatalf("import: %+v", r1)
	}
	// Replayed: refused.
	if _, err := imp(e1.Files...); !errors.Is(err, errkind.ErrExists) {
		t.Fatalf("replayed bundle: %v", err)
	}
	// The stick keeps last trip's bundle, and carries another school's
	// receipt too (it goes round several schools).
	_, otherMS, _ := ed25519.GenerateKey(nil)
	otherSchool, _, _ := ed25519.GenerateKey(nil)
	foreign := &offsite.Receipt{Version: 1, School: "school-z", SchoolKey: otherSchool, Mothership: otherMS.Public().(ed25519.PublicKey)}
	fb, _ := json.Marshal(foreign)
	os.WriteFile(filepath.Join(stick, "receipt-school-z-0000.json"), fb, 0o644)

	// A day later one laptop changed: the next export reads the receipt on
	// the stick and carries only that.
	if err := journalgen.Mutate(laps[0].src, 1, 1); err != nil {
		t.Fatal(err)
	}
	laps[0].run(t)
	e2 := exp()
	if len(e2.Receipts) != 1 || e2.Snapshots != 1 || e2.Base != e1.Bundle || e2.Bytes > e1.Bytes/2 {
		t.Fatalf("second export: %+v %+v (first %d bytes)", e2, e2.Report, e1.Bytes)
	}
	t.Logf("exports: first %d bytes in %d pieces, second (after a receipt) %d bytes", e1.Bytes, len(e1.Files), e2.Bytes)
	// Everything on the stick: the new bundle goes in, last trip's is
	// refused as a replay, and neither stops the other.
	done, refused, err := offsite.ImportEach(ctx, ms.Store, offsite.ImportOptions{Paths: []string{stick}, Key: msKey, DataDir: ms.Config.Data})
	if err != nil || len(done) != 1 || done[0].Bundle != e2.Bundle || len(refused) != 1 || !errors.Is(refused[0], errkind.ErrExists) {
		t.Fatalf("import of a stick with two bundles: %+v %v %v", done, refused, err)
	}

	// Foreign: a bundle signed by a server the mothership does not know.
	other := t.TempDir()
	stranger, _ := proto.GenerateKey()
	if _, err := offsite.Export(ctx, a.Store, &offsite.State{Confirmed: map[string]time.Time{}}, offsite.ExportOptions{Dir: other, School: "school-a", Key: stranger}); err != nil {
		t.Fatal(err)
	}
	if _, err := imp(other); !errors.Is(err, errkind.ErrPermission) {
		t.Fatalf("foreign bundle: %v", err)
	}

	// The school server dies. Its staff have the recovery kit; the
	// mothership writes a recovery bundle.
	oldSnaps := map[string]string{}
	for _, l := range laps {
		u, _ := a.Store.UserBySerial(l.serial)
		oldSnaps[l.serial] = string(a.Store.Snapshots(u.ID)[0].ID)
	}
	addr := a.Addr.String()
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	os.RemoveAll(cfgA.Data)
	rdir := t.TempDir()
	if _, err := offsite.ExportRecovery(ctx, ms.Store, ua, msKey, rdir, 0); err != nil {
		t.Fatal(err)
	}
	newData := filepath.Join(t.TempDir(), "data")
	ropts := offsite.RecoverOptions{DataDir: newData, Paths: []string{rdir}, Mothership: msKey.Public().(ed25519.PublicKey),
		School: "school-a", Passphrase: kitA.Passphrase, Store: store.Options{Reserve: -1}}
	rec := recoverRefusingAnotherPassphrase(t, ropts)
	if rec.Users != 2 || rec.Snapshots != 3 || rec.ServerKey != proto.Fingerprint(aKey.Public().(ed25519.PublicKey)) {
		t.Fatalf("recovered: %+v", rec)
	}
	cfgB := cfgA
	cfgB.Data, cfgB.Listen = newData, addr
	b, stopB := runDaemon(t, cfgB)
	defer stopB()
	r1u, err := b.Store.UserBySerial("SHCA001")
	if err != nil || r1u.ID != u1.ID || string(r1u.PublicKey) != string(u1.PublicKey) || r1u.Quota == nil || r1u.Quota.Hard != 400<<20 || r1u.Retention == nil || r1u.Retention.KeepLast != 9 {
		t.Fatalf("rebuilt laptop registration: %+v %v", r1u, err)
	}
	if sn, err := b.Store.Snapshot(u1.ID, pinned.ID); err != nil || !sn.Pinned || sn.PinReason != "science fair" || !sn.Time.Equal(pinned.Time) {
		t.Fatalf("rebuilt pinned snapshot: %+v %v", sn, err)
	}
	// The same laptops, not registered again: an old backup restores byte
	// for byte, and the next backup sends only what changed since.
	for i, l := range laps {
		if i == 1 {
			l.restoreAndCompare(t, oldSnaps[l.serial])
		}
		if err := journalgen.Mutate(l.src, uint64(5+i), 2); err != nil {
			t.Fatal(err)
		}
		r := l.run(t)
		l.restoreAndCompare(t, "latest")
		t.Logf("%s after the rebuild: %d new chunks, %d bytes sent", l.serial, r.Backup.ChunksNew, r.Backup.BytesSent)
	}
}

func loadKey(t *testing.T, dataDir string) ed25519.PrivateKey {
	t.Helper()
	k, err := server.LoadOrCreateKey(filepath.Join(dataDir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A laptop cannot pass a snapshot off as replicated (with an origin of its
// choosing: another laptop's ID, a time in the past) on a school server.
func TestLaptopCannotSendAnOrigin(t *testing.T) {
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "SHC0001", 3)
	l.run(t)
	u, _ := d.Store.UserBySerial("SHC0001")
	sn := d.Store.Snapshots(u.ID)[0]
	be := &server.Backend{S: d.Store}
	_, err := be.Commit(context.Background(), uint64(u.ID), sn.Root, proto.CommitInfo{Origin: &manifest.Origin{User: 99, Snapshot: string(sn.ID), Time: sn.Time.AddDate(-1, 0, 0)}})
	if !errors.Is(err, errkind.ErrBadRequest) {
		t.Fatalf("a laptop's commit with an origin: %v", err)
	}
	if n := len(d.Store.Snapshots(u.ID)); n != 1 {
		t.Fatalf("%d snapshots after a refused commit", n)
	}
}

// TestRecoverOverNetwork: with only its recovery kit's passphrase, a new
// machine fetches the school's recovery bundle from the mothership over
// QUIC (authenticated by the key the passphrase derives), and becomes the
// school's server again.
func TestRecoverOverNetwork(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	cfgA := server.DefaultConfig()
	cfgA.Listen, cfgA.Data, cfgA.Metrics, cfgA.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfgA.RestorePage.Listen, cfgA.Lifecycle.At = "", ""
	cfgA.Mothership.Address, cfgA.Mothership.School = ms.Addr.String(), "school-a"
	cfgA.Mothership.Every = server.Duration(24 * time.Hour)
	a, stopA := runDaemon(t, cfgA)
	laps := []*laptop{newLaptop(t, a, "SHCA000", 31), newLaptop(t, a, "SHCA001", 32)}
	for _, l := range laps {
		l.run(t)
	}
	kitA, err := offsite.MakeKit(cfgA.Data, "school-a", loadKey(t, cfgA.Data))
	if err != nil {
		t.Fatal(err)
	}
	a.Sync(ctx, false) // registers
	if _, err := (&admin.Service{S: ms.Store}).Approve(ctx, admin.ApproveRequest{Serial: "school-a"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	addr := a.Addr.String()
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(cfgA.Data)

	newData := filepath.Join(t.TempDir(), "data")
	msPub := loadKey(t, ms.Config.Data).Public().(ed25519.PublicKey)
	ropts := offsite.RecoverOptions{DataDir: newData, Addr: ms.Addr.String(), Mothership: msPub,
		School: "school-a", Passphrase: kitA.Passphrase, Store: store.Options{Reserve: -1}}
	rec := recoverRefusingAnotherPassphrase(t, ropts)
	if rec.Users != 2 || rec.Snapshots != 2 {
		t.Fatalf("recovered: %+v", rec)
	}
	cfgB := cfgA
	cfgB.Data, cfgB.Listen = newData, addr
	_, stopB := runDaemon(t, cfgB)
	defer stopB()
	for _, l := range laps {
		l.restoreAndCompare(t, "latest")
		if err := journalgen.Mutate(l.src, 9, 1); err != nil {
			t.Fatal(err)
		}
		l.run(t)
		l.restoreAndCompare(t, "latest")
	}
}

// TestMothershipTakesManyCommits: a school commits far more snapshots than
// a laptop (every laptop's, a whole history at the first sync); the
// laptops' commit rate limit must not cut its sync off. Loopback is made to
// count as a remote peer here, as a school's address is.
func TestMothershipTakesManyCommits(t *testing.T) {
	ctx := context.Background()
	ms := startDaemon(t, func(c *server.Config) {
		c.Role, c.Registration = "mothership", "approve"
		c.RestorePage.Listen, c.Lifecycle.At = "", ""
		c.Limits.LimitLoopback = true
	})
	a := startSchool(t, ms, "school-a")
	l := newLaptop(t, a, "SHCA000", 41)
	for i := 0; i < 30; i++ {
		l.run(t)
	}
	a.Sync(ctx, false) // registers
	if _, err := (&admin.Service{S: ms.Store}).Approve(ctx, admin.ApproveRequest{Serial: "school-a"}); err != nil {
		t.Fatal(err)
	}
	rep, lag, err := a.Sync(ctx, false)
	if err != nil || rep.Snapshots != 30 || lag.Snapshots != 0 {
		t.Fatalf("sync of 30 snapshots: %+v %+v %v", rep, lag, err)
	}
}

// A bundle made against a receipt this mothership never wrote lacks blobs
// the snapshots need: it is refused whole, nothing of it visible.
func TestImportRefusesAnIncompleteBundle(t *testing.T) {
	ctx := context.Background()
	ms := startMothership(t)
	msKey := loadKey(t, ms.Config.Data)
	a := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen, c.Lifecycle.At = "", "" })
	l := newLaptop(t, a, "SHCA000", 51)
	l.run(t)
	if err := journalgen.Mutate(l.src, 1, 1); err != nil {
		t.Fatal(err)
	}
	l.run(t)
	aKey := loadKey(t, a.Config.Data)
	if _, err := (&admin.Service{S: ms.Store}).Register(ctx, admin.RegisterRequest{Serial: "school-a", Key: hex.EncodeToString(aKey.Public().(ed25519.PublicKey))}); err != nil {
		t.Fatal(err)
	}
	// The school believes the mothership has its first snapshot.
	u, _ := a.Store.UserBySerial("SHCA000")
	first := a.Store.Snapshots(u.ID)[0]
	state := &offsite.State{Confirmed: map[string]time.Time{u.ID.String() + "/" + string(first.ID): time.Now()}}
	stick := t.TempDir()
	if _, err := offsite.Export(ctx, a.Store, state, offsite.ExportOptions{Dir: stick, School: "school-a", Key: aKey}); err != nil {
		t.Fatal(err)
	}
	_, err := offsite.Import(ctx, ms.Store, offsite.ImportOptions{Paths: []string{stick}, Key: msKey, DataDir: ms.Config.Data})
	if !errors.Is(err, errkind.ErrNotHeld) {
		t.Fatalf("an incomplete bundle: %v", err)
	}
	if n := len(ms.Store.Snapshots(userBySerial(t, ms, "school-a").ID)); n != 0 {
		t.Fatalf("a refused bundle left %d snapshots", n)
	}
}

// recoverRefusingAnotherPassphrase checks that a recovery with another
// valid passphrase is refused and writes nothing into the data directory,
// then recovers with ropts.
func recoverRefusingAnotherPassphrase(t *testing.T, ropts offsite.RecoverOptions) *offsite.RecoverResult {
	t.Helper()
	ctx := context.Background()
	wrong := ropts
	wrong.Passphrase, _ = kit.NewPassphrase()
	if _, err := offsite.Recover(ctx, wrong); !errors.Is(err, errkind.ErrPermission) {
		t.Fatalf("recover with another passphrase: %v", err)
	}
	if ents, _ := os.ReadDir(ropts.DataDir); len(ents) != 0 {
		t.Fatalf("a refused recovery left %d entries in the data directory", len(ents))
	}
	if ropts.Addr != "" {
		// A mistyped mothership key (or another machine at its address)
		// is said to be that, not "unreachable", and nothing is written.
		wrong = ropts
		other, _ := proto.GenerateKey()
		wrong.Mothership = other.Public().(ed25519.PublicKey)
		_, err := offsite.Recover(ctx, wrong)
		if !errors.Is(err, proto.ErrServerKeyChanged) || errors.Is(err, proto.ErrUnreachable) ||
			!strings.Contains(err.Error(), "mothership") || strings.Contains(err.Error(), "laptop") {
			t.Fatalf("recover with another mothership key: %v", err)
		}
		if ents, _ := os.ReadDir(ropts.DataDir); len(ents) != 0 {
			t.Fatalf("a refused recovery left %d entries in the data directory", len(ents))
		}
	}
	rec, err := offsite.Recover(ctx, ropts)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestSyncToAnImpostorMothership: another machine answering at the
// mothership's address with another key is refused as such (not
// "unreachable", nor a laptop's wording), the school does not register with
// it, and the error is what the school's sync status shows.
func TestSyncToAnImpostorMothership(t *testing.T) {
	ctx := context.Background()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfg.Role, cfg.Registration = "mothership", "approve"
	cfg.RestorePage.Listen, cfg.Lifecycle.At = "", ""
	ms, stop := runDaemon(t, cfg)
	a := startSchool(t, ms, "school-a")
	if _, _, err := a.Sync(ctx, false); !errors.Is(err, errkind.ErrNotApproved) {
		t.Fatalf("first sync, before the mothership's staff approve: %v", err)
	}
	addr := ms.Addr.String()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	impostor := startDaemon(t, func(c *server.Config) {
		c.Listen, c.Role, c.Registration = addr, "mothership", "open"
		c.RestorePage.Listen, c.Lifecycle.At = "", ""
	})
	_, _, err := a.Sync(ctx, false)
	if !errors.Is(err, proto.ErrServerKeyChanged) || errors.Is(err, proto.ErrUnreachable) ||
		!strings.Contains(err.Error(), "mothership") || strings.Contains(err.Error(), "laptop") {
		t.Fatalf("sync to another machine at the mothership's address: %v", err)
	}
	t.Log(err)
	if n := len(impostor.Store.Users()); n != 0 {
		t.Fatalf("the school registered with the impostor: %d accounts there", n)
	}
}
