package server_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func TestConfigLifecycleAndRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xs.toml")
	os.WriteFile(path, []byte(`
[retention]
keep_daily = 7
keep_monthly = 12

[lifecycle]
at = "03:15"
pending_expiry = "5d"
compact_below = 0.3
`), 0o644)
	c, err := server.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	// Settings left out keep their defaults.
	want := store.Policy{KeepWithinDays: 30, KeepDaily: 7, KeepMonthly: 12}
	if c.Retention != want || c.Lifecycle.At != "03:15" || time.Duration(c.Lifecycle.PendingExpiry) != 5*24*time.Hour || c.Lifecycle.CompactBelow != 0.3 {
		t.Fatalf("config: %+v %+v", c.Retention, c.Lifecycle)
	}
	for _, bad := range []string{"[lifecycle]\nat = \"25:00\"\n", "[retention]\nkeep_daily = -5\n", "[lifecycle]\ncompact_below = 2.0\n", "[lifecycle]\npending_expiry = \"soon\"\n"} {
		os.WriteFile(path, []byte(bad), 0o644)
		if _, err := server.LoadConfig(path); err == nil {
			t.Errorf("config %q accepted", bad)
		}
	}
}

// TestLifecycleSkipsLaptopInSession: while a laptop's backup session is
// open, the lifecycle does not release what it told the laptop it holds;
// once the session ends, abandoned uploads expire and GC removes them.
func TestLifecycleSkipsLaptopInSession(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "BUSY1", 4)
	c := dialLaptop(t, d, l) // session granted
	data := journalgen.Random(randFor(11), 100<<10)
	b := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
	if err := c.Put(ctx, []blob.Blob{b}); err != nil {
		t.Fatal(err)
	}
	later := store.LifecycleOptions{Now: time.Now().Add(5 * 24 * time.Hour)}
	rep, err := d.RunLifecycle(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expired.Holds != 0 || rep.Expired.Busy != 1 || rep.GC.BlobsDeleted != 0 {
		t.Fatalf("lifecycle during the session: expired %+v, gc %+v", rep.Expired, rep.GC)
	}
	if need, err := c.Need(ctx, []blob.Ref{b.Ref}); err != nil || need[0] {
		t.Fatalf("the session's upload is no longer held: %v %v", need, err)
	}
	c.Close()
	// The server notices the closed connection and ends the session.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err = d.RunLifecycle(ctx, later)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Expired.Busy == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rep.Expired.Holds != 1 || rep.GC.BlobsDeleted != 1 {
		t.Fatalf("lifecycle after the session: expired %+v, gc %+v", rep.Expired, rep.GC)
	}
	var metrics strings.Builder
	d.WriteMetrics(&metrics)
	for _, want := range []string{"xs_lifecycle_runs_total ", "xs_gc_blobs_deleted_total 1", "xs_lifecycle_users_busy_total "} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestNextRun(t *testing.T) {
	loc := time.FixedZone("school", -4*3600)
	now := time.Date(2026, 11, 22, 1, 0, 0, 0, loc)
	if got := server.NextRun(now, 2, 30); !got.Equal(time.Date(2026, 11, 22, 2, 30, 0, 0, loc)) {
		t.Fatalf("before the hour: %s", got)
	}
	now = time.Date(2026, 11, 22, 2, 30, 0, 0, loc)
	if got := server.NextRun(now, 2, 30); !got.Equal(time.Date(2026, 11, 23, 2, 30, 0, 0, loc)) {
		t.Fatalf("at the hour: %s", got)
	}
	now = time.Date(2026, 12, 31, 23, 0, 0, 0, loc)
	if got := server.NextRun(now, 2, 30); !got.Equal(time.Date(2027, 1, 1, 2, 30, 0, 0, loc)) {
		t.Fatalf("at the year's end: %s", got)
	}
}

// TestShippedConfigIsTheDefaults keeps dist/xs-backup.toml true: it must
// load and say exactly what the embedded defaults are.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	c, err := server.LoadConfig("../../dist/xs-backup.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, server.DefaultConfig()) {
		t.Fatalf("dist/xs-backup.toml differs from the defaults:\n%+v\n%+v", c, server.DefaultConfig())
	}
}
