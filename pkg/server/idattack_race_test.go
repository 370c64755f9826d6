package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// TestIDAttackRacedRegistrationsOfOneSerial: eight devices register one
// new serial at the same moment (open registration), then staff register
// another serial by hand (xs-admin register) while four devices register
// it. One serial stays one account: for the first, exactly one device is
// its key and backs up, every other is at most the one key waiting for
// staff and is refused on connecting; for the second, if staff's
// registration went through no device is its key (the first device to
// register a serial staff prepared waits for approval), and if a device
// came first staff are told the serial is taken. The user files agree
// with what the daemon answers, after a restart too.
func TestIDAttackRacedRegistrationsOfOneSerial(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	data := t.TempDir()
	d, stop := idaStart(t, data, nil)
	svc := &admin.Service{S: d.Store, Live: true}

	type try struct {
		key ed25519.PrivateKey
		res proto.RegisterResult
		err error
	}
	race := func(serial string, n int, alongside func()) []try {
		tries := make([]try, n)
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i := range tries {
			tries[i].key = freshKey()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				tries[i].res, tries[i].err = proto.RegisterWith(ctx, d.Addr.String(), tries[i].key, proto.RegisterRequest{Serial: serial})
			}()
		}
		if alongside != nil {
			wg.Add(1)
			go func() { defer wg.Done(); <-gate; alongside() }()
		}
		close(gate)
		wg.Wait()
		return tries
	}
	accounts := func(serial string) int {
		n := 0
		for _, u := range d.Store.Users() {
			if u.Serial == serial {
				n++
			}
		}
		return n
	}

	tries := race("IDARACE1", 8, nil)
	u := userBySerial(t, d, "IDARACE1")
	owners := 0
	for i, tr := range tries {
		mine := bytes.Equal(u.PublicKey, idaPub(tr.key))
		err := idaTry(ctx, d, tr.key, func(c *proto.Client) error { _, err := c.Snapshots(ctx); return err })
		switch {
		case mine:
			owners++
			if tr.err != nil || !tr.res.Approved || tr.res.KeyChange || err != nil {
				t.Errorf("device %d is the account's key: told %+v %v; lists: %v", i, tr.res, tr.err, err)
			}
		case tr.err == nil && (tr.res.Approved || !tr.res.KeyChange):
			t.Errorf("device %d was told %+v, but the account's key is another's", i, tr.res)
		case err == nil:
			t.Errorf("device %d, not the account's key, lists the account's backups", i)
		}
		if !mine && !errors.Is(err, proto.ErrNotApproved) && !errors.Is(err, proto.ErrNotRegistered) {
			t.Errorf("device %d: %v (want waiting for approval or not registered)", i, err)
		}
	}
	if owners != 1 || accounts("IDARACE1") != 1 {
		t.Errorf("IDARACE1: %d devices are its key, %d accounts", owners, accounts("IDARACE1"))
	}
	if u.PendingKey != nil {
		found := false
		for _, tr := range tries {
			found = found || bytes.Equal(u.PendingKey, idaPub(tr.key))
		}
		if !found {
			t.Errorf("IDARACE1's waiting key is no device's")
		}
	}

	var staffErr error
	tries = race("IDARACE2", 4, func() {
		_, staffErr = svc.Register(ctx, admin.RegisterRequest{Serial: "IDARACE2"})
	})
	u2 := userBySerial(t, d, "IDARACE2")
	if accounts("IDARACE2") != 1 {
		t.Errorf("IDARACE2: %d accounts", accounts("IDARACE2"))
	}
	for i, tr := range tries {
		if staffErr == nil && bytes.Equal(u2.PublicKey, idaPub(tr.key)) {
			t.Errorf("staff registered IDARACE2 by hand, yet device %d is its key without approval (%+v)", i, tr.res)
		}
	}
	if staffErr == nil && u2.PublicKey != nil {
		t.Errorf("staff registered IDARACE2 by hand and it has a key no staff approved")
	}
	t.Logf("xs-admin register IDARACE2 during the race: %v", staffErr)

	want := map[string][2][]byte{}
	for _, u := range d.Store.Users() {
		want[u.ID.String()] = [2][]byte{u.PublicKey, u.PendingKey}
	}
	stop()
	d2, _ := idaStart(t, data, nil)
	idaCheckUserFiles(t, data)
	for _, u := range d2.Store.Users() {
		w := want[u.ID.String()]
		if !bytes.Equal(w[0], u.PublicKey) || !bytes.Equal(w[1], u.PendingKey) {
			t.Errorf("user %s (%s): its keys differ after the restart", u.ID, u.Serial)
		}
	}
	if len(d2.Store.Users()) != len(want) {
		t.Errorf("%d users after the restart, %d before", len(d2.Store.Users()), len(want))
	}
}
