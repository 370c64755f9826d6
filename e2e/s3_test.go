package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/internal/s3test"
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
	cmd := exec.Command(filepath.Join(bin, "xs-admin"), append([]string{"--config", cfg}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
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
