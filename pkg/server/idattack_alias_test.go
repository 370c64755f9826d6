package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestIDAttackAliasNamedByIDOrFormerSerial: "Every command that takes a
// serial also takes a former serial or a user's ID" (README). Staff move a
// child to a replacement laptop naming the child by user ID (as xs-admin
// users --json shows it), or, for a second replacement, by the serial they
// remember (a former one). The laptop the child had until now must become
// a former serial of the history, as with the serial itself: the history
// is reachable by it, before and after the daemon restarts, and a device
// registering that serial is answered the same way before and after (a
// stale name kept only in memory refuses it as "already registered" until
// the restart, then not), never given the history.
func TestIDAttackAliasNamedByIDOrFormerSerial(t *testing.T) {
	for _, how := range []string{"by user ID", "by former serial"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			data := t.TempDir()
			d, stop := idaStart(t, data, nil)
			svc := &admin.Service{S: d.Store, Live: true}
			child := newLaptop(t, d, "IDAAL001", 61)
			child.run(t)
			u := userBySerial(t, d, "IDAAL001")
			name, current := u.ID.String(), "IDAAL001" // how staff name the child; the laptop it has now
			if how == "by former serial" {
				if _, err := svc.Alias(ctx, admin.AliasRequest{Serial: "IDAAL001", NewSerial: "IDAAL002"}); err != nil {
					t.Fatal(err)
				}
				name, current = "IDAAL001", "IDAAL002"
			}
			got, err := svc.Alias(ctx, admin.AliasRequest{Serial: name, NewSerial: "IDAAL003"})
			if err != nil {
				t.Fatalf("xs-admin alias %s IDAAL003: %v", name, err)
			}
			if got.ID != u.ID || got.Serial != "IDAAL003" {
				t.Fatalf("alias moved user %s to %s", got.ID, got.Serial)
			}
			if !slices.Contains(got.Aliases, current) {
				t.Errorf("xs-admin alias %s IDAAL003: the history's former serials are %q; %s, the laptop it had, is not one of them", name, got.Aliases, current)
			}

			stop()
			d2, _ := idaStart(t, data, nil)
			names := []string{"IDAAL001", "IDAAL003", u.ID.String()}
			if !slices.Contains(names, current) {
				names = append(names, current)
			}
			for _, s := range names {
				if v, err := d2.Store.UserBySerial(s); err != nil || v.ID != u.ID {
					t.Errorf("after a restart, %s names %v (%v), not the child's history %s", s, idaIDOf(v), err, u.ID)
				}
			}
			// A device with no proof registering the laptop's serial gets
			// nothing of the history.
			if res, err := proto.RegisterWith(ctx, d2.Addr.String(), freshKey(), proto.RegisterRequest{Serial: current}); err == nil && (res.Continued || res.Snapshots > 0) {
				t.Errorf("a new device registering %s took the history: %+v", current, res)
			}
			idaCheckUserFiles(t, data)
		})
	}
}

func idaIDOf(u *store.User) string {
	if u == nil {
		return "nobody"
	}
	return u.ID.String() + " (" + u.Serial + ")"
}
