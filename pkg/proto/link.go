package proto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Restore links.
//
// A student reaches the restore page through a short-lived link that their
// own laptop signs with its registered key (no passwords); staff get one
// signed by the server's key. The token in the link is
//
//	base64url(payload) "." base64url(ed25519 signature)
//	payload = "XSL1" | signer u8 ('L' laptop, 'S' server) | expires u64 (Unix s, big endian) | len u8 | serial
//
// and the signature covers linkContext followed by the payload, so that it
// can never be mistaken for a signature of anything else the key signs.

const linkContext = "xs-backup restore link v1\x00"

// MaxLinkLifetime is the longest validity a server accepts for a link.
const MaxLinkLifetime = 24 * time.Hour

// Link errors, for the refusal page.
var (
	ErrLinkInvalid = errors.New("this link is not valid")
	ErrLinkExpired = errors.New("this link has expired")
)

// LinkClaims is what a restore link says.
type LinkClaims struct {
	Serial  string
	Expires time.Time
	// ByServer is set for links staff made (signed by the server's key).
	ByServer bool
}

// SignLink makes the token of a restore link for serial, valid until expires.
func SignLink(key ed25519.PrivateKey, c LinkClaims) string {
	p := make([]byte, 0, 15+len(c.Serial))
	p = append(p, "XSL1"...)
	signer := byte('L')
	if c.ByServer {
		signer = 'S'
	}
	p = append(p, signer)
	p = binary.BigEndian.AppendUint64(p, uint64(c.Expires.Unix()))
	p = append(p, byte(len(c.Serial)))
	p = append(p, c.Serial...)
	sig := ed25519.Sign(key, append([]byte(linkContext), p...))
	return base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// ParseLink decodes a token without checking its signature; VerifyLink does.
func ParseLink(token string) (LinkClaims, error) {
	c, _, _, err := parseLink(token)
	return c, err
}

func parseLink(token string) (LinkClaims, []byte, []byte, error) {
	if len(token) > 512 {
		return LinkClaims{}, nil, nil, ErrLinkInvalid
	}
	ps, ss, ok := strings.Cut(token, ".")
	if !ok {
		return LinkClaims{}, nil, nil, ErrLinkInvalid
	}
	// Strict: one token per link (no other spare bits in its last
	// character).
	p, err1 := base64.RawURLEncoding.Strict().DecodeString(ps)
	sig, err2 := base64.RawURLEncoding.Strict().DecodeString(ss)
	if err1 != nil || err2 != nil || len(sig) != ed25519.SignatureSize || len(p) < 14 || !bytes.HasPrefix(p, []byte("XSL1")) {
		return LinkClaims{}, nil, nil, ErrLinkInvalid
	}
	n := int(p[13])
	if len(p) != 14+n || (p[4] != 'L' && p[4] != 'S') {
		return LinkClaims{}, nil, nil, ErrLinkInvalid
	}
	c := LinkClaims{Serial: string(p[14:]), ByServer: p[4] == 'S',
		Expires: time.Unix(int64(binary.BigEndian.Uint64(p[5:13])), 0)}
	return c, p, sig, nil
}

// VerifyLink checks a token at time now. key returns the public key that
// must have signed it: the laptop's registered key for serial, or the
// server's own key if byServer. It returns ErrLinkInvalid for anything
// malformed, forged or signed by the wrong key, ErrLinkExpired for an old
// link (and for one claiming more than MaxLinkLifetime ahead).
func VerifyLink(token string, now time.Time, key func(serial string, byServer bool) (ed25519.PublicKey, error)) (LinkClaims, error) {
	c, p, sig, err := parseLink(token)
	if err != nil {
		return c, err
	}
	pub, err := key(c.Serial, c.ByServer)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return c, ErrLinkInvalid
	}
	if !ed25519.Verify(pub, append([]byte(linkContext), p...), sig) {
		return c, ErrLinkInvalid
	}
	if !now.Before(c.Expires) {
		return c, ErrLinkExpired
	}
	if c.Expires.Sub(now) > MaxLinkLifetime {
		return c, fmt.Errorf("%w: it claims to be valid for more than %v", ErrLinkInvalid, MaxLinkLifetime)
	}
	return c, nil
}
