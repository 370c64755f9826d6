package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// idaStart runs a real daemon on the data directory data (so that a test
// can stop it and start another on the same store) and returns it with its
// stop function (also run at cleanup if the test did not).
func idaStart(t *testing.T, data string, mod func(*server.Config)) (*server.Daemon, func()) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", data, "", 0
	cfg.RestorePage.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	d, stop := runDaemon(t, cfg)
	var once sync.Once
	stopOnce := func() {
		once.Do(func() {
			if err := stop(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stopOnce)
	return d, stopOnce
}

// idaTry connects with key and runs op on the connection: what a device
// holding key gets from the daemon.
func idaTry(ctx context.Context, d *server.Daemon, key ed25519.PrivateKey, op func(c *proto.Client) error) error {
	c, err := proto.Dial(ctx, proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		return err
	}
	defer c.Close()
	return op(c)
}

// idaPub is the public half of k.
func idaPub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// idaCheckUserFiles checks the store's users directory as a restart
// reads it: every users/ID.json has a second copy users/ID.json.copy with
// the same bytes, and nothing else lies there.
func idaCheckUserFiles(t *testing.T, data string) {
	t.Helper()
	dir := filepath.Join(data, "users")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for n := range names {
		switch {
		case strings.HasSuffix(n, ".json"):
			a, err1 := os.ReadFile(filepath.Join(dir, n))
			b, err2 := os.ReadFile(filepath.Join(dir, n+".copy"))
			if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
				t.Errorf("users/%s and its copy differ (%v, %v)", n, err1, err2)
			}
		case strings.HasSuffix(n, ".json.copy"):
			if !names[strings.TrimSuffix(n, ".copy")] {
				t.Errorf("users/%s has no user file beside it", n)
			}
		default:
			t.Errorf("users/%s: a file the store did not mean to leave", n)
		}
	}
}
