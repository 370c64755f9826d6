package proto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// Wire format. Every request runs on its own bidirectional QUIC stream; both
// directions carry frames:
//
//	length u32 (big endian, payload bytes) | type u8 | payload
//
// The reader checks length against the cap of the frame's type before it
// allocates anything. Control messages carry JSON; the hot paths (Need,
// Blob) are binary.

// Frame types. Never renumber; add new ones at the end.
const (
	tHello      = 1  // JSON helloReq
	tHelloResp  = 2  // JSON Grant
	tRegister   = 3  // JSON registerReq
	tRegisterOK = 4  // JSON RegisterResult
	tNeed       = 5  // binary refs
	tNeedResp   = 6  // bitmap
	tBlob       = 7  // binary blob
	tEnd        = 8  // end of a blob stream (empty)
	tOK         = 9  // empty
	tCommit     = 10 // JSON commitReq
	tCommitResp = 11 // JSON SnapshotInfo
	tList       = 12 // empty
	tListResp   = 13 // JSON []SnapshotInfo
	tFetch      = 14 // binary refs; answered by tBlob frames and tEnd
	tError      = 15 // kind u8 | UTF-8 message
	tPut        = 16 // empty; followed by tBlob frames and tEnd
	tBye        = 17 // empty: the session is over
	tLink       = 18 // JSON linkReq (restore links; reserved)
	// On ALPNRecover: the request (empty), and the empty frame that
	// starts the recovery bundle's bytes (the rest of the stream).
	tRecover     = 19
	tRecoverData = 20
)

// Caps.
const (
	// MaxRefs is the most refs one Need or Fetch may carry.
	MaxRefs = 4096
	// maxJSON caps control messages.
	maxJSON = 1 << 20
	// blobHeaderLen precedes a blob's data in a tBlob frame.
	blobHeaderLen = 1 + 1 + 4 + 32
	// MaxBlobFrame is the largest tBlob frame (a maximal tree plus slack).
	MaxBlobFrame = blobHeaderLen + manifest.MaxTreeSize + 1024
	// MaxPutBlobs caps the blobs of one tPut stream.
	MaxPutBlobs = 1024
)

func frameCap(typ byte) (int, bool) {
	switch typ {
	case tHello, tHelloResp, tRegister, tRegisterOK, tCommit, tCommitResp, tLink:
		return maxJSON, true
	case tListResp:
		return 16 << 20, true
	case tNeed, tFetch:
		return 2 + MaxRefs*33, true
	case tNeedResp:
		return 2 + MaxRefs/8 + 1, true
	case tBlob:
		return MaxBlobFrame, true
	case tEnd, tOK, tList, tPut, tBye, tRecover, tRecoverData:
		return 0, true
	case tError:
		return 1 + 4096, true
	}
	return 0, false
}

// readFrameOf reads one frame that must be of type want, for a peer not yet
// trusted with more (the server reading a registration or a recovery
// request): another type is
// refused from its header, before any of its payload is read (a frame of
// another type may be far larger), and memory grows as the bytes arrive,
// not by what the header claims. An error frame is another type: a
// request never is one.
func readFrameOf(r io.Reader, want byte) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if typ := hdr[4]; typ != want {
		return nil, Errorf(KindBadRequest, "expected a frame of type %d, not %d", want, typ)
	}
	_, p, rel, err := readFrame(io.MultiReader(bytes.NewReader(hdr[:]), r), func(int) (func(), error) { return func() {}, nil })
	if err != nil {
		return nil, err
	}
	rel()
	return p, nil
}

// readRequestFrame is readFrame for the server: a laptop's request is never
// an error frame, and one sent as a request is a bad request, not the
// error it names (its kind would be counted and logged as the server's).
func readRequestFrame(r io.Reader, alloc func(n int) (func(), error)) (byte, []byte, func(), error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, nil, err
	}
	if hdr[4] == tError {
		return 0, nil, nil, Errorf(KindBadRequest, "an error frame is not a request")
	}
	typ, p, rel, err := readFrame(io.MultiReader(bytes.NewReader(hdr[:]), r), alloc)
	if err != nil && KindOf(err) == KindInternal && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		// A request whose stream ended before its length is the
		// laptop's bad request, not the server's failure (a reset or a
		// timeout stays what it is).
		return 0, nil, nil, Errorf(KindBadRequest, "%v", err)
	}
	return typ, p, rel, err
}

// readFrame reads one frame. alloc, if set, is called for each piece of the
// payload (at most framePiece bytes) before that piece is read and
// allocated, so memory is reserved as bytes arrive, never for what the
// header claims (a server uses it to bound the memory all streams together
// hold); the returned release gives back everything reserved.
func readFrame(r io.Reader, alloc func(n int) (func(), error)) (typ byte, payload []byte, release func(), err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	typ = hdr[4]
	limit, ok := frameCap(typ)
	if !ok {
		return 0, nil, nil, Errorf(KindBadRequest, "unknown frame type %d", typ)
	}
	if uint64(n) > uint64(limit) {
		return 0, nil, nil, Errorf(KindTooLarge, "frame of type %d has %d bytes, the limit is %d", typ, n, limit)
	}
	var rels []func()
	release = func() {
		for _, r := range rels {
			r()
		}
		rels = nil
	}
	if alloc == nil {
		payload = make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return 0, nil, nil, truncated(err, n)
		}
	} else {
		payload = make([]byte, 0, min(n, framePiece))
		for len(payload) < n {
			k := min(framePiece, n-len(payload))
			rel, err := alloc(k)
			if err != nil {
				release()
				return 0, nil, nil, err
			}
			rels = append(rels, rel)
			m := len(payload)
			payload = slices.Grow(payload, k)[:m+k]
			if _, err := io.ReadFull(r, payload[m:]); err != nil {
				release()
				return 0, nil, nil, truncated(err, n)
			}
		}
	}
	if typ == tError {
		defer release()
		return 0, nil, func() {}, decodeError(payload)
	}
	return typ, payload, release, nil
}

// truncated is the error of a frame whose payload did not come whole.
func truncated(err error, n int) error {
	return fmt.Errorf("truncated frame: the stream ended before the %d bytes its header gave: %w", n, err)
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	buf := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	buf[4] = typ
	_, err := w.Write(append(buf, payload...))
	return err
}

func writeJSON(w io.Writer, typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFrame(w, typ, b)
}

func decodeJSON(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return Errorf(KindBadRequest, "malformed message: %v", err)
	}
	return nil
}

func writeError(w io.Writer, err error) error {
	k := KindOf(err)
	// The whole message, less the kind's name it starts with when it wraps
	// a sentinel ("not found: snapshot x" is sent as kind + "snapshot x").
	msg := strings.TrimPrefix(err.Error(), k.String()+": ")
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	if !utf8.ValidString(msg) {
		msg = "(message not valid UTF-8)"
	}
	return writeFrame(w, tError, append([]byte{byte(k)}, msg...))
}

func decodeError(p []byte) error {
	if len(p) < 1 {
		return Errorf(KindBadRequest, "empty error frame")
	}
	return &Error{Kind: Kind(p[0]), Msg: string(p[1:])}
}

// encodeRefs: count u16 | (type u8 | id [32]byte)*
func encodeRefs(refs []blob.Ref) []byte {
	b := make([]byte, 2, 2+33*len(refs))
	binary.BigEndian.PutUint16(b, uint16(len(refs)))
	for _, r := range refs {
		b = append(b, byte(r.Type))
		b = append(b, r.ID[:]...)
	}
	return b
}

func decodeRefs(p []byte) ([]blob.Ref, error) {
	if len(p) < 2 {
		return nil, Errorf(KindBadRequest, "short ref list")
	}
	n := int(binary.BigEndian.Uint16(p))
	if n > MaxRefs || len(p) != 2+33*n {
		return nil, Errorf(KindBadRequest, "ref list of %d bytes does not hold %d refs (limit %d)", len(p), n, MaxRefs)
	}
	refs := make([]blob.Ref, n)
	for i := range refs {
		o := 2 + 33*i
		refs[i].Type = blob.Type(p[o])
		if !refs[i].Type.Valid() {
			return nil, Errorf(KindBadRequest, "unknown blob type %d", p[o])
		}
		copy(refs[i].ID[:], p[o+1:o+33])
	}
	return refs, nil
}

// encodeBits: count u16 | bitmap
func encodeBits(bits []bool) []byte {
	b := make([]byte, 2+(len(bits)+7)/8)
	binary.BigEndian.PutUint16(b, uint16(len(bits)))
	for i, v := range bits {
		if v {
			b[2+i/8] |= 1 << (i % 8)
		}
	}
	return b
}

func decodeBits(p []byte) ([]bool, error) {
	if len(p) < 2 {
		return nil, Errorf(KindBadRequest, "short bitmap")
	}
	n := int(binary.BigEndian.Uint16(p))
	if n > MaxRefs || len(p) != 2+(n+7)/8 {
		return nil, Errorf(KindBadRequest, "bitmap of %d bytes does not hold %d bits", len(p), n)
	}
	bits := make([]bool, n)
	for i := range bits {
		bits[i] = p[2+i/8]&(1<<(i%8)) != 0
	}
	return bits, nil
}

// writeBlob writes b as a blob frame, whose payload is type u8 | flags u8
// (1 = zstd) | rawLen u32 | id [32]byte | data, without copying the data on
// the way: the frame's and the blob's headers go in one write, the data in
// another (building the frame first cost a first backup 6% of a laptop's
// CPU).
func writeBlob(w io.Writer, b *blob.Blob) error {
	var hdr [5 + blobHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(blobHeaderLen+len(b.Data)))
	hdr[4] = tBlob
	h := hdr[5:]
	h[0] = byte(b.Type)
	if b.Compressed {
		h[1] = 1
	}
	binary.BigEndian.PutUint32(h[2:], uint32(b.RawLen))
	copy(h[6:], b.ID[:])
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(b.Data)
	return err
}

func decodeBlob(p []byte) (blob.Blob, error) {
	var b blob.Blob
	if len(p) < blobHeaderLen {
		return b, Errorf(KindBadRequest, "short blob frame")
	}
	b.Type = blob.Type(p[0])
	if !b.Type.Valid() || p[1] > 1 {
		return b, Errorf(KindBadRequest, "bad blob header")
	}
	b.Compressed = p[1] == 1
	raw := binary.BigEndian.Uint32(p[2:])
	limit := uint32(chunk.MaxChunkSize)
	if b.Type == blob.Tree {
		limit = manifest.MaxTreeSize
	}
	if raw > limit {
		return b, Errorf(KindTooLarge, "%s of %d bytes (limit %d)", b.Type, raw, limit)
	}
	b.RawLen = int(raw)
	copy(b.ID[:], p[6:38])
	b.Data = p[blobHeaderLen:]
	return b, nil
}
