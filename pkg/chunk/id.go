package chunk

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// ID identifies a chunk: the BLAKE3-256 hash of its uncompressed bytes.
// The zero ID is not the hash of any data in practice and can be used as
// "no ID".
type ID [32]byte

// Sum returns the ID of data, its BLAKE3-256 hash.
func Sum(data []byte) ID {
	return ID(blake3.Sum256(data))
}

// ParseID parses the 64-character hexadecimal form of an ID, as produced by
// [ID.String]. Upper- and lowercase digits are accepted.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, fmt.Errorf("chunk: invalid ID %q: length %d, want %d hex digits", clip(s), len(s), 2*len(id))
	}
	for i := range id {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return ID{}, fmt.Errorf("chunk: invalid ID %q: not a hex digit at position %d", clip(s), badPos(s))
		}
		id[i] = hi<<4 | lo
	}
	return id, nil
}

// String returns the ID as 64 lowercase hexadecimal digits.
func (id ID) String() string {
	return hex.EncodeToString(id[:])
}

// Short returns the first 12 hexadecimal digits of the ID, for messages.
func (id ID) Short() string {
	var b [6]byte
	copy(b[:], id[:6])
	return hex.EncodeToString(b[:])
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool {
	return id == ID{}
}

// MarshalText implements [encoding.TextMarshaler] with the form of [ID.String].
func (id ID) MarshalText() ([]byte, error) {
	b := make([]byte, 2*len(id))
	hex.Encode(b, id[:])
	return b, nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with the rules of
// [ParseID].
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func badPos(s string) int {
	for i := 0; i < len(s); i++ {
		if _, ok := unhex(s[i]); !ok {
			return i
		}
	}
	return -1
}

// clip shortens s for error messages so hostile input cannot bloat them.
func clip(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
