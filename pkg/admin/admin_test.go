package admin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func newService(t *testing.T) (*admin.Service, *store.Store) {
	t.Helper()
	s, err := store.Open(context.Background(), t.TempDir(), store.Options{Reserve: -1, DefaultQuota: store.Quota{Soft: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.AddUser(context.Background(), store.NewUser{Serial: "SHC1", Approved: true}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	return &admin.Service{S: s, Now: func() time.Time { return now }}, s
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for at, want := range map[string]time.Time{
		"+45d":                 time.Date(2026, 4, 24, 12, 0, 0, 0, time.UTC),
		"-12h":                 time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC),
		"2026-12-31T08:00:00Z": time.Date(2026, 12, 31, 8, 0, 0, 0, time.UTC),
		"2026-12-31":           time.Date(2026, 12, 31, 0, 0, 0, 0, time.Local),
		"":                     {},
	} {
		got, err := admin.ParseTime(at, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %s, %v; want %s", at, got, err, want)
		}
	}
	for _, bad := range []string{"tomorrow", "+3x", "2026-13-01", "+-5d"} {
		if _, err := admin.ParseTime(bad, now); !errors.Is(err, admin.ErrInvalid) {
			t.Errorf("ParseTime(%q): %v, want an invalid-request error", bad, err)
		}
	}
	svc, _ := newService(t)
	at := time.Date(2026, 12, 31, 8, 0, 0, 0, time.UTC)
	rep, err := svc.Retention(context.Background(), admin.RetentionRequest{At: at, DryRun: true})
	if err != nil || !rep.At.Equal(at) {
		t.Fatalf("retention at %s: %+v %v", at, rep, err)
	}
}

func TestQuotaAndPolicyOverrides(t *testing.T) {
	svc, s := newService(t)
	ctx := context.Background()
	hard := int64(5 << 30)
	rows, err := svc.Quota(ctx, admin.QuotaRequest{Serial: "SHC1", Hard: &hard})
	if err != nil {
		t.Fatal(err)
	}
	row := rows[0]
	if !row.Own || row.Hard != hard || row.Soft != 1<<30 {
		t.Fatalf("after --hard: %+v (soft must stay the default's)", row)
	}
	if _, err := svc.Quota(ctx, admin.QuotaRequest{Hard: &hard}); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("setting a quota without a serial: %v", err)
	}
	rows, _ = svc.Quota(ctx, admin.QuotaRequest{Serial: "SHC1", Reset: true})
	if row := rows[0]; row.Own || row.Hard != 0 {
		t.Fatalf("after --reset: %+v", row)
	}
	p := store.Policy{KeepLast: 5, KeepMonthly: 24}
	pr, err := svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Policy: &p})
	if err != nil || pr.Policy != p || !pr.Own {
		t.Fatalf("policy set: %+v %v", pr, err)
	}
	u, _ := s.UserBySerial("SHC1")
	if s.PolicyOf(u.ID) != p {
		t.Fatal("the store does not apply the laptop's own policy")
	}
	bad := store.Policy{KeepDaily: -2}
	if _, err := svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Policy: &bad}); err == nil {
		t.Fatal("an invalid policy was accepted")
	}
	pr, _ = svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Reset: true})
	if pr.Own || pr.Policy != store.DefaultPolicy() {
		t.Fatalf("policy reset: %+v", pr)
	}
	// A change keeps the rules it does not name: staff's `--keep-monthly
	// 24` set the other rules to 0 before, and the nightly run then
	// deleted the last 30 days' backups.
	n24, n0, n3, neg := 24, 0, 3, -1
	pr, err = svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Change: &admin.PolicyChange{KeepMonthly: &n24}})
	want := store.DefaultPolicy()
	want.KeepMonthly = 24
	if err != nil || pr.Policy != want || !pr.Own || s.PolicyOf(u.ID) != want {
		t.Fatalf("a change of keep_monthly from the server's policy: %+v %v, want %+v", pr, err, want)
	}
	pr, err = svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Change: &admin.PolicyChange{KeepWithinDays: &n0, KeepLast: &n3}})
	want = store.Policy{KeepLast: 3, KeepMonthly: 24}
	if err != nil || pr.Policy != want {
		t.Fatalf("a second change, from the laptop's own policy: %+v %v, want %+v", pr, err, want)
	}
	if _, err := svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Change: &admin.PolicyChange{KeepLast: &neg}}); !errors.Is(err, admin.ErrInvalid) || s.PolicyOf(u.ID) != want {
		t.Fatalf("keep_last -1: %v, policy now %+v", err, s.PolicyOf(u.ID))
	}
	if _, err := svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Change: &admin.PolicyChange{KeepLast: &n3}, Reset: true}); !errors.Is(err, admin.ErrInvalid) || s.PolicyOf(u.ID) != want {
		t.Fatalf("a change and a reset at once: %v, policy now %+v", err, s.PolicyOf(u.ID))
	}
	svc.Policy(ctx, admin.PolicyRequest{Serial: "SHC1", Reset: true})
	if _, err := svc.Pin(ctx, admin.PinRequest{Serial: "SHC1", Snapshot: "latest", Reason: "fair"}); err == nil {
		t.Fatal("pin of a laptop without snapshots succeeded")
	}
}

func TestResolveSnapshotByDate(t *testing.T) {
	ctx := context.Background()
	day := time.Date(2026, 3, 1, 10, 0, 0, 0, time.Local)
	s, err := store.Open(ctx, t.TempDir(), store.Options{Reserve: -1, Now: func() time.Time { return day }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
	src := t.TempDir()
	var ids []store.SnapshotID
	for i := 0; i < 4; i++ { // Mar 1, 3, 5, 7 at 10:00
		os.WriteFile(filepath.Join(src, "diary.txt"), fmt.Appendf(nil, "day %d", i), 0o644)
		tg := s.Target(u.ID, store.CommitInfo{})
		if _, err := backup.Run(ctx, src, tg, backup.Options{Params: s.Params()}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tg.Last().ID)
		day = day.AddDate(0, 0, 2)
	}
	for spec, want := range map[string]store.SnapshotID{
		"":             ids[3],
		"latest":       ids[3],
		string(ids[1]): ids[1],
		"2026-03-05":   ids[2],
		"2026-03-06":   ids[2],
		"2026-03-31":   ids[3],
		time.Date(2026, 3, 3, 9, 0, 0, 0, time.Local).Format(time.RFC3339): ids[0],
	} {
		sn, err := admin.ResolveSnapshot(s, u.ID, spec)
		if err != nil || sn.ID != want {
			t.Errorf("%q: %v %v, want %s", spec, sn, err, want)
		}
	}
	if _, err := admin.ResolveSnapshot(s, u.ID, "2026-02-28"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a date before every snapshot: %v", err)
	}
	if _, err := admin.ResolveSnapshot(s, u.ID, "last tuesday"); !errors.Is(err, admin.ErrInvalid) {
		t.Errorf("nonsense: %v", err)
	}
}
