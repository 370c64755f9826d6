package store

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
	packHeaderLen   = 16
	recordHeaderLen = 52
	flagZstd        = 1
)

var (
	packMagic   = []byte("XSPACK01")
	recordMagic = []byte("XSR1")
	crcTable    = crc32.MakeTable(crc32.Castagnoli)
)

type recordHeader struct {
	Type   blob.Type
	Flags  uint8
	Stored uint32
	Raw    uint32
	ID     chunk.ID
}

func (h *recordHeader) encode(data []byte) []byte {
	b := make([]byte, recordHeaderLen, recordHeaderLen+len(data))
	copy(b, recordMagic)
	b[4] = byte(h.Type)
	b[5] = h.Flags
	binary.LittleEndian.PutUint32(b[8:], h.Stored)
	binary.LittleEndian.PutUint32(b[12:], h.Raw)
	copy(b[16:48], h.ID[:])
	crc := crc32.Update(crc32.Checksum(b[:48], crcTable), crcTable, data)
	binary.LittleEndian.PutUint32(b[48:], crc)
	return append(b, data...)
}

var errBadRecord = errors.New("damaged pack record")

// decodeRecordHeader parses a record header; the CRC is checked by checkRecord.
func decodeRecordHeader(b []byte) (recordHeader, error) {
	var h recordHeader
	if len(b) < recordHeaderLen || !bytes.Equal(b[:4], recordMagic) {
		return h, errBadRecord
	}
	h.Type = blob.Type(b[4])
	h.Flags = b[5]
	h.Stored = binary.LittleEndian.Uint32(b[8:])
	h.Raw = binary.LittleEndian.Uint32(b[12:])
	copy(h.ID[:], b[16:48])
	if h.Stored > maxStored || h.Raw > chunk.MaxChunkSize && h.Type == blob.Chunk || !h.Type.Valid() {
		return h, errBadRecord
	}
	return h, nil
}

// checkRecord verifies the CRC of a whole record (header and data).
func checkRecord(rec []byte) error {
	if len(rec) < recordHeaderLen {
		return errBadRecord
	}
	want := binary.LittleEndian.Uint32(rec[48:])
	got := crc32.Update(crc32.Checksum(rec[:48], crcTable), crcTable, rec[recordHeaderLen:])
	if want != got {
		return errBadRecord
	}
	return nil
}

// maxStored caps a record's stored size (a tree may be up to manifest.MaxTreeSize).
const maxStored = 16<<20 + 1024

func packName(seq uint64) string { return fmt.Sprintf("packs/%02x/%016x.pack", seq&0xff, seq) }

// packWriter appends records to the current pack file.
type packWriter struct {
	fsys    FS
	maxSize int64

	mu    sync.Mutex // guards the fields below
	seq   uint64     // sequence number of the current pack (0: none open)
	next  uint64     // sequence number of the next pack to create
	f     File
	size  int64
	dirty bool // written since the last Sync
}

// append writes one record and returns where it is. The caller must call
// sync before indexing it.
func (w *packWriter) append(h recordHeader, data []byte) (seq uint64, off int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		if err := w.create(); err != nil {
			return 0, 0, err
		}
	}
	rec := h.encode(data)
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

func (w *packWriter) create() error {
	seq := w.next
	name := packName(seq)
	if err := w.fsys.MkdirAll(name[:len("packs/00")], 0o750); err != nil {
		return err
	}
	f, err := w.fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create pack: %w", err)
	}
	hdr := make([]byte, packHeaderLen)
	copy(hdr, packMagic)
	binary.LittleEndian.PutUint64(hdr[8:], seq)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		w.fsys.Remove(name)
		return fmt.Errorf("create pack: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		w.fsys.Remove(name)
		return fmt.Errorf("create pack: %w", err)
	}
	if err := w.fsys.SyncDir(name[:len("packs/00")]); err != nil {
		f.Close()
		return fmt.Errorf("create pack: %w", err)
	}
	w.next++
	w.seq, w.f, w.size, w.dirty = seq, f, packHeaderLen, false
	return nil
}

// sync makes every record appended so far durable, and starts a new pack
// next time if this one is full.
func (w *packWriter) sync() error {
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

// current returns the sequence number of the pack being written (0 if none).
func (w *packWriter) current() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// roll makes the open pack durable and closes it: the next append starts a
// new pack.
func (w *packWriter) roll() error {
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

// nextSeq returns the sequence number the next new pack will get.
func (w *packWriter) nextSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

func (w *packWriter) closeLocked() {
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.seq, w.dirty = nil, 0, false
}

func (w *packWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.f != nil && w.dirty {
		err = w.f.Sync()
	}
	w.closeLocked()
	return err
}

// readRecord reads and CRC-checks the record at off in pack seq.
func readRecord(fsys FS, seq uint64, off int64, stored uint32) (recordHeader, []byte, error) {
	f, err := fsys.OpenFile(packName(seq), os.O_RDONLY, 0)
	if err != nil {
		return recordHeader{}, nil, err
	}
	defer f.Close()
	rec := make([]byte, recordHeaderLen+int(stored))
	if _, err := f.ReadAt(rec, off); err != nil {
		return recordHeader{}, nil, fmt.Errorf("read pack %016x at %d: %w", seq, off, err)
	}
	h, err := decodeRecordHeader(rec)
	if err == nil && h.Stored != stored {
		err = errBadRecord
	}
	if err == nil {
		err = checkRecord(rec)
	}
	if err != nil {
		return h, nil, fmt.Errorf("pack %016x at %d: %w", seq, off, err)
	}
	return h, rec[recordHeaderLen:], nil
}

// damagedSpan is a stretch of a pack that holds no intact record: a record
// whose checksum fails, bytes that are not a record at all, or a torn tail.
type damagedSpan struct {
	Off, End int64
	// Header is the damaged record's header when it still decodes (its
	// fields, the ID among them, may themselves be what was damaged).
	Header *recordHeader
	// Tail: nothing intact follows (a write cut short by a crash, or damage
	// at the very end of the pack).
	Tail bool
}

// packReader reads records of one pack file.
type packReader struct {
	f    File
	size int64
	buf  []byte
}

// at reads and checks the record at off: it returns the header and the whole
// record (header and data) if it is intact. The record aliases r.buf.
func (r *packReader) at(off int64) (h recordHeader, rec []byte, headerOK bool, intact bool) {
	if off < 0 || off+recordHeaderLen > r.size {
		return h, nil, false, false
	}
	if cap(r.buf) < recordHeaderLen {
		r.buf = make([]byte, recordHeaderLen)
	}
	if _, err := r.f.ReadAt(r.buf[:recordHeaderLen], off); err != nil {
		return h, nil, false, false
	}
	h, err := decodeRecordHeader(r.buf[:recordHeaderLen])
	if err != nil {
		return h, nil, false, false
	}
	n := recordHeaderLen + int(h.Stored)
	if off+int64(n) > r.size {
		return h, nil, true, false
	}
	if cap(r.buf) < n {
		nb := make([]byte, n)
		copy(nb, r.buf[:recordHeaderLen])
		r.buf = nb
	}
	rec = r.buf[:n]
	if _, err := r.f.ReadAt(rec[recordHeaderLen:], off+recordHeaderLen); err != nil {
		return h, nil, true, false
	}
	if checkRecord(rec) != nil {
		return h, nil, true, false
	}
	return h, rec, true, true
}

// resyncWindow is how much of a pack is searched at once for the next record.
const resyncWindow = 1 << 20

// next finds the first intact record at or after from, or returns -1.
func (r *packReader) next(from int64) int64 {
	win := make([]byte, resyncWindow+len(recordMagic)-1)
	for pos := from; pos+recordHeaderLen <= r.size; pos += resyncWindow {
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

// scanPack calls fn for every intact record of a pack, in order, and onBad
// (if set) for every damaged span between them. A damaged record costs only
// itself: the scan goes on at the end its header gives when an intact record
// is found there, and otherwise at the next intact record found by searching
// for the record magic (each candidate must pass its CRC). It returns the
// offset just past the last intact record.
func scanPack(fsys FS, seq uint64, fn func(h recordHeader, off int64, data []byte) error, onBad func(damagedSpan)) (good int64, err error) {
	f, err := fsys.OpenFile(packName(seq), os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	r := &packReader{f: f, size: st.Size()}
	bad := func(sp damagedSpan) {
		if onBad != nil {
			onBad(sp)
		}
	}
	// The pack header only names the pack (so does its file name): damage
	// there costs nothing but a report.
	hdr := make([]byte, packHeaderLen)
	if n, _ := f.ReadAt(hdr, 0); n < packHeaderLen || !bytes.Equal(hdr[:8], packMagic) {
		if r.size <= packHeaderLen {
			if r.size > 0 {
				bad(damagedSpan{Off: 0, End: r.size, Tail: true})
			}
			return 0, nil
		}
		bad(damagedSpan{Off: 0, End: packHeaderLen})
	}
	off := int64(packHeaderLen)
	good = off
	for off < r.size {
		h, rec, headerOK, ok := r.at(off)
		if ok {
			if err := fn(h, off, rec[recordHeaderLen:]); err != nil {
				return good, err
			}
			off += int64(len(rec))
			good = off
			continue
		}
		sp := damagedSpan{Off: off}
		if headerOK {
			hc := h
			sp.Header = &hc
			// Only the data (or the checksum) is damaged if an intact
			// record, or the end of the pack, follows where the header says.
			end := off + recordHeaderLen + int64(h.Stored)
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

// listPacks returns the sequence numbers of all pack files.
func listPacks(fsys FS) ([]uint64, error) {
	dirs, err := fsys.ReadDir("packs")
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
		ents, err := fsys.ReadDir("packs/" + d.Name())
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			var seq uint64
			if _, err := fmt.Sscanf(e.Name(), "%016x.pack", &seq); err == nil && packName(seq) == "packs/"+d.Name()+"/"+e.Name() {
				seqs = append(seqs, seq)
			}
		}
	}
	return seqs, nil
}
