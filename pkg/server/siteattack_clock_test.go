package server_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// A school server's clock as its staff and its dead RTC leave it: set with
// saClock.set, it then runs on from there.
type saClock struct {
	mu   sync.Mutex
	base time.Time // the clock's reading at ref
	ref  time.Time // real time of the last set
}

func newSAClock(t time.Time) *saClock { return &saClock{base: t, ref: time.Now()} }

func (c *saClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Since(c.ref))
}

func (c *saClock) set(t time.Time) {
	c.mu.Lock()
	c.base, c.ref = t, time.Now()
	c.mu.Unlock()
}

// saSchool is a school server replicating to a mothership, with a clock of
// its own, a recovery kit and its laptops.
type saSchool struct {
	ms      *server.Daemon
	msKey   ed25519.PrivateKey
	cfg     server.Config
	d       *server.Daemon
	stop    func() error
	stopped bool
	clk     *saClock
	kit     *offsite.Kit
}

func saStartSchool(t *testing.T, ms *server.Daemon, name string, clk *saClock, mod func(*server.Config)) *saSchool {
	t.Helper()
	s := &saSchool{ms: ms, msKey: loadKey(t, ms.Config.Data), clk: clk}
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfg.RestorePage.Listen, cfg.Lifecycle.At = "", ""
	cfg.Mothership.Address, cfg.Mothership.School = ms.Addr.String(), name
	cfg.Mothership.Every = server.Duration(24 * time.Hour)
	cfg.Now = clk.Now
	if mod != nil {
		mod(&cfg)
	}
	s.cfg = cfg
	s.d, s.stop = runDaemon(t, cfg)
	t.Cleanup(func() {
		if !s.stopped {
			s.stop()
		}
	})
	k, err := offsite.MakeKit(cfg.Data, name, loadKey(t, cfg.Data))
	if err != nil {
		t.Fatal(err)
	}
	s.kit = k
	return s
}

// approve makes the school's first sync (it registers) and has the
// mothership's staff approve it.
func (s *saSchool) approve(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	s.d.Sync(ctx, false) // registers
	if _, err := (&admin.Service{S: s.ms.Store}).Approve(ctx, admin.ApproveRequest{Serial: s.cfg.Mothership.School}); err != nil {
		t.Fatal(err)
	}
}

func (s *saSchool) sync(t *testing.T) *offsite.Report {
	t.Helper()
	rep, _, err := s.d.Sync(context.Background(), false)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return rep
}

// syncAt is sync as the daemon runs it (offsite.Sync) on a machine whose
// system clock is the school's clock (the daemon stamps the registry copy
// with time.Now, which a test cannot set).
func (s *saSchool) syncAt(t *testing.T) *offsite.Report {
	t.Helper()
	state, err := offsite.LoadState(s.cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	m := offsite.Mothership{Addr: s.cfg.Mothership.Address, School: s.cfg.Mothership.School, Key: loadKey(t, s.cfg.Data)}
	rep, err := offsite.Sync(context.Background(), s.d.Store, m, state, offsite.Options{School: m.School, KeyDir: s.cfg.Data, Now: s.clk.Now})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return rep
}

// rebuild kills the school server, wipes its data directory and rebuilds it
// from the mothership's recovery bundle (as `xs-admin export --recovery`
// there and `xs-admin recover --from` here), then starts it again on the
// same address with clock clk.
func (s *saSchool) rebuild(t *testing.T, clk *saClock) (*server.Daemon, *offsite.RecoverResult, error) {
	t.Helper()
	ctx := context.Background()
	addr := s.d.Addr.String()
	if !s.stopped {
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		s.stopped = true
	}
	offsite.ForgetState(s.cfg.Data)
	os.RemoveAll(s.cfg.Data)
	school := userBySerial(t, s.ms, s.cfg.Mothership.School)
	rdir := t.TempDir()
	if _, err := offsite.ExportRecovery(ctx, s.ms.Store, school, s.msKey, rdir, 0); err != nil {
		return nil, nil, err
	}
	newData := filepath.Join(t.TempDir(), "data")
	rec, err := offsite.Recover(ctx, offsite.RecoverOptions{DataDir: newData, Paths: []string{rdir},
		Mothership: s.msKey.Public().(ed25519.PublicKey), School: s.cfg.Mothership.School,
		Passphrase: s.kit.Passphrase, Store: store.Options{Reserve: -1}})
	if err != nil {
		return nil, nil, err
	}
	cfg := s.cfg
	cfg.Data, cfg.Listen, cfg.Now = newData, addr, clk.Now
	d, stop := runDaemon(t, cfg)
	t.Cleanup(func() { stop() })
	return d, rec, nil
}

var (
	saJan2026 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	saReset   = time.Date(2000, 1, 1, 10, 0, 0, 0, time.UTC) // a flat CMOS battery after a power cut
)

// saBackups makes n backups of l a day apart on the school's clock, each
// with new work in the Journal.
func saBackups(t *testing.T, s *saSchool, l *laptop, n int, seed uint64) []store.SnapshotID {
	t.Helper()
	var ids []store.SnapshotID
	for i := 0; i < n; i++ {
		if err := journalgen.Mutate(l.src, seed+uint64(i), 1); err != nil {
			t.Fatal(err)
		}
		r := l.run(t)
		ids = append(ids, store.SnapshotID(r.Backup.Snapshot))
		s.clk.set(s.clk.Now().Add(24 * time.Hour))
	}
	return ids
}

// TestSiteAttackRebuiltSchoolRestoresNewestBackup: a school server's clock
// reset to 2000 after a power cut; its laptops went on backing up (the
// store orders them by commit, so "latest" is the newest work) and the
// backups replicated to the mothership. Then the server died and was
// rebuilt from the mothership. A laptop's `restore --all` (latest) must give
// back its newest backup, not one from before the power cut: the rebuilt
// server's commit order (Seq) must be the school's.
func TestSiteAttackRebuiltSchoolRestoresNewestBackup(t *testing.T) {
	ms := startMothership(t)
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, nil)
	l := newLaptop(t, s.d, "SHCCLK01", 61)
	saBackups(t, s, l, 2, 100)
	clk.set(saReset)
	after := saBackups(t, s, l, 2, 200) // the newest work, dated 2000
	newest := after[len(after)-1]
	if got := mustLatest(t, s.d, "SHCCLK01"); got != newest {
		t.Fatalf("precondition: the school's latest is %s, want %s", got, newest)
	}
	s.approve(t)
	s.sync(t)

	// On the mothership: the laptop's newest backup is the one made last.
	rows, err := (&admin.Service{S: ms.Store}).Schools(context.Background(), admin.SchoolsRequest{School: "school-a"})
	if err != nil || len(rows) != 1 {
		t.Fatalf("schools school-a: %+v %v", rows, err)
	}
	t.Logf("mothership says laptop %s's latest backup is of %s (the one made last is dated %s)", rows[0].Name, rows[0].Latest, newest)

	d, _, err := s.rebuild(t, newSAClock(time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	u, err := d.Store.UserBySerial("SHCCLK01")
	if err != nil {
		t.Fatal(err)
	}
	list := d.Store.Snapshots(u.ID)
	var order []store.SnapshotID
	for _, sn := range list {
		order = append(order, sn.ID)
	}
	t.Logf("rebuilt server's order (oldest first): %v", order)
	latest, err := d.Store.Snapshot(u.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	if latest.ID != newest {
		t.Errorf("after the rebuild the laptop's latest backup is %s (%s), not the one it made last, %s: restore --all brings back work from before the power cut",
			latest.ID, latest.Time, newest)
	}
	// And the laptop itself: restore latest gives its current Journal.
	l.restoreAndCompare(t, "latest")
}

// TestSiteAttackMothershipRetentionKeepsNewestReplicated: the mothership's
// own retention (keep_last 2, applied to each laptop's history) must keep
// the two backups a laptop made last, even when the school's clock had been
// reset to 2000 when it made them.
func TestSiteAttackMothershipRetentionKeepsNewestReplicated(t *testing.T) {
	ctx := context.Background()
	ms := startDaemon(t, func(c *server.Config) {
		c.Role, c.Registration = "mothership", "approve"
		c.RestorePage.Listen, c.Lifecycle.At = "", ""
		c.Retention = store.Policy{KeepLast: 2}
	})
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, func(c *server.Config) { c.Retention = store.Policy{KeepLast: 100} })
	l := newLaptop(t, s.d, "SHCCLK02", 62)
	saBackups(t, s, l, 3, 100)
	clk.set(saReset)
	after := saBackups(t, s, l, 2, 200)
	s.approve(t)
	s.sync(t)
	school := userBySerial(t, ms, "school-a")
	rep, err := ms.Store.Retention(ctx, store.RetentionOptions{User: school.ID})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mothership retention deleted %d", rep.Deleted)
	held := map[string]bool{}
	for _, sn := range ms.Store.Snapshots(school.ID) {
		if sn.Origin != nil {
			held[sn.Origin.Snapshot] = true
		}
	}
	for _, id := range after {
		if !held[string(id)] {
			t.Errorf("the mothership's retention (keep_last 2) deleted %s, one of the two backups the laptop made last (the school's clock read 2000 then)", id)
		}
	}
}

// TestSiteAttackClockForwardThenCorrected: the school's clock was a year
// ahead for a day, then corrected. On the mothership (keep_last 2) the
// backup made that day must not outrank the ones made after it: retention
// keeps the two made last.
func TestSiteAttackClockForwardThenCorrected(t *testing.T) {
	ctx := context.Background()
	ms := startDaemon(t, func(c *server.Config) {
		c.Role, c.Registration = "mothership", "approve"
		c.RestorePage.Listen, c.Lifecycle.At = "", ""
		c.Retention = store.Policy{KeepLast: 2}
	})
	clk := newSAClock(saJan2026)
	s := saStartSchool(t, ms, "school-a", clk, func(c *server.Config) { c.Retention = store.Policy{KeepLast: 100} })
	l := newLaptop(t, s.d, "SHCCLK03", 63)
	saBackups(t, s, l, 1, 100)
	clk.set(saJan2026.AddDate(1, 0, 1)) // a year ahead
	saBackups(t, s, l, 1, 200)
	clk.set(saJan2026.AddDate(0, 0, 2)) // corrected
	after := saBackups(t, s, l, 2, 300)
	s.approve(t)
	s.sync(t)
	school := userBySerial(t, ms, "school-a")
	if _, err := ms.Store.Retention(ctx, store.RetentionOptions{User: school.ID, Now: saJan2026.AddDate(0, 0, 5)}); err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, sn := range ms.Store.Snapshots(school.ID) {
		if sn.Origin != nil {
			held[sn.Origin.Snapshot] = true
		}
	}
	for _, id := range after {
		if !held[string(id)] {
			t.Errorf("the mothership's retention (keep_last 2) deleted %s, one of the two backups the laptop made last; it kept the one made while the clock was a year ahead", id)
		}
	}
}
