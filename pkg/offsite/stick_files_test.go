package offsite_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestExportPastHostileReceiptFiles: whoever carried the stick left files
// named like receipts that are no receipt: a named pipe (reading it would
// wait for ever), a link to /dev/zero (reading it would fill memory) and a
// directory. The export neither hangs nor fails: it is not a receipt, and
// the bundle is written; reading such a file as a receipt is refused.
func TestExportPastHostileReceiptFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer offsite.ForgetState(dir)
	u, err := st.AddUser(ctx, store.NewUser{Serial: "SHCSTICK1", Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "diary.txt"), []byte("Tuesday: sun\n"), 0o644)
	if _, err := backup.Run(ctx, src, st.Target(u.ID, store.CommitInfo{}), backup.Options{Params: st.Params()}); err != nil {
		t.Fatal(err)
	}
	stick := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(stick, "receipt-pipe.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(stick, "receipt-zero.json")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(stick, "receipt-dir.json"), 0o755)
	_, key, _ := ed25519.GenerateKey(nil)
	state, err := offsite.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var res *offsite.ExportResult
	go func() {
		var err error
		res, err = offsite.Export(ctx, st, state, offsite.ExportOptions{Dir: stick, School: "school-a", Key: key})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("export with planted files on the stick: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the export hangs on a file named like a receipt")
	}
	if res.Snapshots != 1 || len(res.Files) == 0 {
		t.Fatalf("export: %+v", res)
	}
	for _, name := range []string{"receipt-pipe.json", "receipt-zero.json", "receipt-dir.json"} {
		rc := make(chan error, 1)
		go func() {
			_, err := offsite.ReadReceipt(filepath.Join(stick, name), nil, key.Public().(ed25519.PublicKey))
			rc <- err
		}()
		select {
		case err := <-rc:
			if err == nil {
				t.Errorf("%s read as a receipt", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("reading %s as a receipt hangs", name)
		}
	}
}
