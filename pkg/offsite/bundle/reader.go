package bundle

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/zeebo/blake3"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// Summary counts what a bundle holds.
type Summary struct {
	Blobs       int   // blob records
	Meta        int   // metadata records
	StoredBytes int64 // blobs' stored (possibly compressed) bytes
	RawBytes    int64 // blobs' uncompressed bytes
	MetaBytes   int64 // metadata records' data bytes
	Size        int64 // the whole stream, header and trailer included
}

// Verify reads a whole bundle once and checks everything: the framing and
// caps of every record, that every blob's stored bytes match its ID
// (decompressed and hashed), the trailer's count, size and hash, and the
// signature by the header's signer. trust is called with the header before
// any record is read; an error from it is returned as is, and nothing more
// is read. trust must not be nil.
//
// The errors are of this package's *Error type with a message for people,
// matching errkind.ErrDamaged (and ErrTruncated for a stream that ends
// early) or errkind.ErrBadRequest (not a bundle, or a newer format); read
// errors of r are returned wrapped. The header is returned as soon as it
// has been read, also with an error, so that a message can name the signer.
func Verify(r io.Reader, trust func(*Header) error) (*Header, *Summary, error) {
	return decode(r, trust, nil, nil, nil)
}

// Read decodes a bundle's records in order, calling onBlob or onMeta (either
// may be nil to skip such records) for each, with data the callback may
// keep. It checks everything Verify checks, the trailer last: only when Read
// returns nil was the bundle complete and intact, so a caller that reads in a
// single pass must not make anything visible before then (the usual way is
// Verify first, then Read to ingest). An error from a callback stops Read
// and is returned as is.
func Read(r io.Reader, trust func(*Header) error, onBlob func(blob.Blob) error, onMeta func(name string, data []byte) error) (*Header, error) {
	if onBlob == nil {
		onBlob = func(blob.Blob) error { return nil }
	}
	if onMeta == nil {
		onMeta = func(string, []byte) error { return nil }
	}
	h, _, err := decode(r, trust, onBlob, onMeta, nil)
	return h, err
}

// decoder reads a bundle stream, hashing what it reads.
type decoder struct {
	r       *bufio.Reader
	hash    *blake3.Hasher
	hashing bool
	n       int64  // bytes read
	rec     uint64 // records read, the trailer excepted
	codec   *chunk.Codec
}

// read fills b from the stream; at the end of the stream it returns a
// truncation error saying where (what is being read).
func (d *decoder) read(b []byte, what string) error {
	k, err := io.ReadFull(d.r, b)
	if d.hashing {
		d.hash.Write(b[:k])
	}
	d.n += int64(k)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return truncated("it ends after %d bytes, %s", d.n, what)
	}
	if err != nil {
		return fmt.Errorf("reading bundle: %w", err)
	}
	return nil
}

// readData reads n bytes (n within a cap checked by the caller) into buf's
// spare capacity or a new buffer. A buffer is grown as data arrives, so a
// short hostile stream that claims a large record does not get its whole
// claim allocated.
func (d *decoder) readData(buf []byte, n int, what string) ([]byte, error) {
	if cap(buf) >= n {
		b := buf[:n]
		return b, d.read(b, what)
	}
	const step = 1 << 20
	b := make([]byte, 0, min(n, step))
	for len(b) < n {
		k := min(n-len(b), step)
		if cap(b)-len(b) < k {
			nb := make([]byte, len(b), min(n, max(2*cap(b), len(b)+k)))
			copy(nb, b)
			b = nb
		}
		if err := d.read(b[len(b):len(b)+k], what); err != nil {
			return nil, err
		}
		b = b[:len(b)+k]
	}
	return b, nil
}

// decode is Verify (onBlob == nil) and Read. codec, if not nil, is used
// instead of a new one (the fuzz tests share one).
func decode(r io.Reader, trust func(*Header) error, onBlob func(blob.Blob) error, onMeta func(string, []byte) error, codec *chunk.Codec) (*Header, *Summary, error) {
	if trust == nil {
		return nil, nil, invalid("bundle: no trust function given")
	}
	d := &decoder{r: bufio.NewReaderSize(r, 256<<10), hash: blake3.New(), hashing: true, codec: codec}
	if codec == nil {
		defer func() {
			if d.codec != nil {
				d.codec.Close()
			}
		}()
	}
	h, err := d.header()
	if err != nil {
		return nil, nil, err
	}
	if err := trust(h); err != nil {
		return h, nil, err
	}
	sum := &Summary{}
	keep := onBlob != nil
	// buf is reused from record to record when records are not handed out.
	var buf, scratch []byte
	next := func() []byte {
		if keep {
			return nil
		}
		return buf[:0]
	}
	for {
		var tag [1]byte
		d.hashing = false
		if err := d.read(tag[:], fmt.Sprintf("where record %d or its end marker should start", d.rec+1)); err != nil {
			return h, nil, err
		}
		d.hashing = true
		switch tag[0] {
		case tagBlob:
			d.hash.Write(tag[:])
			b, err := d.blob(next(), &scratch)
			if err != nil {
				return h, nil, err
			}
			sum.Blobs++
			sum.StoredBytes += int64(len(b.Data))
			sum.RawBytes += int64(b.RawLen)
			if !keep {
				buf = b.Data
			} else if err := onBlob(b); err != nil {
				return h, nil, err
			}
		case tagMeta:
			d.hash.Write(tag[:])
			name, md, err := d.meta(next())
			if err != nil {
				return h, nil, err
			}
			sum.Meta++
			sum.MetaBytes += int64(len(md))
			if !keep {
				buf = md
			} else if err := onMeta(name, md); err != nil {
				return h, nil, err
			}
		case tagTrailer:
			if err := d.trailer(h); err != nil {
				return h, nil, err
			}
			sum.Size = d.n
			return h, sum, nil
		default:
			return h, nil, damaged("record %d (at byte %d) has an unknown type %#x", d.rec+1, d.n-1, tag[0])
		}
		d.rec++
	}
}

func (d *decoder) header() (*Header, error) {
	var fixed [14]byte
	k, err := io.ReadFull(d.r, fixed[:8])
	d.hash.Write(fixed[:k])
	d.n += int64(k)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	if !bytes.Equal(fixed[:k], []byte(magic)[:k]) {
		return nil, invalid("this is not an xs-backup bundle (it does not start with %q)", magic)
	}
	if err != nil {
		if k == 0 {
			return nil, truncated("it is empty")
		}
		return nil, truncated("it ends after %d bytes, in its header", k)
	}
	if err := d.read(fixed[8:], "in its header"); err != nil {
		return nil, err
	}
	if v := binary.LittleEndian.Uint16(fixed[8:]); v != Version {
		return nil, invalid("bundle format version %d is not one this program reads (it reads version %d)", v, Version)
	}
	n := binary.LittleEndian.Uint32(fixed[10:])
	if n > maxHeaderBody {
		return nil, damaged("its header claims %d bytes (at most %d)", n, maxHeaderBody)
	}
	body := make([]byte, n)
	if err := d.read(body, "in its header"); err != nil {
		return nil, err
	}
	return decodeHeaderBody(body)
}

// blob reads a blob record after its tag into buf and checks it.
func (d *decoder) blob(buf []byte, scratch *[]byte) (blob.Blob, error) {
	rec := d.rec + 1
	var hdr [blobHdrLen]byte
	if err := d.read(hdr[:], fmt.Sprintf("in record %d", rec)); err != nil {
		return blob.Blob{}, err
	}
	var b blob.Blob
	b.Type = blob.Type(hdr[0])
	flags := hdr[1]
	b.Compressed = flags&flagZstd != 0
	b.RawLen = int(binary.LittleEndian.Uint32(hdr[2:]))
	stored := int(binary.LittleEndian.Uint32(hdr[6:]))
	copy(b.ID[:], hdr[10:])
	if flags&^flagZstd != 0 {
		return b, damaged("record %d (%s) has unknown flags %#x", rec, b.ID.Short(), flags)
	}
	if err := checkBlob(b.Type, b.Compressed, b.RawLen, stored); err != nil {
		return b, damaged("record %d (%s) is invalid: %v", rec, b.ID.Short(), err)
	}
	data, err := d.readData(buf, stored, fmt.Sprintf("in record %d", rec))
	if err != nil {
		return b, err
	}
	b.Data = data
	raw := data
	if b.Compressed {
		if d.codec == nil {
			if d.codec, err = chunk.NewCodec(); err != nil {
				return b, err
			}
		}
		raw, err = d.codec.Decompress((*scratch)[:0], data, b.RawLen)
		if err != nil {
			return b, damaged("record %d (%s %s) does not decompress: %v", rec, b.Type, b.ID.Short(), err)
		}
		*scratch = raw
	}
	if chunk.Sum(raw) != b.ID {
		return b, damaged("record %d (%s %s) does not match its hash", rec, b.Type, b.ID.Short())
	}
	return b, nil
}

// meta reads a metadata record after its tag, its data into buf.
func (d *decoder) meta(buf []byte) (string, []byte, error) {
	rec := d.rec + 1
	where := fmt.Sprintf("in record %d", rec)
	var hdr [metaHdrLen]byte
	if err := d.read(hdr[:], where); err != nil {
		return "", nil, err
	}
	nlen := int(binary.LittleEndian.Uint16(hdr[:]))
	claimed := binary.LittleEndian.Uint32(hdr[2:])
	dlen := int(min(claimed, MaxMetaData+1)) // (int is 32 bits on the XO-1)
	if nlen == 0 || nlen > MaxMetaName || dlen > MaxMetaData {
		return "", nil, damaged("record %d claims a %d-byte name and %d bytes of metadata (at most %d and %d)", rec, nlen, claimed, MaxMetaName, MaxMetaData)
	}
	var nb [MaxMetaName]byte
	if err := d.read(nb[:nlen], where); err != nil {
		return "", nil, err
	}
	name := string(nb[:nlen])
	if err := checkMeta(name, dlen); err != nil {
		return "", nil, damaged("record %d is invalid: %v", rec, err)
	}
	data, err := d.readData(buf, dlen, where)
	return name, data, err
}

// trailer reads and checks the trailer after its tag, and that nothing
// follows it.
func (d *decoder) trailer(h *Header) error {
	size := d.n - 1
	sum := d.hash.Sum(nil)
	d.hashing = false
	var t [trailerLen]byte
	if err := d.read(t[:], "in its end marker"); err != nil {
		return err
	}
	count := binary.LittleEndian.Uint64(t[0:])
	tsize := binary.LittleEndian.Uint64(t[8:])
	if count != d.rec || tsize != uint64(size) {
		return damaged("its end marker counts %d records in %d bytes, but %d records in %d bytes came before it", count, tsize, d.rec, size)
	}
	if !bytes.Equal(t[16:48], sum) {
		return damaged("its content does not match the checksum in its end marker (a record was altered, removed, added or moved)")
	}
	if !ed25519.Verify(h.Signer, signedMessage(h.ID, sum), t[48:]) {
		return damaged("its signature does not verify with its signer's key (fingerprint %s): it was altered after it was signed", h.Fingerprint())
	}
	var extra [1]byte
	k, err := io.ReadFull(d.r, extra[:])
	if k > 0 {
		return damaged("it has unexpected bytes after its end marker (byte %d)", d.n)
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading bundle: %w", err)
	}
	return nil
}
