package server_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestIDAttackClaimCodeLimits: claim codes are the proof that lets a
// reflashed laptop continue its history without staff. Each way a code
// must stop working is tried over the wire on a real daemon whose clock
// the test moves: a code past its expiry; a code after five wrong tries
// from five devices (the right one then fails too, until staff issue a new
// one, which works); four wrong tries and then the right code (works); a
// code of one serial given with another's; a code still out when staff
// approve the reflashed laptop's key another way, or start a new history
// (neither the serial nor SERIAL.old can be claimed with it). Every
// refusal says it is about the claim code, leaves no key waiting and no
// key changed; every success continues the whole history.
func TestIDAttackClaimCodeLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var offset atomic.Int64
	d := startDaemon(t, func(c *server.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	svc := &admin.Service{S: d.Store, Live: true, Now: d.Config.Now}
	history := func(serial string, seed uint64) {
		l := newLaptop(t, d, serial, seed)
		l.run(t)
	}
	code := func(serial string, ttl time.Duration) string {
		cr, err := svc.ClaimCode(ctx, admin.ClaimCodeRequest{Serial: serial, Expires: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return cr.Code
	}
	claim := func(serial, c string) (proto.RegisterResult, error) {
		return proto.RegisterWith(ctx, d.Addr.String(), freshKey(), proto.RegisterRequest{Serial: serial, Claim: c})
	}
	// refused checks a refused claim left the serial's user as it was.
	refused := func(what, serial string, res proto.RegisterResult, err error, keyBefore []byte) {
		t.Helper()
		u := userBySerial(t, d, serial)
		switch {
		case err == nil:
			t.Errorf("%s: the claim worked: %+v", what, res)
		case !strings.Contains(err.Error(), "claim code"):
			t.Errorf("%s: %v (want words about the claim code)", what, err)
		}
		if u.PendingKey != nil || !bytes.Equal(u.PublicKey, keyBefore) {
			t.Errorf("%s: after the refused claim, key changed %v, a key waits %v", what, !bytes.Equal(u.PublicKey, keyBefore), u.PendingKey != nil)
		}
	}
	works := func(what, serial string, res proto.RegisterResult, err error) {
		t.Helper()
		u := userBySerial(t, d, serial)
		if err != nil || !res.Continued || res.Snapshots != len(d.Store.Snapshots(u.ID)) || res.Snapshots == 0 {
			t.Errorf("%s: %+v %v (want the history continued, %d backups)", what, res, err, len(d.Store.Snapshots(u.ID)))
		}
	}

	// Expired.
	history("IDACLM01", 101)
	k := userBySerial(t, d, "IDACLM01").PublicKey
	c := code("IDACLM01", time.Hour)
	offset.Store(int64(61 * time.Minute))
	res, err := claim("IDACLM01", c)
	refused("a code an hour old, issued for an hour", "IDACLM01", res, err, k)
	offset.Store(0)

	// Five wrong tries use it up; a new code works.
	history("IDACLM02", 102)
	k = userBySerial(t, d, "IDACLM02").PublicKey
	c = code("IDACLM02", time.Hour)
	for i := range 5 {
		res, err := claim("IDACLM02", "wrong-code"+string(rune('a'+i)))
		refused("a wrong code", "IDACLM02", res, err, k)
	}
	res, err = claim("IDACLM02", c)
	refused("the right code after five wrong ones", "IDACLM02", res, err, k)
	res, err = claim("IDACLM02", code("IDACLM02", time.Hour))
	works("a new code after five wrong tries", "IDACLM02", res, err)

	// Four wrong tries, then the right code.
	history("IDACLM03", 103)
	k = userBySerial(t, d, "IDACLM03").PublicKey
	c = code("IDACLM03", time.Hour)
	for range 4 {
		res, err := claim("IDACLM03", "zzzzz-zzzzz")
		refused("a wrong code", "IDACLM03", res, err, k)
	}
	res, err = claim("IDACLM03", c)
	works("the right code after four wrong ones", "IDACLM03", res, err)

	// One serial's code with another serial.
	history("IDACLM04", 104)
	history("IDACLM05", 105)
	k4, k5 := userBySerial(t, d, "IDACLM04").PublicKey, userBySerial(t, d, "IDACLM05").PublicKey
	c4, c5 := code("IDACLM04", time.Hour), code("IDACLM05", time.Hour)
	res, err = claim("IDACLM05", c4)
	refused("IDACLM04's code given for IDACLM05", "IDACLM05", res, err, k5)
	res, err = claim("IDACLM04", c5)
	refused("IDACLM05's code given for IDACLM04", "IDACLM04", res, err, k4)
	res, err = claim("IDACLM04", c4)
	works("IDACLM04's own code", "IDACLM04", res, err)
	res, err = claim("IDACLM05", c5)
	works("IDACLM05's own code", "IDACLM05", res, err)

	// Staff approve the reflashed laptop's key: the code out is void.
	history("IDACLM06", 106)
	c = code("IDACLM06", time.Hour)
	real := freshKey()
	if r, err := proto.RegisterWith(ctx, d.Addr.String(), real, proto.RegisterRequest{Serial: "IDACLM06"}); err != nil || !r.KeyChange {
		t.Fatalf("the reflashed laptop: %+v %v", r, err)
	}
	if _, err := svc.Approve(ctx, admin.ApproveRequest{Serial: "IDACLM06", Key: proto.Fingerprint(idaPub(real))}); err != nil {
		t.Fatal(err)
	}
	res, err = claim("IDACLM06", c)
	refused("the code out when staff approved the laptop's key", "IDACLM06", res, err, idaPub(real))

	// Staff start a new history: the code takes neither.
	history("IDACLM07", 107)
	c = code("IDACLM07", time.Hour)
	next := freshKey()
	if r, err := proto.RegisterWith(ctx, d.Addr.String(), next, proto.RegisterRequest{Serial: "IDACLM07"}); err != nil || !r.KeyChange {
		t.Fatalf("the new laptop: %+v %v", r, err)
	}
	if _, err := svc.Approve(ctx, admin.ApproveRequest{Serial: "IDACLM07", NewHistory: true}); err != nil {
		t.Fatal(err)
	}
	old := userBySerial(t, d, "IDACLM07.old")
	res, err = claim("IDACLM07", c)
	refused("the code out when staff started a new history", "IDACLM07", res, err, idaPub(next))
	res, err = claim("IDACLM07.old", c)
	refused("the code out, given for the old history", "IDACLM07.old", res, err, old.PublicKey)
}
