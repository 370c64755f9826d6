package chunk

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSumKnownVector(t *testing.T) {
	// BLAKE3 test vectors: empty input and "abc".
	for in, want := range map[string]string{
		"":    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
		"abc": "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
	} {
		if got := Sum([]byte(in)).String(); got != want {
			t.Errorf("Sum(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestIDText(t *testing.T) {
	id := Sum([]byte("xs-backup"))
	s := id.String()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Fatalf("String() = %q", s)
	}
	if id.Short() != s[:12] {
		t.Fatalf("Short() = %q, want %q", id.Short(), s[:12])
	}
	for _, in := range []string{s, strings.ToUpper(s)} {
		got, err := ParseID(in)
		if err != nil || got != id {
			t.Fatalf("ParseID(%q) = %v, %v", in, got, err)
		}
	}
	if id.IsZero() || !(ID{}).IsZero() {
		t.Fatal("IsZero wrong")
	}

	// As a JSON value and as a map key.
	type doc struct {
		ID   ID
		Refs map[ID]int
	}
	in := doc{ID: id, Refs: map[ID]int{id: 1, {}: 2}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"ID":"`+s+`"`) {
		t.Fatalf("JSON %s does not hold the hex ID", b)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != id || len(out.Refs) != 2 || out.Refs[id] != 1 || out.Refs[ID{}] != 2 {
		t.Fatalf("JSON round trip: %+v", out)
	}
	if err := json.Unmarshal([]byte(`{"ID":"zz"}`), &out); err == nil {
		t.Fatal("bad JSON ID accepted")
	}
}

func TestParseIDErrors(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for _, in := range []string{
		"",
		good[:63],
		good + "a",
		good[:62] + "g0",
		"x" + good[1:],
		good[:10] + " " + good[11:],
		good[:63] + "\x00",
		strings.Repeat("é", 32),
		"0x" + good[2:],
		strings.Repeat("a", 10000),
	} {
		id, err := ParseID(in)
		if err == nil {
			t.Errorf("ParseID(%q) = %v, want error", in, id)
			continue
		}
		if !id.IsZero() {
			t.Errorf("ParseID(%q) returned non-zero ID with error", in)
		}
		if len(err.Error()) > 200 {
			t.Errorf("ParseID error too long: %d bytes", len(err.Error()))
		}
		if !strings.HasPrefix(err.Error(), "chunk: invalid ID") {
			t.Errorf("unclear error %q", err)
		}
	}
}
