package server_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// TestLeakAttackRegistrations: the registration port is open to every
// device in the school: a laptop's timer whose state was lost registers
// again every 30 minutes with its same key; a reflashed laptop (or a
// child's script) registers the same serial with a new key again and again
// (each waits for staff, the newest replacing the one before). Hundreds of
// them leave the daemon holding what it held before (the waiting key is
// one per serial, not one per attempt), and the laptop's own backups go on.
func TestLeakAttackRegistrations(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, nil)
	l := newLaptop(t, d, "LEAKRG01", 417)
	l.run(t)
	key, _ := l.st.Key()
	addr := d.Addr.String()
	register := func(i int) {
		k := key
		if i%2 == 1 {
			var err error
			if k, err = proto.GenerateKey(); err != nil {
				t.Fatal(err)
			}
		}
		_, err := proto.Register(ctx, addr, k, "LEAKRG01", "kid")
		if i%2 == 0 && err != nil {
			t.Fatalf("the laptop registering again with its own key: %v", err)
		}
	}
	for i := range 6 {
		register(i)
	}
	users := filepath.Join(d.Config.Data, "users")
	usersBefore := dirBytes(users)
	base := laMeasure(t)
	const reps = 300
	took := laRepeat(t, reps, register)
	t.Logf("%d registrations in %v", reps, took.Round(time.Millisecond))
	laCheck(t, "registration", reps, base, 5*time.Second)
	rows, err := (&admin.Service{S: d.Store, Live: true}).Pending(ctx, admin.PendingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("waiting for staff: %d rows; store pending count %d", len(rows), d.Store.Pending())
	if p := len(rows); p > 1 {
		t.Errorf("%d keys wait for staff for one serial after %d registrations", p, reps)
	}
	// Nor on disk: the user's record does not keep every attempt.
	if after := dirBytes(users); after > usersBefore+16<<10 {
		t.Errorf("the users directory grew from %d to %d bytes with %d registrations of one serial", usersBefore, after, reps)
	} else {
		t.Logf("users directory: %d → %d bytes", usersBefore, after)
	}
	l.run(t)
}
