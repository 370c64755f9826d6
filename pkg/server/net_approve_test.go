package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// TestApproveKeyIsTheKeyChecked: staff approve a key change naming the
// key the reflashed laptop showed (approve --key). A thief who registers
// the same serial at that moment replaces the waiting key; Approve must
// then refuse (the e2e test shows it does when the thief asked first), never
// approve the thief's key under the fingerprint staff checked. The thief's
// request is timed at random around the approval, a few hundred times (a
// race: it usually shows within a second or two).
func TestApproveKeyIsTheKeyChecked(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	owner := newLaptop(t, d, "SHC3A01", 81)
	owner.run(t)
	u := userBySerial(t, d, "SHC3A01")
	svc := &admin.Service{S: d.Store, Live: true}
	r := rand.New(rand.NewPCG(5, 5))
	deadline := time.Now().Add(8 * time.Second)
	tries, wrong := 0, 0
	for time.Now().Before(deadline) && wrong == 0 {
		real, thief := freshKey(), freshKey()
		if _, err := d.Store.RequestKey(ctx, u.ID, real.Public().(ed25519.PublicKey)); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(r.IntN(30)) * time.Microsecond
		raced := make(chan struct{})
		go func() {
			defer close(raced)
			for s := time.Now(); time.Since(s) < delay; {
			}
			d.Store.RequestKey(ctx, u.ID, thief.Public().(ed25519.PublicKey))
		}()
		got, err := svc.Approve(ctx, admin.ApproveRequest{Serial: "SHC3A01", Key: proto.Fingerprint(real.Public().(ed25519.PublicKey))})
		<-raced
		tries++
		if err == nil && bytes.Equal(got.PublicKey, thief.Public().(ed25519.PublicKey)) {
			wrong++
			t.Errorf("try %d: staff approved the key %s and the thief's key %s was approved", tries,
				proto.Fingerprint(real.Public().(ed25519.PublicKey)), proto.Fingerprint(thief.Public().(ed25519.PublicKey)))
		}
		// Clear what waits (the thief's key, when Approve refused) for the next try.
		if cur, _ := d.Store.User(u.ID); cur.PendingKey != nil {
			d.Store.ApproveKey(ctx, u.ID, false)
		}
	}
	t.Logf("%d tries, %d approved the thief's key", tries, wrong)
}
