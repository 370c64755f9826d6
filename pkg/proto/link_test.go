package proto

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestRestoreLinks(t *testing.T) {
	alice, _ := GenerateKey()
	bob, _ := GenerateKey()
	server, _ := GenerateKey()
	keys := map[string]ed25519.PrivateKey{"ALICE": alice, "BOB": bob}
	key := func(serial string, byServer bool) (ed25519.PublicKey, error) {
		if byServer {
			return server.Public().(ed25519.PublicKey), nil
		}
		k, ok := keys[serial]
		if !ok {
			return nil, errors.New("unknown")
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	hour := now.Add(time.Hour)
	tok := SignLink(alice, LinkClaims{Serial: "ALICE", Expires: hour})
	c, err := VerifyLink(tok, now, key)
	if err != nil || c.Serial != "ALICE" || c.ByServer || !c.Expires.Equal(hour) {
		t.Fatalf("good link: %+v %v", c, err)
	}
	staff := SignLink(server, LinkClaims{Serial: "BOB", Expires: hour, ByServer: true})
	if c, err := VerifyLink(staff, now, key); err != nil || c.Serial != "BOB" || !c.ByServer {
		t.Fatalf("staff link: %+v %v", c, err)
	}
	for name, tc := range map[string]struct {
		tok  string
		want error
	}{
		"expired":              {tok, ErrLinkExpired},
		"bob signs for alice":  {SignLink(bob, LinkClaims{Serial: "ALICE", Expires: hour}), ErrLinkInvalid},
		"laptop claims server": {SignLink(alice, LinkClaims{Serial: "ALICE", Expires: hour, ByServer: true}), ErrLinkInvalid},
		"unknown serial":       {SignLink(alice, LinkClaims{Serial: "EVE", Expires: hour}), ErrLinkInvalid},
		"valid for a year":     {SignLink(alice, LinkClaims{Serial: "ALICE", Expires: now.AddDate(1, 0, 0)}), ErrLinkInvalid},
		"garbage":              {"hello", ErrLinkInvalid},
		"tampered":             {tok[:5] + "A" + tok[6:], ErrLinkInvalid},
		"truncated signature":  {tok[:len(tok)-4], ErrLinkInvalid},
	} {
		at := now
		if name == "expired" {
			at = hour
		}
		if _, err := VerifyLink(tc.tok, at, key); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func FuzzParseLink(f *testing.F) {
	k, _ := GenerateKey()
	f.Add(SignLink(k, LinkClaims{Serial: "SHC1234", Expires: time.Unix(1<<31, 0)}))
	f.Add("WFNMMQ.AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseLink(tok)
		if err == nil && len(c.Serial) > 255 {
			t.Fatal("serial longer than its length byte allows")
		}
		VerifyLink(tok, time.Unix(0, 0), func(string, bool) (ed25519.PublicKey, error) { return k.Public().(ed25519.PublicKey), nil })
	})
}
