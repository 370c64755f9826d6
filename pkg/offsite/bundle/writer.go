package bundle

import (
	"bufio"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/zeebo/blake3"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// Writer writes one bundle to an io.Writer. It is not safe for concurrent
// use. After any error every later call returns that error: the output is
// then incomplete and has no trailer, which every reader refuses.
type Writer struct {
	h       Header
	key     ed25519.PrivateKey
	bw      *bufio.Writer
	hash    *blake3.Hasher
	n       int64 // bytes written (including those still buffered)
	records uint64
	err     error
	closed  bool
}

// NewWriter starts a bundle on w: it checks h, fills its ID (if zero, with
// random bytes) and its Signer (from key), and writes the header. The header
// as completed is returned by Header.
func NewWriter(w io.Writer, h Header, key ed25519.PrivateKey) (*Writer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, invalid("bundle: signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	h.Signer = key.Public().(ed25519.PublicKey)
	if h.ID == [16]byte{} {
		id, err := newID()
		if err != nil {
			return nil, fmt.Errorf("bundle: random ID: %w", err)
		}
		h.ID = id
	}
	hdr, err := h.encode()
	if err != nil {
		return nil, invalid("bundle: %v", err)
	}
	bw := &Writer{h: h, key: key, bw: bufio.NewWriterSize(w, 256<<10), hash: blake3.New()}
	bw.write(hdr)
	if bw.err != nil {
		return nil, bw.err
	}
	return bw, nil
}

// Header returns the bundle's header, with its ID and Signer filled in.
func (w *Writer) Header() Header { return w.h }

// Written returns the number of bytes of the bundle written so far
// (including any still buffered until Close).
func (w *Writer) Written() int64 { return w.n }

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("bundle: write: %w", err)
		return
	}
	w.hash.Write(b)
	w.n += int64(len(b))
}

func (w *Writer) usable() error {
	if w.closed {
		return &errkind.Error{Kind: errkind.Closed, Msg: "bundle: writer is closed"}
	}
	return w.err
}

// Blob appends a blob record. It checks the blob's fields against the caps
// but does not hash it (readers do): pass blobs read from a store that
// verifies them.
func (w *Writer) Blob(b blob.Blob) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := checkBlob(b.Type, b.Compressed, b.RawLen, len(b.Data)); err != nil {
		return invalid("bundle: blob %s: %v", b.Ref, err)
	}
	var hdr [1 + blobHdrLen]byte
	hdr[0] = tagBlob
	hdr[1] = byte(b.Type)
	if b.Compressed {
		hdr[2] = flagZstd
	}
	binary.LittleEndian.PutUint32(hdr[3:], uint32(b.RawLen))
	binary.LittleEndian.PutUint32(hdr[7:], uint32(len(b.Data)))
	copy(hdr[11:], b.ID[:])
	w.write(hdr[:])
	w.write(b.Data)
	w.records++
	return w.err
}

// Meta appends a named metadata record (a registry, a snapshot list, a
// sealed key: its meaning is the caller's).
func (w *Writer) Meta(name string, data []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := checkMeta(name, len(data)); err != nil {
		return invalid("bundle: %v", err)
	}
	var hdr [1 + metaHdrLen]byte
	hdr[0] = tagMeta
	binary.LittleEndian.PutUint16(hdr[1:], uint16(len(name)))
	binary.LittleEndian.PutUint32(hdr[3:], uint32(len(data)))
	w.write(hdr[:])
	w.write([]byte(name))
	w.write(data)
	w.records++
	return w.err
}

// Close writes the signed trailer and flushes. It does not close the
// underlying writer. Only when Close returns nil is the bundle complete.
func (w *Writer) Close() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.closed = true
	sum := w.hash.Sum(nil)
	var t [1 + trailerLen]byte
	t[0] = tagTrailer
	binary.LittleEndian.PutUint64(t[1:], w.records)
	binary.LittleEndian.PutUint64(t[9:], uint64(w.n))
	copy(t[17:], sum)
	copy(t[49:], ed25519.Sign(w.key, signedMessage(w.h.ID, sum)))
	w.write(t[:])
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("bundle: write: %w", err)
		}
	}
	return w.err
}
