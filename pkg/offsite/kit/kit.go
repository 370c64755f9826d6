// Package kit seals a school server's key with a recovery passphrase that
// school staff keep (printed on the recovery kit), so that the key can travel
// to and live on a mothership without the mothership's operators being able
// to use it, and derives from the same passphrase a recovery key with which a
// new machine proves to the mothership that it speaks for the school.
//
// # Passphrase
//
// A passphrase is 24 characters from a 31-character alphabet without 0, O,
// 1, I and L (digits 2 to 9 and the other 23 capital letters), written in
// six groups of four: "7KQM-ZC3W-…". The first 23 are random (113 bits);
// the last is a check character chosen so that the sum of every
// character's value (its place in the alphabet) times its position (1 to
// 24) is a multiple of 31. As 31 is prime and the weights are distinct and
// below it, any one mistyped character and any two swapped characters are
// caught as a typo before anything is derived. Case, spaces and dashes do
// not matter.
//
// # Sealed key
//
// Seal writes a small JSON document:
//
//	{"format":"xs-backup sealed key","version":1,"label":"Escuela 12",
//	 "kdf":"pbkdf2-sha256","iterations":600000,"salt":"…","check":"…",
//	 "nonce":"…","sealed":"…","sum":"…"}
//
// (binary fields in standard base64). The passphrase (in its canonical
// form) and the 16-byte random salt give, by PBKDF2-HMAC-SHA256 with the
// stored iteration count, a 32-byte master key; HKDF-SHA256 of it gives the
// AES-256-GCM key (info "xs-backup kit seal v1") and an 8-byte check value
// (info "xs-backup kit check v1") that tells a wrong passphrase from a
// damaged document. The associated data binds the version, the iteration
// count, the salt and the label, so none can be changed unnoticed. The
// "sum" is the first 8 bytes of a SHA-256 over the other fields, so that
// accidental damage is reported as damage rather than as a wrong
// passphrase (it proves nothing against deliberate change; the GCM tag
// does). The iteration count is stored so that it can grow; Open accepts
// from 600000 to 50 million.
//
// # Recovery key
//
// RecoveryKey is deterministic: PBKDF2-HMAC-SHA256 of the passphrase with
// 600000 iterations and the salt SHA-256("xs-backup recovery salt v1\x00" |
// label), then HKDF-SHA256 (info "xs-backup recovery key v1") to a 32-byte
// ed25519 seed. Its parameters are fixed forever: a test pins the key
// derived from a known passphrase.
package kit

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

const (
	alphabet      = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
	randomChars   = 23
	passphraseLen = randomChars + 1
	groupLen      = 4

	format         = "xs-backup sealed key"
	version        = 1
	kdfName        = "pbkdf2-sha256"
	maxIterations  = 50_000_000
	saltLen        = 16
	checkLen       = 8
	maxSecret      = 4096
	maxSealed      = 64 << 10
	maxLabel       = 1024
	infoSeal       = "xs-backup kit seal v1"
	infoCheck      = "xs-backup kit check v1"
	infoRecovery   = "xs-backup recovery key v1"
	recoverySalt   = "xs-backup recovery salt v1\x00"
	realIterations = 600_000
)

// The iteration counts. Tests lower them to stay fast (and test the real
// ones once); nothing else changes them.
var (
	sealIterations     = realIterations // what Seal writes
	minIterations      = realIterations // the least Open accepts
	recoveryIterations = realIterations // RecoveryKey's, fixed forever
)

// ErrTypo is matched (with errors.Is) by the error for a passphrase whose
// check character does not match: a typo, caught before any key is
// derived. It is also of kind errkind.BadRequest.
var ErrTypo = errors.New("the passphrase has a typo")

type kitError struct {
	kind errkind.Kind
	typo bool
	msg  string
}

func (e *kitError) Error() string { return e.msg }

func (e *kitError) Unwrap() []error {
	errs := []error{&errkind.Error{Kind: e.kind}}
	if e.typo {
		errs = append(errs, ErrTypo)
	}
	return errs
}

func kerr(k errkind.Kind, format string, args ...any) error {
	return &kitError{kind: k, msg: fmt.Sprintf(format, args...)}
}

// NewPassphrase returns a new random recovery passphrase, in six groups of
// four characters separated by dashes.
func NewPassphrase() (string, error) {
	var b [passphraseLen]byte
	for i := range randomChars {
		// Rejection sampling: 248 = 8*31, so each value is equally likely.
		for {
			var r [1]byte
			if _, err := rand.Read(r[:]); err != nil {
				return "", fmt.Errorf("kit: random passphrase: %w", err)
			}
			if r[0] < 248 {
				b[i] = alphabet[r[0]%31]
				break
			}
		}
	}
	// The check value c makes weighted(all) = 0: 24*c = -weighted(first 23)
	// mod 31, and 22 is the inverse of 24 mod 31.
	b[randomChars] = alphabet[(31-weighted(b[:randomChars]))%31*22%31]
	return group(b[:]), nil
}

// weighted is the sum of the values of chars (all from the alphabet) times
// their positions, from 1, modulo 31.
func weighted(chars []byte) int {
	sum := 0
	for i, c := range chars {
		sum += (i + 1) * strings.IndexByte(alphabet, c)
	}
	return sum % 31
}

func group(b []byte) string {
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%groupLen == 0 {
			s.WriteByte('-')
		}
		s.WriteByte(c)
	}
	return s.String()
}

// CheckPassphrase reports whether p is a well-formed passphrase: the right
// length, only characters of the alphabet, and a matching check character.
// Case, spaces and dashes are ignored. The errors say which, for people,
// are of kind errkind.BadRequest, and a typo also matches ErrTypo.
func CheckPassphrase(p string) error {
	_, err := canonical(p)
	return err
}

// canonical returns p's canonical form (capitals in groups of four with
// dashes) if it is well-formed.
func canonical(p string) (string, error) {
	var b []byte
	for _, r := range p {
		switch {
		case r == ' ' || r == '-' || r == '\t' || r == '\n' || r == '\r':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		if r > 0x7f || strings.IndexByte(alphabet, byte(r)) < 0 {
			switch r {
			case '0', 'O', '1', 'I', 'L':
				return "", kerr(errkind.BadRequest, "the passphrase has a %q, which never appears in one (it has no 0, O, 1, I or L): check the kit again", r)
			}
			return "", kerr(errkind.BadRequest, "the passphrase has a %q, which never appears in one", r)
		}
		b = append(b, byte(r))
		if len(b) > passphraseLen {
			break
		}
	}
	if len(b) != passphraseLen {
		return "", kerr(errkind.BadRequest, "the passphrase should have %d characters (six groups of four), not %d", passphraseLen, len(b))
	}
	if weighted(b) != 0 {
		return "", &kitError{kind: errkind.BadRequest, typo: true, msg: "the passphrase has a typo: check each group against the recovery kit"}
	}
	return group(b), nil
}

func checkLabel(label string) error {
	if label == "" || len(label) > maxLabel {
		return kerr(errkind.BadRequest, "kit: the label must be 1 to %d bytes", maxLabel)
	}
	return nil
}

// sealedDoc is the JSON form of a sealed secret.
type sealedDoc struct {
	Format     string `json:"format"`
	Version    int    `json:"version"`
	Label      string `json:"label"`
	KDF        string `json:"kdf"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Check      []byte `json:"check"`
	Nonce      []byte `json:"nonce"`
	Sealed     []byte `json:"sealed"`
	Sum        []byte `json:"sum"`
}

// sum is a plain checksum of everything else, so that accidental damage
// (to the salt, say) is reported as damage, not as a wrong passphrase.
func (s *sealedDoc) sum() []byte {
	h := sha256.New()
	for _, b := range [][]byte{s.aad(), s.Check, s.Nonce, s.Sealed} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return h.Sum(nil)[:checkLen]
}

// keys derives the AES key and the check value.
func keys(canon string, salt []byte, iter int) (aesKey, check []byte, err error) {
	master, err := pbkdf2.Key(sha256.New, canon, salt, iter, 32)
	if err != nil {
		return nil, nil, err
	}
	if aesKey, err = hkdf.Key(sha256.New, master, nil, infoSeal, 32); err != nil {
		return nil, nil, err
	}
	if check, err = hkdf.Key(sha256.New, master, nil, infoCheck, checkLen); err != nil {
		return nil, nil, err
	}
	return aesKey, check, nil
}

func (s *sealedDoc) aad() []byte {
	return fmt.Appendf(nil, "%s\x00%d\x00%d\x00%x\x00%s", format, s.Version, s.Iterations, s.Salt, s.Label)
}

// Seal encrypts secret (the server's private key) under a key derived from
// passphrase, bound to label (the school), and returns the sealed document.
func Seal(passphrase, label string, secret []byte) ([]byte, error) {
	canon, err := canonical(passphrase)
	if err != nil {
		return nil, err
	}
	if err := checkLabel(label); err != nil {
		return nil, err
	}
	if len(secret) == 0 || len(secret) > maxSecret {
		return nil, kerr(errkind.BadRequest, "kit: the secret must be 1 to %d bytes, not %d", maxSecret, len(secret))
	}
	s := &sealedDoc{Format: format, Version: version, Label: label, KDF: kdfName, Iterations: sealIterations,
		Salt: make([]byte, saltLen)}
	if _, err := rand.Read(s.Salt); err != nil {
		return nil, fmt.Errorf("kit: random salt: %w", err)
	}
	aesKey, check, err := keys(canon, s.Salt, s.Iterations)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	s.Check = check
	gcm, err := newGCM(aesKey)
	if err != nil {
		return nil, err
	}
	s.Nonce = make([]byte, gcm.NonceSize())
	if _, err := rand.Read(s.Nonce); err != nil {
		return nil, fmt.Errorf("kit: random nonce: %w", err)
	}
	s.Sealed = gcm.Seal(nil, s.Nonce, secret, s.aad())
	s.Sum = s.sum()
	return json.MarshalIndent(s, "", "  ")
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	return gcm, nil
}

// Open decrypts a document made by Seal. A passphrase with a typo is
// refused first (kind errkind.BadRequest, matching ErrTypo); a sealed key
// for another label is refused (errkind.BadRequest); a wrong passphrase is
// errkind.Permission; a damaged or altered document is errkind.Damaged, or
// errkind.BadRequest if it is not a sealed key at all.
func Open(passphrase, label string, data []byte) ([]byte, error) {
	canon, err := canonical(passphrase)
	if err != nil {
		return nil, err
	}
	if len(data) > maxSealed {
		return nil, kerr(errkind.BadRequest, "this is not a sealed key: %d bytes is far too long for one", len(data))
	}
	var s sealedDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		if bytes.Contains(data, []byte(format)) {
			return nil, kerr(errkind.Damaged, "the sealed key is damaged: it cannot be read (%v)", err)
		}
		return nil, kerr(errkind.BadRequest, "this is not a sealed key")
	}
	if s.Format != format {
		return nil, kerr(errkind.BadRequest, "this is not a sealed key")
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return nil, kerr(errkind.Damaged, "the sealed key is damaged: something follows it")
	}
	if s.Version != version {
		return nil, kerr(errkind.BadRequest, "the sealed key has format version %d; this program reads version %d", s.Version, version)
	}
	if s.Label != label {
		return nil, kerr(errkind.BadRequest, "this sealed key belongs to %q, not to %q", clip(s.Label), clip(label))
	}
	if s.KDF != kdfName || s.Iterations < minIterations || s.Iterations > maxIterations ||
		len(s.Salt) != saltLen || len(s.Check) != checkLen || len(s.Nonce) != 12 || len(s.Sealed) < 16 || len(s.Sealed) > maxSecret+16 {
		return nil, kerr(errkind.Damaged, "the sealed key is damaged: its parameters are invalid")
	}
	if !bytes.Equal(s.Sum, s.sum()) {
		return nil, kerr(errkind.Damaged, "the sealed key is damaged: its checksum does not match")
	}
	aesKey, check, err := keys(canon, s.Salt, s.Iterations)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	if subtle.ConstantTimeCompare(check, s.Check) != 1 {
		return nil, kerr(errkind.Permission, "wrong passphrase: this is not the passphrase the key of %q was sealed with", clip(label))
	}
	gcm, err := newGCM(aesKey)
	if err != nil {
		return nil, err
	}
	secret, err := gcm.Open(nil, s.Nonce, s.Sealed, s.aad())
	if err != nil {
		return nil, kerr(errkind.Damaged, "the sealed key is damaged or was altered: the passphrase is right but the key does not decrypt")
	}
	return secret, nil
}

// RecoveryKey derives the school's recovery key from passphrase and label:
// the same pair always gives the same key, on any machine, so a new server
// holding only the passphrase can prove to the mothership that it speaks
// for the school (whose mothership registered the key's public half).
func RecoveryKey(passphrase, label string) (ed25519.PrivateKey, error) {
	canon, err := canonical(passphrase)
	if err != nil {
		return nil, err
	}
	if err := checkLabel(label); err != nil {
		return nil, err
	}
	salt := sha256.Sum256([]byte(recoverySalt + label))
	master, err := pbkdf2.Key(sha256.New, canon, salt[:], recoveryIterations, 32)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	seed, err := hkdf.Key(sha256.New, master, nil, infoRecovery, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
