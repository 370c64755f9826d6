package kit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// TestMain lowers the iteration counts so that the tests stay fast;
// TestRealIterations uses the real ones.
func TestMain(m *testing.M) {
	sealIterations, minIterations, recoveryIterations = 1000, 1000, 1000
	os.Exit(m.Run())
}

func newPassphrase(t *testing.T) string {
	t.Helper()
	p, err := NewPassphrase()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPassphraseForm(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		p := newPassphrase(t)
		if seen[p] {
			t.Fatalf("passphrase %s twice", p)
		}
		seen[p] = true
		groups := strings.Split(p, "-")
		if len(groups) != 6 {
			t.Fatalf("%s: %d groups", p, len(groups))
		}
		for _, g := range groups {
			if len(g) != 4 || strings.ContainsAny(g, "0O1IL") {
				t.Fatalf("%s: group %q", p, g)
			}
		}
		if err := CheckPassphrase(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		// Case, spaces and dashes do not matter.
		if err := CheckPassphrase(strings.ToLower(strings.ReplaceAll(p, "-", " "))); err != nil {
			t.Fatalf("%s in lower case with spaces: %v", p, err)
		}
		if err := CheckPassphrase(strings.ReplaceAll(p, "-", "")); err != nil {
			t.Fatalf("%s without dashes: %v", p, err)
		}
	}
}

// TestTypoCaught changes every character of passphrases to every other
// one, and swaps every two different characters: each is a typo.
func TestTypoCaught(t *testing.T) {
	for range 20 {
		p := strings.ReplaceAll(newPassphrase(t), "-", "")
		for i := range p {
			for _, c := range alphabet {
				if byte(c) == p[i] {
					continue
				}
				bad := p[:i] + string(c) + p[i+1:]
				if err := CheckPassphrase(bad); !errors.Is(err, ErrTypo) || !errors.Is(err, errkind.ErrBadRequest) {
					t.Fatalf("%s → %s: %v", p, bad, err)
				}
			}
			for j := i + 1; j < len(p); j++ {
				if p[i] == p[j] {
					continue
				}
				b := []byte(p)
				b[i], b[j] = b[j], b[i]
				if err := CheckPassphrase(string(b)); !errors.Is(err, ErrTypo) {
					t.Fatalf("%s with %d and %d swapped: %v", p, i, j, err)
				}
			}
		}
	}
	p := newPassphrase(t)
	for _, bad := range []string{p[:len(p)-1], p + "A", strings.Replace(p, string(p[0]), "O", 1), "", "ÄÄÄÄ"} {
		err := CheckPassphrase(bad)
		if err == nil || errors.Is(err, ErrTypo) || !errors.Is(err, errkind.ErrBadRequest) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	err := CheckPassphrase(strings.Replace(p, string(p[0]), "0", 1))
	if !strings.Contains(err.Error(), "no 0, O, 1, I or L") {
		t.Errorf("a zero: %v", err)
	}
}

var testSecret = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))

func TestSealOpen(t *testing.T) {
	p := newPassphrase(t)
	sealed, err := Seal(p, "Escuela 12", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, testSecret) || bytes.Contains(sealed, []byte(hex.EncodeToString(testSecret))) {
		t.Fatal("the secret is in the sealed document")
	}
	got, err := Open(strings.ToLower(p), "Escuela 12", sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, testSecret) {
		t.Fatal("opened secret differs")
	}
	// Two seals of one secret differ (salt, nonce).
	again, _ := Seal(p, "Escuela 12", testSecret)
	if bytes.Equal(again, sealed) {
		t.Error("two seals are identical")
	}
}

func TestOpenRefuses(t *testing.T) {
	p := newPassphrase(t)
	sealed, err := Seal(p, "Escuela 12", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, err error, kind *errkind.Error) {
		t.Helper()
		if !errors.Is(err, kind) {
			t.Errorf("%s: got %v, want kind %v", name, err, kind.Kind)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	_, err = Open(newPassphrase(t), "Escuela 12", sealed)
	check("wrong passphrase", err, errkind.ErrPermission)

	b := []byte(strings.ReplaceAll(p, "-", ""))
	b[3], b[4] = b[4], b[3]
	if b[3] != b[4] {
		_, err = Open(string(b), "Escuela 12", sealed)
		check("typo", err, errkind.ErrBadRequest)
		if !errors.Is(err, ErrTypo) {
			t.Errorf("typo: %v", err)
		}
	}

	_, err = Open(p, "Escuela 13", sealed)
	check("other label", err, errkind.ErrBadRequest)

	// Tampering with each field.
	var doc map[string]any
	if err := json.Unmarshal(sealed, &doc); err != nil {
		t.Fatal(err)
	}
	tamper := func(field string, v any) []byte {
		d := map[string]any{}
		for k, x := range doc {
			d[k] = x
		}
		d[field] = v
		out, _ := json.Marshal(d)
		return out
	}
	flip := func(field string) []byte {
		var raw []byte
		json.Unmarshal([]byte(`"`+doc[field].(string)+`"`), &raw)
		raw[len(raw)-1] ^= 1
		return tamper(field, raw)
	}
	_, err = Open(p, "Escuela 12", flip("sealed"))
	check("ciphertext flipped", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", flip("nonce"))
	check("nonce flipped", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", flip("check"))
	check("check flipped", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", flip("salt"))
	check("salt flipped", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", tamper("iterations", 2000))
	check("iterations changed", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", tamper("iterations", 10))
	check("iterations too low", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", tamper("version", 2))
	check("newer version", err, errkind.ErrBadRequest)
	// A label rewritten in the document to match: the passphrase check
	// passes, the associated data does not.
	_, err = Open(p, "Escuela 13", tamper("label", "Escuela 13"))
	check("label rewritten", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", flip("sum"))
	check("sum flipped", err, errkind.ErrDamaged)

	// Deliberate change with the checksum recomputed: the check value says
	// "wrong passphrase" for a changed salt, the GCM tag catches the rest.
	var s sealedDoc
	json.Unmarshal(sealed, &s)
	s.Salt[0] ^= 1
	s.Sum = s.sum()
	forged, _ := json.Marshal(&s)
	_, err = Open(p, "Escuela 12", forged)
	check("salt changed, sum recomputed", err, errkind.ErrPermission)
	json.Unmarshal(sealed, &s)
	s.Label = "Escuela 13"
	s.Sum = s.sum()
	forged, _ = json.Marshal(&s)
	_, err = Open(p, "Escuela 13", forged)
	check("label changed, sum recomputed", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", sealed[:len(sealed)/2])
	check("cut in half", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", append(bytes.Clone(sealed), "{}"...))
	check("trailing data", err, errkind.ErrDamaged)
	_, err = Open(p, "Escuela 12", []byte("-----BEGIN PRIVATE KEY-----"))
	check("not a sealed key", err, errkind.ErrBadRequest)
}

func TestSealRefuses(t *testing.T) {
	p := newPassphrase(t)
	if _, err := Seal(p, "", testSecret); !errors.Is(err, errkind.ErrBadRequest) {
		t.Errorf("empty label: %v", err)
	}
	if _, err := Seal(p, "x", nil); !errors.Is(err, errkind.ErrBadRequest) {
		t.Errorf("empty secret: %v", err)
	}
	if _, err := Seal("ABCD", "x", testSecret); !errors.Is(err, errkind.ErrBadRequest) {
		t.Errorf("short passphrase: %v", err)
	}
}

func TestRecoveryKey(t *testing.T) {
	p, q := newPassphrase(t), newPassphrase(t)
	k1, err := RecoveryKey(p, "Escuela 12")
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := RecoveryKey(strings.ToLower(strings.ReplaceAll(p, "-", " ")), "Escuela 12")
	if !k1.Equal(k2) {
		t.Error("the same passphrase and label give different keys")
	}
	k3, _ := RecoveryKey(p, "Escuela 13")
	k4, _ := RecoveryKey(q, "Escuela 12")
	if k1.Equal(k3) || k1.Equal(k4) {
		t.Error("a different label or passphrase gives the same key")
	}
	if _, err := RecoveryKey(p[:5], "Escuela 12"); !errors.Is(err, errkind.ErrBadRequest) {
		t.Errorf("bad passphrase: %v", err)
	}
}

// goldenPassphrase and its recovery key for "Escuela 12" with the real
// iteration count pin the derivation: changing it would lock every school
// out of its mothership.
const (
	goldenPassphrase = "7KQM-ZC3W-H9RT-4XNA-PD2F-MV8F"
	goldenLabel      = "Escuela 12"
	// Computed independently from the documented derivation with Python's
	// hashlib.pbkdf2_hmac, HMAC-SHA256 HKDF and the cryptography package.
	goldenRecoveryPub = "544ad506af1540fe0beabef1947467792bac0099ccb4f5b3bc80de0189bab422"
)

func TestRealIterations(t *testing.T) {
	if testing.Short() {
		t.Skip("PBKDF2 with the real iteration count takes a while")
	}
	defer func(s, m, r int) { sealIterations, minIterations, recoveryIterations = s, m, r }(sealIterations, minIterations, recoveryIterations)
	sealIterations, minIterations, recoveryIterations = realIterations, realIterations, realIterations

	p := goldenPassphrase
	if err := CheckPassphrase(p); err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(p, goldenLabel, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sealed, []byte(`"iterations": 600000`)) {
		t.Errorf("sealed with another count:\n%s", sealed)
	}
	if got, err := Open(p, goldenLabel, sealed); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("Open: %v", err)
	}
	k, err := RecoveryKey(p, goldenLabel)
	if err != nil {
		t.Fatal(err)
	}
	pub := hex.EncodeToString(k.Public().(ed25519.PublicKey))
	t.Logf("passphrase %s, recovery public key %s", p, pub)
	if want := goldenRecoveryPub; pub != want {
		t.Errorf("recovery key of the golden passphrase = %s, want %s", pub, want)
	}
}
