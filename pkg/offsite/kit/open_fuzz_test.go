package kit

import (
	"bytes"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// FuzzOpen: a sealed key as a mothership's recovery bundle or a USB stick
// hands it over, damaged or forged. No panic; a document that opens with
// the right passphrase gives the one secret sealed (never other bytes);
// every refusal says what it is (not a sealed key, damaged, wrong
// passphrase), never an internal error.
func FuzzOpen(f *testing.F) {
	p, err := NewPassphrase()
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := Seal(p, "Escuela 12", testSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add(bytes.ReplaceAll(sealed, []byte(`"`), []byte(`'`)))
	f.Add([]byte(`{"format":"` + format + `"}`))
	f.Add([]byte("not a key"))
	f.Fuzz(func(t *testing.T, data []byte) {
		secret, err := Open(p, "Escuela 12", data)
		if err == nil {
			if !bytes.Equal(secret, testSecret) {
				t.Fatalf("a document opened to %d other bytes", len(secret))
			}
			return
		}
		switch errkind.Of(err) {
		case errkind.BadRequest, errkind.Damaged, errkind.Permission:
		default:
			t.Fatalf("refused with kind %v: %v", errkind.Of(err), err)
		}
	})
}
