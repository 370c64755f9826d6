package offsite

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

func testReceipt(t testing.TB) (*Receipt, ed25519.PrivateKey, ed25519.PublicKey) {
	_, msKey, _ := ed25519.GenerateKey(nil)
	school, _, _ := ed25519.GenerateKey(nil)
	r := &Receipt{Version: 1, School: "school-a", SchoolKey: school, Mothership: msKey.Public().(ed25519.PublicKey),
		Bundle: "00112233445566778899aabbccddeeff", Imported: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC),
		Snapshots: []string{"0000000000000001/20261205T020000Z-abcdef"}}
	r.Sig = ed25519.Sign(msKey, r.signed())
	return r, msKey, school
}

// A receipt is believed only whole, signed by the school's mothership and
// naming this school; anything else is refused and changes nothing.
func TestReceiptRefusals(t *testing.T) {
	r, msKey, school := testReceipt(t)
	dir := t.TempDir()
	write := func(v any) string {
		b, _ := json.Marshal(v)
		p := filepath.Join(dir, "receipt.json")
		os.WriteFile(p, b, 0o644)
		return p
	}
	if _, err := ReadReceipt(write(r), msKey.Public().(ed25519.PublicKey), school); err != nil {
		t.Fatalf("a good receipt: %v", err)
	}
	if _, err := ReadReceipt(write(r), nil, school); err != nil {
		t.Fatalf("a good receipt, mothership not pinned yet: %v", err)
	}
	forged := *r
	forged.Snapshots = append([]string{"0000000000000002/20261205T020000Z-000000"}, r.Snapshots...)
	if _, err := ReadReceipt(write(&forged), nil, school); !errors.Is(err, errkind.ErrDamaged) {
		t.Errorf("a receipt with a snapshot added: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	resigned := *r
	resigned.Mothership = other.Public().(ed25519.PublicKey)
	resigned.Sig = ed25519.Sign(other, resigned.signed())
	if _, err := ReadReceipt(write(&resigned), msKey.Public().(ed25519.PublicKey), school); !errors.Is(err, errkind.ErrPermission) {
		t.Errorf("a receipt signed by another mothership: %v", err)
	}
	otherSchool, _, _ := ed25519.GenerateKey(nil)
	if _, err := ReadReceipt(write(r), nil, otherSchool); !errors.Is(err, errkind.ErrPermission) {
		t.Errorf("a receipt for another school: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "receipt.json"), []byte("{not json"), 0o644)
	if _, err := ReadReceipt(filepath.Join(dir, "receipt.json"), nil, school); !errors.Is(err, errkind.ErrDamaged) {
		t.Errorf("a receipt that does not decode: %v", err)
	}
}

// FuzzReadReceipt: whatever a stick holds as a receipt, ReadReceipt never
// panics and never accepts one not signed by the mothership for the school.
func FuzzReadReceipt(f *testing.F) {
	r, msKey, school := testReceipt(f)
	good, _ := json.Marshal(r)
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"mothership":"AAAA","sig":"AAAA","snapshots":[1,2]}`))
	dir := f.TempDir()
	pub := msKey.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "r.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Skip()
		}
		got, err := ReadReceipt(p, pub, school)
		if err != nil {
			return
		}
		if !ed25519.Verify(pub, got.signed(), got.Sig) || !got.SchoolKey.Equal(school) {
			t.Fatalf("accepted a receipt that is not the mothership's for this school: %+v", got)
		}
	})
}

// FuzzLoadState: a damaged state file is an error that says so, never a
// panic; what loads saves and loads again the same.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"confirmed":{"0000000000000001/20261205T020000Z-abcdef":"2026-12-06T10:00:00Z"},"registry":"` + zeroID + `"}`))
	f.Add([]byte(`{"confirmed":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "offsite"), 0o750)
		os.WriteFile(filepath.Join(dir, StateFile), b, 0o640)
		s, err := readState(filepath.Join(dir, StateFile))
		if err != nil {
			if !errors.Is(err, errkind.ErrDamaged) {
				t.Fatalf("a bad state file: %v (want a damaged error)", err)
			}
			return
		}
		if s.Confirmed == nil {
			t.Fatal("a loaded state has no confirmed set")
		}
		if err := s.Save(nil); err != nil {
			t.Fatal(err)
		}
		again, err := readState(filepath.Join(dir, StateFile))
		if err != nil || len(again.Confirmed) != len(s.Confirmed) || again.Registry != s.Registry {
			t.Fatalf("saved and loaded: %v, %d vs %d confirmed", err, len(again.Confirmed), len(s.Confirmed))
		}
	})
}

const zeroID = "0000000000000000000000000000000000000000000000000000000000000000"
