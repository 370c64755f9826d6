package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Kinds of bundle.
const (
	KindSchool   = "school"   // a school server's export to its mothership
	KindRecovery = "recovery" // a mothership's bundle to rebuild a school server
)

// Version is the format version this package writes and reads.
const Version = 1

// Caps. A reader refuses anything larger before allocating it.
const (
	// MaxStored caps a blob's stored bytes, as the store's pack records do.
	MaxStored = 16<<20 + 1024
	// MaxMetaName caps a metadata record's name, in bytes.
	MaxMetaName = 256
	// MaxMetaData caps a metadata record's data.
	MaxMetaData = 64 << 20
	// MaxKind, MaxFor and MaxBase cap the header's strings, in bytes.
	MaxKind = 32
	MaxFor  = 256
	MaxBase = 256
)

const (
	magic         = "XSBUNDLE"
	maxHeaderBody = 4096
	tagBlob       = 'B'
	tagMeta       = 'M'
	tagTrailer    = 'T'
	flagZstd      = 1
	blobHdrLen    = 1 + 1 + 4 + 4 + 32 // after the tag
	metaHdrLen    = 2 + 4              // after the tag
	trailerLen    = 8 + 8 + 32 + ed25519.SignatureSize
	sigContext    = "xs-backup bundle v1\x00"
)

// ErrTruncated is matched (with errors.Is) by every error about a bundle or a
// piece set that ends too early: an interrupted copy, a missing piece. Such
// errors are also of kind errkind.Damaged.
var ErrTruncated = errors.New("bundle is truncated")

// Error is the error this package returns for a bad bundle or piece: its
// message is for people, and it matches its errkind sentinel (and
// ErrTruncated when it is about a missing end) with errors.Is.
type Error struct {
	Kind      errkind.Kind
	Truncated bool
	Msg       string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the errkind sentinel and, for truncation, ErrTruncated.
func (e *Error) Unwrap() []error {
	errs := []error{&errkind.Error{Kind: e.Kind}}
	if e.Truncated {
		errs = append(errs, ErrTruncated)
	}
	return errs
}

func damaged(format string, args ...any) error {
	return &Error{Kind: errkind.Damaged, Msg: "bundle is damaged: " + fmt.Sprintf(format, args...)}
}

func truncated(format string, args ...any) error {
	return &Error{Kind: errkind.Damaged, Truncated: true, Msg: "bundle is truncated: " + fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &Error{Kind: errkind.BadRequest, Msg: fmt.Sprintf(format, args...)}
}

// Header describes a bundle. It is written first and covered by the
// trailer's signature.
type Header struct {
	// Kind is KindSchool or KindRecovery (any other short string is carried
	// but a trust function should refuse it).
	Kind string
	// For is a free label, e.g. the school's name.
	For string
	// Base is the ID of the receipt this export was computed against; empty
	// for a first export.
	Base string
	// Signer is the public key that signed the bundle.
	Signer ed25519.PublicKey
	// ID names the bundle: random, so that a receipt, a replay check and
	// the piece files can refer to it.
	ID [16]byte
	// Created is when the bundle was written (passed in by the caller; the
	// zero time is written as unknown).
	Created time.Time
}

// IDString returns the bundle ID as 32 hexadecimal digits, as in piece file
// names.
func (h *Header) IDString() string { return fmt.Sprintf("%x", h.ID[:]) }

// Fingerprint returns the signer key's fingerprint, as people see it.
func (h *Header) Fingerprint() string { return Fingerprint(h.Signer) }

// Fingerprint is how a key is shown to people: "SHA256:" and the unpadded
// base64 of the SHA-256 of the public key, like OpenSSH (the same form as
// proto.Fingerprint, so staff compare one string everywhere).
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// Trust returns a trust function for Verify and Read that accepts bundles of
// the given kind signed by one of keys, and refuses others with an error of
// kind errkind.Permission (a foreign signer) or errkind.BadRequest (the
// wrong kind). Replay checks (a bundle ID already imported) are the
// caller's: wrap the result.
func Trust(kind string, keys ...ed25519.PublicKey) func(*Header) error {
	return func(h *Header) error {
		known := false
		for _, k := range keys {
			if k.Equal(h.Signer) {
				known = true
				break
			}
		}
		if !known {
			return &Error{Kind: errkind.Permission, Msg: fmt.Sprintf("bundle was signed by a key that is not trusted here (fingerprint %s)", h.Fingerprint())}
		}
		if h.Kind != kind {
			return invalid("bundle is a %q bundle, not a %q one", clip(h.Kind), kind)
		}
		return nil
	}
}

// clip shortens untrusted strings for messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func (h *Header) check() error {
	if h.Kind == "" || len(h.Kind) > MaxKind || !utf8.ValidString(h.Kind) {
		return fmt.Errorf("kind %q must be 1 to %d bytes of UTF-8", clip(h.Kind), MaxKind)
	}
	if len(h.For) > MaxFor || !utf8.ValidString(h.For) {
		return fmt.Errorf("label %q must be at most %d bytes of UTF-8", clip(h.For), MaxFor)
	}
	if len(h.Base) > MaxBase || !utf8.ValidString(h.Base) {
		return fmt.Errorf("base %q must be at most %d bytes of UTF-8", clip(h.Base), MaxBase)
	}
	if len(h.Signer) != ed25519.PublicKeySize {
		return fmt.Errorf("signer key has %d bytes, want %d", len(h.Signer), ed25519.PublicKeySize)
	}
	return nil
}

// minNano and maxNano bound the times a header can carry (years 1678 to 2262).
var (
	minNano = time.Unix(0, math.MinInt64+1)
	maxNano = time.Unix(0, math.MaxInt64)
)

// encode returns the header as written: magic, version, body length, body.
func (h *Header) encode() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	var created int64
	if !h.Created.IsZero() {
		if h.Created.Before(minNano) || h.Created.After(maxNano) {
			return nil, fmt.Errorf("creation time %v out of range", h.Created)
		}
		created = h.Created.UnixNano()
	}
	b := make([]byte, 0, 14+16+32+8+6+len(h.Kind)+len(h.For)+len(h.Base))
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint16(b, Version)
	b = binary.LittleEndian.AppendUint32(b, 0) // body length, set below
	b = append(b, h.ID[:]...)
	b = append(b, h.Signer...)
	b = binary.LittleEndian.AppendUint64(b, uint64(created))
	for _, s := range []string{h.Kind, h.For, h.Base} {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	binary.LittleEndian.PutUint32(b[10:], uint32(len(b)-14))
	return b, nil
}

// decodeHeaderBody parses the body after magic, version and length.
func decodeHeaderBody(b []byte) (*Header, error) {
	const fixed = 16 + 32 + 8
	if len(b) < fixed {
		return nil, damaged("its header is %d bytes, too short", len(b))
	}
	h := &Header{}
	copy(h.ID[:], b)
	h.Signer = ed25519.PublicKey(append([]byte(nil), b[16:48]...))
	if n := int64(binary.LittleEndian.Uint64(b[48:])); n != 0 {
		h.Created = time.Unix(0, n).UTC()
	}
	b = b[fixed:]
	var strs [3]string
	for i, max := range []int{MaxKind, MaxFor, MaxBase} {
		if len(b) < 2 {
			return nil, damaged("its header ends early")
		}
		n := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		if n > max || n > len(b) {
			return nil, damaged("its header holds a string of %d bytes (at most %d)", n, max)
		}
		strs[i] = string(b[:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, damaged("its header has %d unexpected bytes at the end", len(b))
	}
	h.Kind, h.For, h.Base = strs[0], strs[1], strs[2]
	if err := h.check(); err != nil {
		return nil, damaged("its header is invalid: %v", err)
	}
	return h, nil
}

// signedMessage is what the trailer's signature covers.
func signedMessage(id [16]byte, hash []byte) []byte {
	m := make([]byte, 0, len(sigContext)+16+32)
	m = append(m, sigContext...)
	m = append(m, id[:]...)
	return append(m, hash...)
}

// rawLimit is the largest uncompressed length a blob of type t may have.
func rawLimit(t blob.Type, compressed bool) int {
	if t == blob.Tree && !compressed {
		return manifest.MaxTreeSize
	}
	// chunk.Codec refuses to decompress more than MaxChunkSize.
	return chunk.MaxChunkSize
}

// checkBlob checks a blob record's fields against the caps; it does not
// hash.
func checkBlob(t blob.Type, compressed bool, raw, stored int) error {
	if !t.Valid() {
		return fmt.Errorf("unknown blob type %d", uint8(t))
	}
	if stored < 0 || stored > MaxStored {
		return fmt.Errorf("%d stored bytes, more than the %d-byte limit", stored, MaxStored)
	}
	if lim := rawLimit(t, compressed); raw < 0 || raw > lim {
		return fmt.Errorf("%d bytes uncompressed, more than the %d-byte limit for a %s", raw, lim, t)
	}
	if !compressed && stored != raw {
		return fmt.Errorf("uncompressed but %d stored bytes for %d raw bytes", stored, raw)
	}
	return nil
}

func checkMeta(name string, n int) error {
	if name == "" || len(name) > MaxMetaName || !utf8.ValidString(name) {
		return fmt.Errorf("metadata name %q must be 1 to %d bytes of UTF-8", clip(name), MaxMetaName)
	}
	if n > MaxMetaData {
		return fmt.Errorf("metadata %q has %d bytes, more than the %d-byte limit", clip(name), n, MaxMetaData)
	}
	return nil
}

// newID returns a random bundle ID.
func newID() ([16]byte, error) {
	var id [16]byte
	_, err := rand.Read(id[:])
	return id, err
}
