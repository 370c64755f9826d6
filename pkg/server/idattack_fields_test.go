package server_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestIDAttackHostileRegistrationFields: devices register with serials no
// laptop has (empty, path separators and "..", "users/ID", control
// characters, an escape sequence, bytes that are not UTF-8, 65 characters,
// a user ID's form, look-alike letters) and with hostile nicknames (over
// the limit, control characters, not UTF-8). Every serial the store could
// not take back by name is refused as a bad request naming the serial, and
// makes no account; a nickname over the limit is refused naming the
// nickname. What is taken is stored so that a restart reads the same
// users: every user file has its copy, nothing else appears in the data
// directory, every account is found by its serial after the restart, and
// nicknames come back as they were stored (valid UTF-8).
func TestIDAttackHostileRegistrationFields(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	data := t.TempDir()
	d, stop := idaStart(t, data, nil)
	owner := newLaptop(t, d, "IDAFLD01", 81)
	owner.run(t)
	topBefore := idaDirNames(t, data)
	usersBefore := len(d.Store.Users())

	refused := []string{"", "../x", "..//..", "a/b", `a\b`, "users/0000000000000001", "/etc", "x\x00y", "IDAFLD01\x00",
		"x\ny", "\x1b[31mRED", "\xff\xfe", "IDAFLD01\xc0", strings.Repeat("A", 65), "0000000000000001", "000000000000000A",
		"SHC 1", "ＳHC1", "SHC1\t", "IDAFLD01 "}
	for _, sn := range refused {
		res, err := proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: sn, Nickname: "x"})
		if err == nil {
			t.Errorf("serial %q was registered: %+v", sn, res)
			continue
		}
		if proto.KindOf(err) != proto.KindBadRequest || !strings.Contains(err.Error(), "serial") {
			t.Errorf("serial %q: %v (want a bad request saying what a serial may be)", sn, err)
		}
	}
	if n := len(d.Store.Users()); n != usersBefore {
		t.Errorf("%d accounts after the refused serials, %d before", n, usersBefore)
	}

	// Nicknames: over the limit is refused, with the nickname named.
	if _, err := proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: "IDAFLD02", Nickname: strings.Repeat("n", 257)}); err == nil || !strings.Contains(err.Error(), "nickname") {
		t.Errorf("a 257-byte nickname: %v (want refused, naming the nickname)", err)
	}
	if _, err := proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: "IDAFLD03", Nickname: strings.Repeat("n", 900<<10)}); err == nil {
		t.Errorf("a 900 KiB nickname was taken")
	}
	nicks := map[string]string{
		"IDAFLD04": "\x1b]0;owned\x07Ana\r\n\x1b[2J",
		"IDAFLD05": "Ana \xff\xfe Lopez",
		"IDAFLD06": strings.Repeat("é", 128), // 256 bytes: at the limit
		"IDAFLD07": "\u202eanA",
	}
	for sn, nick := range nicks {
		if _, err := proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: sn, Nickname: nick}); err != nil {
			t.Errorf("serial %s with nickname %q: %v", sn, nick, err)
		}
	}
	// Odd serials the store may take: whatever it takes must be found again.
	var taken []string
	for _, sn := range []string{".", "..", "users", "snapshots", "packs", "-rf", "_", "damaged", "IDAFLD01.old"} {
		if _, err := proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: sn}); err == nil {
			taken = append(taken, sn)
		}
	}
	t.Logf("odd serials taken: %q", taken)
	svc := &admin.Service{S: d.Store, Live: true}
	rows, err := svc.Pending(ctx, admin.PendingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, u := range d.Store.Users() {
		before[u.Serial] = u.Nickname
	}

	addr := d.Addr.String()
	stop()
	d2, _ := idaStart(t, data, func(c *server.Config) { c.Listen = addr }) // where the owner's laptop registered
	if top := idaDirNames(t, data); !slices.Equal(top, topBefore) {
		t.Errorf("the data directory held %q, now %q", topBefore, top)
	}
	idaCheckUserFiles(t, data)
	after := map[string]string{}
	for _, u := range d2.Store.Users() {
		after[u.Serial] = u.Nickname
		if !utf8.ValidString(u.Nickname) {
			t.Errorf("user %s: nickname %q is not UTF-8", u.Serial, u.Nickname)
		}
	}
	for sn, nick := range before {
		if got, ok := after[sn]; !ok || got != nick {
			t.Errorf("user %q nicknamed %q before the restart; after: %q (present %v)", sn, nick, got, ok)
		}
	}
	for _, sn := range append(taken, "IDAFLD01", "IDAFLD04", "IDAFLD05", "IDAFLD06", "IDAFLD07") {
		if u, err := d2.Store.UserBySerial(sn); err != nil || u.Serial != sn {
			t.Errorf("after a restart, serial %q names %v (%v)", sn, idaIDOf(u), err)
		}
	}
	if n := len(d2.Store.Users()); n != len(before) {
		t.Errorf("%d accounts after the restart, %d before", n, len(before))
	}
	t.Logf("%d registrations wait for staff", len(rows))
	// The owner's laptop is unaffected.
	owner.run(t)
}

func idaDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
