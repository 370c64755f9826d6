package proto

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

// TestLinkHasOneSpelling: a restore link's token is one string: the spare
// bits of the last base64 character of its payload or its signature,
// changed, make another string that must not verify as the same link.
func TestLinkHasOneSpelling(t *testing.T) {
	k, _ := GenerateKey()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	key := func(string, bool) (ed25519.PublicKey, error) { return k.Public().(ed25519.PublicKey), nil }
	tok := SignLink(k, LinkClaims{Serial: "ALICE", Expires: now.Add(time.Hour)})
	if _, err := VerifyLink(tok, now, key); err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	p, s, _ := strings.Cut(tok, ".")
	other := func(part string) []string {
		last := strings.IndexByte(alphabet, part[len(part)-1])
		var out []string
		for i := 0; i < 64; i++ {
			if i != last && i>>2 == last>>2 { // same high bits: only spare ones differ (64 = 4·16)
				out = append(out, part[:len(part)-1]+string(alphabet[i]))
			}
		}
		return out
	}
	for _, q := range other(s) {
		if _, err := VerifyLink(p+"."+q, now, key); err == nil {
			t.Errorf("a token with another last signature character (%q for %q) verifies", q[len(q)-1:], s[len(s)-1:])
		}
	}
	for _, q := range other(p) {
		if _, err := VerifyLink(q+"."+s, now, key); err == nil {
			t.Errorf("a token with another last payload character verifies")
		}
	}
}
