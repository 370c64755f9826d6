package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestIDAttackSerialOfADamagedStandIn: when a user file and its copy are
// both lost, the store keeps the user's backups under the serial
// "damaged-ID" until staff give them back with xs-admin alias damaged-ID
// SERIAL (README). User IDs are handed out in order, so a device can
// register the serial "damaged-0000000000000001" ahead of any damage and
// back up a Journal of its own. After the damage, staff run exactly what
// check advises: the history moved to the child's serial must be the
// child's (user 1), not the device's planted one, and the child's real
// backups must not be left under a name that nobody reaches.
func TestIDAttackSerialOfADamagedStandIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	data := t.TempDir()
	d, stop := idaStart(t, data, nil)
	child := newLaptop(t, d, "IDADMG01", 91)
	child.run(t)
	cu := userBySerial(t, d, "IDADMG01")
	standIn := "damaged-" + cu.ID.String()

	planted := &laptop{st: agent.State{Dir: t.TempDir()}, src: t.TempDir(), serial: standIn}
	if err := os.WriteFile(filepath.Join(planted.src, "planted.txt"), []byte("not the child's work"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Register(ctx, planted.st, agent.RegisterOptions{Server: d.Addr.String(), Serial: standIn}); err != nil {
		t.Logf("registering %s: %v (refused: a name the store keeps for itself)", standIn, err)
	} else {
		planted.run(t)
	}

	// Both copies of the child's user file are lost.
	addr := d.Addr.String()
	stop()
	uf := filepath.Join(data, "users", cu.ID.String()+".json")
	if err := os.WriteFile(uf, []byte("\x00\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(uf + ".copy"); err != nil {
		t.Fatal(err)
	}
	d2, _ := idaStart(t, data, func(c *server.Config) { c.Listen = addr })
	if u, err := d2.Store.UserBySerial(standIn); err != nil || u.ID != cu.ID {
		t.Errorf("after the damage, %s names %s (%v), not the child's backups (user %s)", standIn, idaIDOf(u), err, cu.ID)
	}
	svc := &admin.Service{S: d2.Store, Live: true}
	got, err := svc.Alias(ctx, admin.AliasRequest{Serial: standIn, NewSerial: "IDADMG01"})
	if err != nil {
		t.Fatalf("xs-admin alias %s IDADMG01: %v", standIn, err)
	}
	if got.ID != cu.ID {
		t.Errorf("xs-admin alias %s IDADMG01 gave IDADMG01 user %s's history (%d snapshot(s), the device's planted Journal), not the child's (user %s, %d snapshot(s), left as %q)",
			standIn, got.ID, len(d2.Store.Snapshots(got.ID)), cu.ID, len(d2.Store.Snapshots(cu.ID)), idaSerialOf(d2, cu.ID))
	}
}

func idaSerialOf(d *server.Daemon, u interface{ String() string }) string {
	for _, v := range d.Store.Users() {
		if v.ID.String() == u.String() {
			return v.Serial
		}
	}
	return "?"
}
