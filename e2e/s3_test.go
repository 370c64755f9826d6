package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// s3Config writes a daemon configuration whose packs live in the bucket of
// srv, under prefix.
func s3Config(t *testing.T, srv *s3test.Server, data, prefix string) string {
	t.Helper()
	dir := t.TempDir()
	creds := filepath.Join(dir, "s3.credentials")
	os.WriteFile(creds, []byte(fmt.Sprintf("access_key = %s\nsecret_key = %s\n", s3test.AccessKey, s3test.SecretKey)), 0o600)
	cfg := filepath.Join(dir, "xs-backup.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`data = %q

[storage]
backend = "s3"
endpoint = %q
bucket = %q
prefix = %q
path_style = true
insecure = true
credentials_file = %q
`, data, srv.Addr, srv.Bucket, prefix, creds)), 0o600)
	return cfg
}

func adminCfg(t *testing.T, cfg string, args ...string) (string, string, int) {
	t.Helper()
	return program(t, nil, "xs-admin", append([]string{"--config", cfg}, args...)...)
}

// TestS3EndToEnd: a daemon whose packs live in a real S3 server
// (versitygw): laptops back up over QUIC, restore byte for byte; the
// daemon is killed and restarted; check --read-data is clean and the
// nightly run and gc work on the bucket.
func TestS3EndToEnd(t *testing.T) {
	srv := s3test.Start(t)
	data := t.TempDir()
	cfg := s3Config(t, srv, data, "e2e/")
	d := StartDaemon(t, data, "--config", cfg)
	state, src := backedUp(t, d, "SHC901", 61)
	restoreAll(t, state, src)
	var packs int
	for name := range srv.Objects(t, "e2e/") {
		if strings.HasSuffix(name, ".pack") {
			packs++
		}
	}
	if packs == 0 {
		t.Fatal("no pack in the bucket after an acknowledged backup")
	}
	// kill -9, then the staff commands on the stopped store.
	d.Cmd.Process.Kill()
	d.Cmd.Wait()
	out, errOut, code := adminCfg(t, cfg, "check", "--read-data")
	if code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check --read-data after kill: exit %d\n%s%s", code, out, errOut)
	}
	// xs-admin restore with the daemon stopped reads the bucket itself.
	to := filepath.Join(t.TempDir(), "journal")
	if out, errOut, code := adminCfg(t, cfg, "restore", "SHC901", "--to", to); code != 0 {
		t.Fatalf("xs-admin restore: exit %d\n%s%s", code, out, errOut)
	}
	if err := dircmp.Compare(src, to, backup.JournalExclude); err != nil {
		t.Fatalf("xs-admin restore from the bucket differs: %v", err)
	}
	out, errOut, code = adminCfg(t, cfg, "storage", "status")
	if code != 0 || !strings.Contains(out, "packs") {
		t.Fatalf("storage status: exit %d\n%s%s", code, out, errOut)
	}
	d = StartDaemon(t, data, "--config", cfg, "--listen", d.Addr)
	os.WriteFile(filepath.Join(src, "new-note.txt"), []byte("written after the restart"), 0o644)
	runBackup(t, state, src, "--force")
	restoreAll(t, state, src)
	if out, errOut, code := adminCfg(t, cfg, "lifecycle"); code != 0 {
		t.Fatalf("lifecycle: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := adminCfg(t, cfg, "gc"); code != 0 {
		t.Fatalf("gc: exit %d\n%s%s", code, out, errOut)
	}
	d.Stop(t)
	out, errOut, code = adminCfg(t, cfg, "check", "--read-data")
	if code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("check --read-data: exit %d\n%s%s", code, out, errOut)
	}
}

// TestS3MigrateEndToEnd: a store written on the local disk moves into the
// bucket with xs-admin storage migrate --to s3 and back with --to local;
// the laptop restores byte for byte after each move and backs up again.
func TestS3MigrateEndToEnd(t *testing.T) {
	srv := s3test.Start(t)
	data := t.TempDir()
	d := StartDaemon(t, data)
	state, src := backedUp(t, d, "SHC902", 62)
	d.Stop(t)
	cfg := s3Config(t, srv, data, "mig/")
	out, errOut, code := adminCfg(t, cfg, "storage", "migrate", "--to", "s3")
	if code != 0 || !strings.Contains(out, "moved") {
		t.Fatalf("migrate --to s3: exit %d\n%s%s", code, out, errOut)
	}
	if n := packBytes(t, data); n != 0 {
		t.Fatalf("%d bytes of packs left in the data directory after the move", n)
	}
	d = StartDaemon(t, data, "--config", cfg, "--listen", d.Addr)
	restoreAll(t, state, src)
	os.WriteFile(filepath.Join(src, "after-the-move.txt"), []byte("on S3"), 0o644)
	runBackup(t, state, src, "--force")
	d.Stop(t)
	out, errOut, code = adminCfg(t, cfg, "storage", "migrate", "--to", "local")
	if code != 0 || !strings.Contains(out, "backend = \"local\"") {
		t.Fatalf("migrate --to local: exit %d\n%s%s", code, out, errOut)
	}
	StartDaemon(t, data, "--listen", d.Addr)
	restoreAll(t, state, src)
	if out, errOut, code := admin(t, data, "check", "--read-data"); code != 0 {
		t.Fatalf("check after moving back: exit %d\n%s%s", code, out, errOut)
	}
}
