package server_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/server"
)

// An admin socket path longer than a unix socket address may be (108
// bytes on Linux) cannot work. The daemon must not tell systemd READY=1
// (nor close Ready) and then die on it; better, it refuses the
// configuration and says the path is too long (it said
// "bind: invalid argument" after "xs-backupd ready").
func TestUnusableAdminSocketIsNotReady(t *testing.T) {
	ndir, err := os.MkdirTemp("", "a4n")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(ndir)
	notify := filepath.Join(ndir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	t.Setenv("NOTIFY_SOCKET", notify)

	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", t.TempDir(), "", 0
	cfg.RestorePage.Listen = ""
	cfg.AdminSocket = filepath.Join(t.TempDir(), strings.Repeat("s", 120)+".sock")
	d, err := server.NewDaemon(context.Background(), cfg, nil)
	if err != nil {
		if !strings.Contains(err.Error(), "long") {
			t.Errorf("refused, but does not say the socket path is too long: %v", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runErr := d.Run(ctx)
	ready := false
	select {
	case <-d.Ready:
		ready = true
	default:
	}
	nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 256)
	n, _ := nc.Read(buf)
	if runErr == nil {
		t.Fatal("the daemon ran with an admin socket it cannot listen on")
	}
	if ready || strings.Contains(string(buf[:n]), "READY=1") {
		t.Errorf("the daemon said it was ready (Ready closed %v, notify %q), then stopped: %v", ready, buf[:n], runErr)
	}
	if !strings.Contains(runErr.Error(), "long") {
		t.Errorf("the error does not say the socket path is too long: %v", runErr)
	}
}

// Sizes past int64 wrapped around to a negative number: reserve =
// "1e19" (or "20000000TB") became -9223372036854775808, which the store
// reads as "no reserve at all", and a hard quota as "no quota".
func TestConfigSizeOverflow(t *testing.T) {
	for _, body := range []string{
		`reserve = "1e19"`,
		`reserve = "20000000TB"`,
		"[quota]\nhard = \"1e19\"",
		"[admission]\nsmall_bytes = \"1e19\"",
	} {
		p := filepath.Join(t.TempDir(), "xs-backup.toml")
		os.WriteFile(p, []byte(body+"\n"), 0o644)
		c, err := server.LoadConfig(p)
		if err == nil && (c.Reserve < 0 || c.Quota.Hard < 0 || c.Admission.SmallBytes < 0) {
			t.Errorf("%s: accepted as reserve %d, hard quota %d, small_bytes %d", body, c.Reserve, c.Quota.Hard, c.Admission.SmallBytes)
		}
	}
	if v, err := server.ParseSize("9223372036854775808"); err == nil && v < 0 {
		t.Errorf("ParseSize(2^63) = %d, no error", v)
	}
}

// compact_below = nan (TOML has nan) passed "at most 1": every comparison
// with NaN is false, so garbage collection silently never compacts.
func TestConfigCompactBelowNaN(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xs-backup.toml")
	os.WriteFile(p, []byte("[lifecycle]\ncompact_below = nan\n"), 0o644)
	if c, err := server.LoadConfig(p); err == nil {
		t.Errorf("lifecycle.compact_below = nan accepted (%v)", c.Lifecycle.CompactBelow)
	}
}

// A soft quota above the hard one can never act: backups are refused at
// the hard quota before the nightly run would delete old snapshots for
// the soft one, so the laptop stays stuck. The configuration should say so.
func TestConfigQuotaSoftAboveHard(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xs-backup.toml")
	os.WriteFile(p, []byte("[quota]\nsoft = \"10GB\"\nhard = \"1GB\"\n"), 0o644)
	if c, err := server.LoadConfig(p); err == nil {
		t.Errorf("quota soft %d above hard %d accepted", c.Quota.Soft, c.Quota.Hard)
	}
}
