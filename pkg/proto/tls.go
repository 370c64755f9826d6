package proto

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"time"
)

// ALPN protocol names. Registration has its own, so that on the backup
// protocol an unknown key is refused inside the TLS handshake, before any
// request is read.
const (
	ALPNBackup   = "xs-backup/1"
	ALPNRegister = "xs-backup-register/1"
)

// Fingerprint is how a key is shown to people: "SHA256:" and the unpadded
// base64 of the SHA-256 of the public key, like OpenSSH.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// certificate makes a self-signed certificate for an ed25519 key. The
// certificate only carries the key: trust comes from pinning, not from a CA.
func certificate(key ed25519.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "xs-backup"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// peerKey returns the ed25519 key of the peer's (only) certificate. TLS 1.3
// has already proved that the peer holds the private key.
func peerKey(certs []*x509.Certificate) (ed25519.PublicKey, error) {
	if len(certs) != 1 {
		return nil, errors.New("peer must present exactly one certificate")
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("peer key is not ed25519")
	}
	return pub, nil
}

func parseCerts(raw [][]byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// GenerateKey makes a new ed25519 key pair.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MaxKeyFile caps what is read of a key file: EncodeKey's form is 65
// bytes.
const MaxKeyFile = 4 << 10

// EncodeKey is the form a server key file holds: the key's seed in hex and
// a newline.
func EncodeKey(key ed25519.PrivateKey) []byte {
	return []byte(hex.EncodeToString(key.Seed()) + "\n")
}

// DecodeKey reads what EncodeKey wrote; ok is false for anything else.
func DecodeKey(b []byte) (key ed25519.PrivateKey, ok bool) {
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, false
	}
	return ed25519.NewKeyFromSeed(seed), true
}
