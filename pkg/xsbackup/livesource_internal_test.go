package xsbackup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestLiveSourceKeepsTheReadersRefusal: a reader refuses a chunk (a hash
// check, a full disk) at the moment the connection ends under it. The
// fetch must end with the reader's error, not fetch again from the next
// chunk as if the refused one had been taken (the file then read back
// without it, and no error said so).
func TestLiveSourceKeepsTheReadersRefusal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.RestorePage.Listen = "127.0.0.1:0", t.TempDir(), "", ""
	cfg.Reserve = 0
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-d.Ready
	defer func() { cancel(); <-done }()
	st := t.TempDir()
	if _, err := Register(ctx, st, RegisterOptions{Server: d.Addr.String(), Serial: "SHC0LIVE1"}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(src, n), []byte("content of "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := Dial(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	sn, err := repo.Backup(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	r := repo.be.(*remote)
	root, err := r.find(ctx, sn.ID)
	if err != nil {
		t.Fatal(err)
	}
	refused := errors.New("the reader refused this chunk")
	calls := 0
	err = r.source().Fetch(ctx, []blob.Ref{{Type: blob.Tree, ID: root}}, func(blob.Ref, []byte) error {
		calls++
		r.mu.Lock()
		r.c.Close() // the connection ends as the reader refuses
		r.mu.Unlock()
		return refused
	})
	if !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("Fetch = %v after %d calls of the reader; want the reader's refusal after one", err, calls)
	}
	// The next fetch connects again and reads.
	if err := r.source().Fetch(ctx, []blob.Ref{{Type: blob.Tree, ID: root}}, func(blob.Ref, []byte) error { return nil }); err != nil {
		t.Fatalf("a fetch after the connection ended: %v", err)
	}
}
