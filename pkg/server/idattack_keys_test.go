package server_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// TestIDAttackRevokedKeyAsksForAnotherHistory: a laptop is stolen and staff
// revoke it (or its child got a replacement by claim code, which retires
// its key). The thief, still holding the laptop's key, registers the serial
// of another child who has backups. The server knows this key is one staff
// revoked or retired, and refuses it a fresh account under a new serial
// (TestRevokedKeyGetsNoNewAccount); it must not get further with a serial
// that has a history: no pending key change on the other child's history
// that looks, in xs-admin pending, exactly like that child's reflashed
// laptop asking (one "approve" from taking the history), and the revoked
// laptop is still told it is revoked, not "waiting for approval".
func TestIDAttackRevokedKeyAsksForAnotherHistory(t *testing.T) {
	for _, how := range []string{"revoked", "retired"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d := startDaemon(t, nil)
			svc := &admin.Service{S: d.Store, Live: true}
			victim := newLaptop(t, d, "IDAVIC01", 41)
			victim.run(t)
			stolen := newLaptop(t, d, "IDASTO01", 42)
			stolen.run(t)
			switch how {
			case "revoked":
				if _, err := svc.Revoke(ctx, admin.RevokeRequest{Serial: "IDASTO01"}); err != nil {
					t.Fatal(err)
				}
			default: // the child's replacement took the history by claim code
				cr, err := svc.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: "IDASTO01"})
				if err != nil {
					t.Fatal(err)
				}
				if reg, err := agent.Register(ctx, agent.State{Dir: t.TempDir()}, agent.RegisterOptions{Server: d.Addr.String(), Serial: "IDASTO01", Claim: cr.Code}); err != nil || !reg.Continued {
					t.Fatalf("the replacement's claim: %+v %v", reg, err)
				}
			}
			thiefKey, err := stolen.st.Key()
			if err != nil {
				t.Fatal(err)
			}
			if err := a3nRefusedNow(t, d, stolen); !errors.Is(err, proto.ErrRevoked) {
				t.Fatalf("the stolen laptop before its registration: %v (want revoked)", err)
			}

			res, err := proto.RegisterWith(ctx, d.Addr.String(), thiefKey, proto.RegisterRequest{Serial: "IDAVIC01"})
			t.Logf("the stolen laptop's key registers IDAVIC01: %+v %v", res, err)
			if err == nil {
				t.Errorf("a %s key was taken as a key change of another child's history (%+v); want it refused as revoked", how, res)
			} else if proto.KindOf(err) != proto.KindRevoked {
				t.Errorf("a %s key registering another child's serial: %v (want revoked)", how, err)
			}
			u := userBySerial(t, d, "IDAVIC01")
			if u.PendingKey != nil {
				t.Errorf("IDAVIC01's history now has a key change waiting (%s), and it is the %s laptop's key", proto.Fingerprint(u.PendingKey), how)
			}
			rows, err := svc.Pending(ctx, admin.PendingRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.Serial == "IDAVIC01" {
					t.Errorf("xs-admin pending shows %+v: a key change of IDAVIC01 with %d backups, as a reflashed laptop's would look; the key is the %s laptop's", r, r.Snapshots, how)
				}
			}
			if err := a3nRefusedNow(t, d, stolen); !errors.Is(err, proto.ErrRevoked) {
				t.Errorf("the stolen laptop after its registration: %v (want revoked, as before)", err)
			}
		})
	}
}

// TestIDAttackApproveKeyThatComparesNothing: staff approve a reflashed
// laptop's key with --key, the fingerprint (or its start, as the help
// says) the laptop showed, so that a thief's key waiting in its place is
// refused. A --key that is only the "SHA256:" prefix, or one or two
// characters of it, matches every key or one in a few thousand: a thief
// who registered the serial after the real laptop, with a key made to
// start like the one shown, is approved and takes the history. Such a
// --key compares nothing and must be refused as too short, with nothing
// approved.
func TestIDAttackApproveKeyThatComparesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := startDaemon(t, nil)
	svc := &admin.Service{S: d.Store, Live: true}
	for i, tc := range []struct {
		name   string
		prefix func(fp string) string // what staff type, from the real key's fingerprint
	}{
		{"bare SHA256:", func(string) string { return "SHA256:" }},
		{"one letter", func(string) string { return "S" }},
		{"two characters of the fingerprint", func(fp string) string { return "SHA256:" + strings.TrimPrefix(fp, "SHA256:")[:2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serial := "IDAPFX0" + string(rune('1'+i))
			owner := newLaptop(t, d, serial, uint64(50+i))
			owner.run(t)
			u := userBySerial(t, d, serial)

			real := freshKey()
			realFP := proto.Fingerprint(idaPub(real))
			typed := tc.prefix(realFP)
			// The thief's key starts like the real one as far as staff type.
			var thief ed25519.PrivateKey
			for n := 0; ; n++ {
				thief = freshKey()
				if fp := proto.Fingerprint(idaPub(thief)); fp != realFP && strings.HasPrefix(fp, typed) {
					break
				}
				if n > 1<<20 {
					t.Fatal("no key found")
				}
			}
			if res, err := proto.RegisterWith(ctx, d.Addr.String(), real, proto.RegisterRequest{Serial: serial}); err != nil || !res.KeyChange {
				t.Fatalf("the reflashed laptop registers: %+v %v", res, err)
			}
			if res, err := proto.RegisterWith(ctx, d.Addr.String(), thief, proto.RegisterRequest{Serial: serial}); err != nil || !res.KeyChange {
				t.Fatalf("the thief registers after it: %+v %v", res, err)
			}
			got, err := svc.Approve(ctx, admin.ApproveRequest{Serial: serial, Key: typed})
			t.Logf("approve %s --key %q (the laptop showed %s): %v", serial, typed, realFP, err)
			now, _ := d.Store.User(u.ID)
			if err == nil || now.PendingKey == nil {
				t.Errorf("approve --key %q approved the key waiting, %s (the thief's), though the laptop showed %s: the thief takes %d backups",
					typed, proto.Fingerprint(idaPub(thief)), realFP, len(d.Store.Snapshots(u.ID)))
				if got != nil && got.ID == u.ID {
					if err := idaTry(ctx, d, thief, func(c *proto.Client) error { _, err := c.Snapshots(ctx); return err }); err == nil {
						t.Errorf("and the thief's key lists the backups")
					}
				}
			}
		})
	}
}
