package proto

import (
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/blob"
)

// TestKeepSessionKeepsAQuietBackupSession: a laptop granted a backup
// session works for longer than the server's session idle limit (here
// 1 s) without a request, as one reading a large file whose chunks the
// run has already sent. Without KeepSession the server ends the session
// (the check that the limit acts); with it the session is there when the
// laptop next asks.
func TestKeepSessionKeepsAQuietBackupSession(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx, addr, srvKey := serveSink(t, ServerConfig{Backend: &sinkBackend{}, Key: key, Limits: Limits{SessionIdle: time.Second}})
	for _, keep := range []bool{false, true} {
		lkey, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		c, err := Dial(ctx, ClientConfig{Addr: addr, Key: lkey, ServerKey: srvKey})
		if err != nil {
			t.Fatal(err)
		}
		if g, err := c.Hello(ctx, "backup"); err != nil || !g.Granted {
			t.Fatalf("hello: %+v %v", g, err)
		}
		stop := func() {}
		if keep {
			stop = c.KeepSession(ctx, 300*time.Millisecond)
		}
		time.Sleep(2500 * time.Millisecond)
		_, err = c.Need(ctx, []blob.Ref{{Type: blob.Chunk}})
		stop()
		c.Close()
		if keep && err != nil {
			t.Errorf("a session kept by KeepSession through 2.5 s of work: %v", err)
		}
		if !keep && err == nil {
			t.Fatal("a session quiet for 2.5 s (idle limit 1 s) was not ended: the test shows nothing")
		}
	}
}
