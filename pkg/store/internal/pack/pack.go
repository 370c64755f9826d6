// Package pack reads and writes the store's pack files: the format of a
// pack and of its records, an append-only writer, reading one record, and
// a scan that survives damage (a damaged record costs only itself). It
// knows nothing of the index: where a blob is, and which records are live,
// is the store's business.
package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
)

// Pack files hold the bytes of every blob (file chunks and manifest trees).
// A pack starts with a 16-byte header (packMagic, then its sequence number)
// followed by records, each a 52-byte header and the stored bytes:
//
//	"XSR1" | type u8 | flags u8 | 0 u16 | stored u32 | raw u32 | id [32]byte | crc32c u32 | data
//
// The CRC covers the first 48 header bytes and the data, so a scan can find
// the end of a torn write without decompressing; the ID lets Repair rebuild
// the index from the packs alone. Packs are append-only: a new one is started
// at every Open and when one reaches its target size, and only compaction
// removes them (after copying their live records elsewhere).

const (
	HeaderLen       = 16
	RecordHeaderLen = 52
	FlagZstd        = 1
)

var (
	packMagic   = []byte("XSPACK01")
	recordMagic = []byte("XSR1")
	crcTable    = crc32.MakeTable(crc32.Castagnoli)
)

type Header struct {
	Type   blob.Type
	Flags  uint8
	Stored uint32
	Raw    uint32
	ID     chunk.ID
}

// Encode returns the record of h and data: its header, with the CRC, then data.
func (h *Header) Encode(data []byte) []byte {
	return h.AppendRecord(make([]byte, 0, RecordHeaderLen+len(data)), data)
}

// AppendRecord appends the record Encode returns to dst.
func (h *Header) AppendRecord(dst, data []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, RecordHeaderLen)...)
	b := dst[n:]
	copy(b, recordMagic)
	b[4] = byte(h.Type)
	b[5] = h.Flags
	binary.LittleEndian.PutUint32(b[8:], h.Stored)
	binary.LittleEndian.PutUint32(b[12:], h.Raw)
	copy(b[16:48], h.ID[:])
	crc := crc32.Update(crc32.Checksum(b[:48], crcTable), crcTable, data)
	binary.LittleEndian.PutUint32(b[48:], crc)
	return append(dst, data...)
}

var ErrBadRecord = errors.New("damaged pack record")

// ErrSeqTaken is what Writer.BeforeCreate returns for a sequence number
// that must not be used (its pack exists elsewhere).
var ErrSeqTaken = errors.New("pack number already used")

// DecodeHeader parses a record header; the CRC is checked by CheckRecord.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < RecordHeaderLen || !bytes.Equal(b[:4], recordMagic) {
		return h, ErrBadRecord
	}
	h.Type = blob.Type(b[4])
	h.Flags = b[5]
	h.Stored = binary.LittleEndian.Uint32(b[8:])
	h.Raw = binary.LittleEndian.Uint32(b[12:])
	copy(h.ID[:], b[16:48])
	if h.Stored > MaxStored || h.Raw > chunk.MaxChunkSize && h.Type == blob.Chunk || !h.Type.Valid() {
		return h, ErrBadRecord
	}
	return h, nil
}

// CheckRecord verifies the CRC of a whole record (header and data).
func CheckRecord(rec []byte) error {
	if len(rec) < RecordHeaderLen {
		return ErrBadRecord
	}
	want := binary.LittleEndian.Uint32(rec[48:])
	got := crc32.Update(crc32.Checksum(rec[:48], crcTable), crcTable, rec[RecordHeaderLen:])
	if want != got {
		return ErrBadRecord
	}
	return nil
}

// MaxStored caps a record's stored size (a tree may be up to manifest.MaxTreeSize).
const MaxStored = 16<<20 + 1024

// HeaderSeq reads the pack number the header of the local pack file seq
// names; ok is false if the header cannot be read. A number other than seq
// means the file holds another pack (files renamed or swapped).
func HeaderSeq(fs fsys.FS, seq uint64) (named uint64, ok bool) {
	f, err := fs.OpenFile(Name(seq), os.O_RDONLY, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	hdr := make([]byte, HeaderLen)
	if n, _ := f.ReadAt(hdr, 0); n < HeaderLen || !bytes.Equal(hdr[:8], packMagic) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(hdr[8:]), true
}

func Name(seq uint64) string { return fmt.Sprintf("packs/%02x/%016x.pack", seq&0xff, seq) }

// NewWriter returns a writer that creates packs in fs, starting with
// sequence number next, and starts a new pack once one reaches maxSize.
func NewWriter(fs fsys.FS, maxSize int64, next uint64) *Writer {
	return &Writer{fs: fs, maxSize: maxSize, next: next}
}

// Writer appends records to the current pack file. Its methods are safe for
// concurrent use (one mutex, taken by every method and never held while
// calling out).
type Writer struct {
	fs      fsys.FS
	maxSize int64
	// BeforeCreate, if set, is called (under the writer's mutex) before a
	// pack is created; an error stops the creation, except ErrSeqTaken,
	// which makes the writer try the next number. The store uses it to
	// record the highest sequence number ever used, and to skip numbers an
	// object store already holds.
	BeforeCreate func(seq uint64) error
	// Sealed, if set, is called (under the writer's mutex, so it must not
	// block on the writer) when a pack is closed for good: nothing will be
	// appended to it again.
	Sealed func(seq uint64)

	mu    sync.Mutex // guards the fields below
	seq   uint64     // sequence number of the current pack (0: none open)
	next  uint64     // sequence number of the next pack to create
	f     fsys.File
	size  int64
	dirty bool   // written since the last Sync
	rec   []byte // Append's record buffer, reused
}

// MaxKeptRecord is the largest record buffer a Writer (or the store's
// shadow file) keeps between appends: a default chunk's record, and then
// some.
const MaxKeptRecord = 1 << 20

// Append writes one record and returns where it is. The caller must call
// Sync before indexing it.
func (w *Writer) Append(h Header, data []byte) (seq uint64, off int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		if err := w.create(); err != nil {
			return 0, 0, err
		}
	}
	// One buffer for every record: a fresh one per chunk cost a page fault
	// and the kernel's zeroing per 4 KiB of every upload.
	rec := h.AppendRecord(w.rec[:0], data)
	if cap(rec) <= MaxKeptRecord {
		w.rec = rec
	}
	n, err := w.f.Write(rec)
	if err != nil || n != len(rec) {
		// A short or failed write leaves garbage at the tail: start a fresh
		// pack next time so that no later record follows it.
		w.closeLocked()
		if err == nil {
			err = io.ErrShortWrite
		}
		return 0, 0, fmt.Errorf("write pack %d: %w", w.seq, err)
	}
	off = w.size
	w.size += int64(n)
	w.dirty = true
	return w.seq, off, nil
}

func (w *Writer) create() error {
	seq := w.next
	if w.BeforeCreate != nil {
		for tries := 0; ; tries++ {
			err := w.BeforeCreate(seq)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrSeqTaken) || tries == 100 {
				return fmt.Errorf("create pack: %w", err)
			}
			seq++ // that number is used elsewhere: the next one
			w.next = seq
		}
	}
	name := Name(seq)
	if err := w.fs.MkdirAll(name[:len("packs/00")], 0o750); err != nil {
		return err
	}
	f, err := w.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create pack: %w", err)
	}
	hdr := make([]byte, HeaderLen)
	copy(hdr, packMagic)
	binary.LittleEndian.PutUint64(hdr[8:], seq)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		w.fs.Remove(name)
		return fmt.Errorf("create pack: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		w.fs.Remove(name)
		return fmt.Errorf("create pack: %w", err)
	}
	if err := w.fs.SyncDir(name[:len("packs/00")]); err != nil {
		f.Close()
		return fmt.Errorf("create pack: %w", err)
	}
	w.next++
	w.seq, w.f, w.size, w.dirty = seq, f, HeaderLen, false
	return nil
}

// sync makes every record appended so far durable, and starts a new pack
// next time if this one is full.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil || !w.dirty {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages:
		// nothing written to this file can be trusted, so abandon it.
		w.closeLocked()
		return fmt.Errorf("fsync pack: %w", err)
	}
	w.dirty = false
	if w.size >= w.maxSize {
		w.closeLocked()
	}
	return nil
}

// Current returns the sequence number of the pack being written (0 if none).
func (w *Writer) Current() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// Roll makes the open pack durable and closes it: the next append starts a
// new pack.
func (w *Writer) Roll() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	var err error
	if w.dirty {
		err = w.f.Sync()
	}
	w.closeLocked()
	return err
}

// NextSeq returns the sequence number the next new pack will get.
func (w *Writer) NextSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

func (w *Writer) closeLocked() {
	if w.f != nil {
		w.f.Close()
		if w.Sealed != nil {
			w.Sealed(w.seq)
		}
	}
	w.f, w.seq, w.dirty = nil, 0, false
}

func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.f != nil && w.dirty {
		err = w.f.Sync()
	}
	w.closeLocked()
	return err
}

// ReadRecord reads and CRC-checks the record at off in pack seq.
func ReadRecord(fs fsys.FS, seq uint64, off int64, stored uint32) (Header, []byte, error) {
	if stored > MaxStored {
		// No record is that large: the size came from a damaged index
		// entry, and allocating it would take gigabytes.
		return Header{}, nil, fmt.Errorf("pack %016x at %d: %d stored bytes: %w", seq, off, stored, ErrBadRecord)
	}
	f, err := fs.OpenFile(Name(seq), os.O_RDONLY, 0)
	if err != nil {
		return Header{}, nil, err
	}
	defer f.Close()
	rec := make([]byte, RecordHeaderLen+int(stored))
	if _, err := f.ReadAt(rec, off); err != nil {
		return Header{}, nil, fmt.Errorf("read pack %016x at %d: %w", seq, off, err)
	}
	return DecodeRecord(seq, off, stored, rec)
}

// DecodeRecord checks rec, the record of pack seq at off read whole
// (RecordHeaderLen+stored bytes): its header, size and CRC. It returns the
// header and the stored bytes (aliasing rec).
func DecodeRecord(seq uint64, off int64, stored uint32, rec []byte) (Header, []byte, error) {
	if len(rec) != RecordHeaderLen+int(stored) {
		return Header{}, nil, fmt.Errorf("pack %016x at %d: %w", seq, off, ErrBadRecord)
	}
	h, err := DecodeHeader(rec)
	if err == nil && h.Stored != stored {
		err = ErrBadRecord
	}
	if err == nil {
		err = CheckRecord(rec)
	}
	if err != nil {
		return h, nil, fmt.Errorf("pack %016x at %d: %w", seq, off, err)
	}
	return h, rec[RecordHeaderLen:], nil
}

// DamagedSpan is a stretch of a pack that holds no intact record: a record
// whose checksum fails, bytes that are not a record at all, or a torn tail.
type DamagedSpan struct {
	Off, End int64
	// Header is the damaged record's header when it still decodes (its
	// fields, the ID among them, may themselves be what was damaged).
	Header *Header
	// Tail: nothing intact follows (a write cut short by a crash, or damage
	// at the very end of the pack).
	Tail bool
}

// reader reads records of one pack file.
type reader struct {
	f    io.ReaderAt
	size int64
	buf  []byte
}

// at reads and checks the record at off: it returns the header and the whole
// record (header and data) if it is intact. The record aliases r.buf.
func (r *reader) at(off int64) (h Header, rec []byte, headerOK bool, intact bool) {
	if off < 0 || off+RecordHeaderLen > r.size {
		return h, nil, false, false
	}
	if cap(r.buf) < RecordHeaderLen {
		r.buf = make([]byte, RecordHeaderLen)
	}
	if _, err := r.f.ReadAt(r.buf[:RecordHeaderLen], off); err != nil {
		return h, nil, false, false
	}
	h, err := DecodeHeader(r.buf[:RecordHeaderLen])
	if err != nil {
		return h, nil, false, false
	}
	n := RecordHeaderLen + int(h.Stored)
	if off+int64(n) > r.size {
		return h, nil, true, false
	}
	if cap(r.buf) < n {
		nb := make([]byte, n)
		copy(nb, r.buf[:RecordHeaderLen])
		r.buf = nb
	}
	rec = r.buf[:n]
	if _, err := r.f.ReadAt(rec[RecordHeaderLen:], off+RecordHeaderLen); err != nil {
		return h, nil, true, false
	}
	if CheckRecord(rec) != nil {
		return h, nil, true, false
	}
	return h, rec, true, true
}

// resyncWindow is how much of a pack is searched at once for the next record.
const resyncWindow = 1 << 20

// next finds the first intact record at or after from, or returns -1.
func (r *reader) next(from int64) int64 {
	win := make([]byte, resyncWindow+len(recordMagic)-1)
	for pos := from; pos+RecordHeaderLen <= r.size; pos += resyncWindow {
		n, _ := r.f.ReadAt(win[:min(int64(len(win)), r.size-pos)], pos)
		w := win[:n]
		for i := 0; ; {
			j := bytes.Index(w[i:], recordMagic)
			if j < 0 || i+j >= resyncWindow {
				break
			}
			cand := pos + int64(i+j)
			if _, _, _, ok := r.at(cand); ok {
				return cand
			}
			i += j + 1
		}
	}
	return -1
}

// Scan calls fn for every intact record of a pack, in order, and onBad
// (if set) for every damaged span between them. A damaged record costs only
// itself: the scan goes on at the end its header gives when an intact record
// is found there, and otherwise at the next intact record found by searching
// for the record magic (each candidate must pass its CRC). It returns the
// offset just past the last intact record.
func Scan(fs fsys.FS, seq uint64, fn func(h Header, off int64, data []byte) error, onBad func(DamagedSpan)) (good int64, err error) {
	f, err := fs.OpenFile(Name(seq), os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return ScanReader(f, st.Size(), fn, onBad)
}

// ScanReader is Scan over a pack read through f, size bytes long (a pack
// held elsewhere than in a file system, an object store's ranged reads).
func ScanReader(f io.ReaderAt, size int64, fn func(h Header, off int64, data []byte) error, onBad func(DamagedSpan)) (good int64, err error) {
	r := &reader{f: f, size: size}
	bad := func(sp DamagedSpan) {
		if onBad != nil {
			onBad(sp)
		}
	}
	// The pack header only names the pack (so does its file name): damage
	// there costs nothing but a report.
	hdr := make([]byte, HeaderLen)
	if n, _ := f.ReadAt(hdr, 0); n < HeaderLen || !bytes.Equal(hdr[:8], packMagic) {
		if r.size <= HeaderLen {
			if r.size > 0 {
				bad(DamagedSpan{Off: 0, End: r.size, Tail: true})
			}
			return 0, nil
		}
		bad(DamagedSpan{Off: 0, End: HeaderLen})
	}
	off := int64(HeaderLen)
	good = off
	for off < r.size {
		h, rec, headerOK, ok := r.at(off)
		if ok {
			if err := fn(h, off, rec[RecordHeaderLen:]); err != nil {
				return good, err
			}
			off += int64(len(rec))
			good = off
			continue
		}
		sp := DamagedSpan{Off: off}
		if headerOK {
			hc := h
			sp.Header = &hc
			// Only the data (or the checksum) is damaged if an intact
			// record, or the end of the pack, follows where the header says.
			end := off + RecordHeaderLen + int64(h.Stored)
			if end == r.size {
				sp.End = end
				bad(sp)
				break
			}
			if end < r.size {
				if _, _, _, ok := r.at(end); ok {
					sp.End = end
					bad(sp)
					off = end
					continue
				}
			}
		}
		nx := r.next(off + 1)
		if nx < 0 {
			sp.End, sp.Tail = r.size, true
			bad(sp)
			break
		}
		sp.End = nx
		bad(sp)
		off = nx
	}
	return good, nil
}

// List returns the sequence numbers of all pack files.
func List(fs fsys.FS) ([]uint64, error) {
	dirs, err := fs.ReadDir("packs")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		ents, err := fs.ReadDir("packs/" + d.Name())
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			var seq uint64
			if _, err := fmt.Sscanf(e.Name(), "%016x.pack", &seq); err == nil && Name(seq) == "packs/"+d.Name()+"/"+e.Name() {
				seqs = append(seqs, seq)
			}
		}
	}
	return seqs, nil
}
