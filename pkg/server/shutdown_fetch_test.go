package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestRestoreDuringShutdownSaysSo: staff restart the daemon while a child's
// restore is downloading (slowly: the laptop reads a little at a time).
// The daemon stops within seconds, not after its whole grace (a laptop that
// died mid-restore would otherwise hold the shutdown), and the laptop is
// told the server is restarting, not QUIC's "stream canceled".
func TestRestoreDuringShutdownSaysSo(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	d, stop := runDaemon(t, cfg)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	l := newLaptop(t, d, "SHCSTOP1", 41)
	if err := os.WriteFile(filepath.Join(l.src, "video.ogg"), journalgen.Random(randFor(42), 24<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	l.run(t)

	errc := make(chan error, 1)
	first := make(chan struct{}, 1)
	go func() {
		_, _, err := agent.Restore(context.Background(), l.st, agent.RestoreOptions{Target: t.TempDir(), Progress: func(restore.Progress) {
			select {
			case first <- struct{}{}:
			default:
			}
			time.Sleep(200 * time.Millisecond) // a slow laptop
		}})
		errc <- err
	}()
	select {
	case <-first:
	case err := <-errc:
		t.Fatalf("the restore ended before the restart: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the restore did not start")
	}
	t0 := time.Now()
	stopped = true
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	var err error
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("the restore did not end after the daemon stopped")
	}
	t.Logf("daemon stopped in %v; the laptop was told: %v", took.Round(time.Millisecond), err)
	if took > 10*time.Second {
		t.Errorf("the daemon took %v to stop while a restore downloaded", took)
	}
	if err == nil {
		return // it finished first: nothing to say
	}
	if strings.Contains(err.Error(), "canceled by remote") || (proto.KindOf(err) != proto.KindShutdown && !errors.Is(err, proto.ErrUnreachable)) {
		t.Errorf("a restore cut by the restart says %q (kind %v), not that the server is restarting", err, proto.KindOf(err))
	}
}
