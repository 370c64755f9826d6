package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/zeebo/blake3"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

const (
	pieceMagic    = "XSBPIECE"
	pieceFixedLen = 8 + 2 + 16 + 4 + 1 + 8 // the part of the header the hash covers
	pieceHdrLen   = pieceFixedLen + 32
	pieceLast     = 1
	// PieceExt is the file name extension of piece files.
	PieceExt = ".xsb"
	// MinPieceSize is the smallest piece size CreateFiles accepts.
	MinPieceSize = 4096
)

// FileWriter writes a bundle as piece files. It has the methods of Writer
// (Blob, Meta, Written, Header); its Close returns the files written.
type FileWriter struct {
	*Writer
	pw *pieceWriter
}

// CreateFiles starts a bundle written into dir as piece files of at most
// pieceSize bytes each (0: one piece of any size), named
// "<prefix>-<bundle ID hex>-<NNN>.xsb". Every piece is written to a
// temporary file, synced and renamed into place when full; the last one is
// written by Close. See NewWriter for h and key.
func CreateFiles(dir, prefix string, pieceSize int64, h Header, key ed25519.PrivateKey) (*FileWriter, error) {
	if prefix == "" || strings.ContainsAny(prefix, `/\`) || strings.HasPrefix(prefix, ".") {
		return nil, invalid("bundle: file name prefix %q must be a plain, non-empty name", clip(prefix))
	}
	if pieceSize != 0 && pieceSize < MinPieceSize {
		return nil, invalid("bundle: piece size %d is below the minimum of %d bytes", pieceSize, MinPieceSize)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	} else if !fi.IsDir() {
		return nil, invalid("bundle: %s is not a directory", dir)
	}
	if h.ID == [16]byte{} {
		id, err := newID()
		if err != nil {
			return nil, fmt.Errorf("bundle: random ID: %w", err)
		}
		h.ID = id
	}
	pw := &pieceWriter{dir: dir, prefix: prefix, id: h.ID}
	if pieceSize > 0 {
		pw.room = pieceSize - pieceHdrLen
	}
	w, err := NewWriter(pw, h, key)
	if err != nil {
		pw.abort()
		return nil, err
	}
	return &FileWriter{Writer: w, pw: pw}, nil
}

// Close writes the trailer and the last piece, and returns the paths of the
// piece files in order. If it fails, the piece files written so far are
// removed.
func (fw *FileWriter) Close() ([]string, error) {
	if err := fw.Writer.Close(); err != nil {
		fw.pw.abort()
		return nil, err
	}
	if err := fw.pw.finish(); err != nil {
		fw.pw.abort()
		return nil, err
	}
	return slices.Clone(fw.pw.files), nil
}

// Abort stops writing and removes the piece files written so far. Call it
// instead of Close to abandon a bundle, e.g. after an error from Blob.
func (fw *FileWriter) Abort() {
	fw.Writer.closed = true
	fw.pw.abort()
}

// pieceWriter is the io.Writer under a FileWriter's Writer: it cuts the
// stream into piece files.
type pieceWriter struct {
	dir, prefix string
	id          [16]byte
	room        int64 // payload bytes per piece, 0 for no limit
	f           *os.File
	index       int   // of the current piece
	plen        int64 // payload bytes in the current piece
	hash        *blake3.Hasher
	files       []string
}

func (pw *pieceWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if pw.f != nil && pw.room > 0 && pw.plen == pw.room {
			if err := pw.seal(false); err != nil {
				return n, err
			}
		}
		if pw.f == nil {
			if err := pw.start(); err != nil {
				return n, err
			}
		}
		k := len(p)
		if pw.room > 0 {
			k = int(min(int64(k), pw.room-pw.plen))
		}
		w, err := pw.f.Write(p[:k])
		pw.hash.Write(p[:w])
		pw.plen += int64(w)
		n += w
		if err != nil {
			return n, fmt.Errorf("piece %d: %w", pw.index+1, err)
		}
		p = p[k:]
	}
	return n, nil
}

func (pw *pieceWriter) name(index int) string {
	return filepath.Join(pw.dir, fmt.Sprintf("%s-%x-%03d%s", pw.prefix, pw.id[:], index+1, PieceExt))
}

// start opens the temporary file of the next piece, with a blank header
// (which is not a piece magic, so a leftover is never taken for a piece).
func (pw *pieceWriter) start() error {
	f, err := os.CreateTemp(pw.dir, "."+filepath.Base(pw.name(pw.index))+".tmp-*")
	if err != nil {
		return fmt.Errorf("piece %d: %w", pw.index+1, err)
	}
	if _, err := f.Write(make([]byte, pieceHdrLen)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("piece %d: %w", pw.index+1, err)
	}
	pw.f, pw.plen, pw.hash = f, 0, blake3.New()
	return nil
}

// seal writes the current piece's header, syncs it and renames it into
// place.
func (pw *pieceWriter) seal(last bool) error {
	hdr := make([]byte, 0, pieceHdrLen)
	hdr = append(hdr, pieceMagic...)
	hdr = binary.LittleEndian.AppendUint16(hdr, Version)
	hdr = append(hdr, pw.id[:]...)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(pw.index))
	var flags byte
	if last {
		flags = pieceLast
	}
	hdr = append(hdr, flags)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(pw.plen))
	pw.hash.Write(hdr)
	hdr = pw.hash.Sum(hdr)
	f, tmp, final := pw.f, pw.f.Name(), pw.name(pw.index)
	err := func() error {
		if _, err := f.WriteAt(hdr, 0); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		pw.f = nil
		if err := f.Close(); err != nil {
			return err
		}
		return os.Rename(tmp, final)
	}()
	if err != nil {
		if pw.f != nil {
			pw.f.Close()
			pw.f = nil
		}
		os.Remove(tmp)
		return fmt.Errorf("piece %d: %w", pw.index+1, err)
	}
	pw.files = append(pw.files, final)
	if err := atomicfile.OS.SyncDir(pw.dir); err != nil {
		return fmt.Errorf("piece %d: sync directory: %w", pw.index+1, err)
	}
	pw.index++
	return nil
}

// finish seals the last piece.
func (pw *pieceWriter) finish() error {
	if pw.f == nil {
		if err := pw.start(); err != nil {
			return err
		}
	}
	return pw.seal(true)
}

// abort removes the temporary file and every piece written.
func (pw *pieceWriter) abort() {
	if pw.f != nil {
		pw.f.Close()
		os.Remove(pw.f.Name())
		pw.f = nil
	}
	for _, name := range pw.files {
		os.Remove(name)
	}
	pw.files = nil
	atomicfile.OS.SyncDir(pw.dir)
}

// Piece is one piece file found by ScanPieces.
type Piece struct {
	Path  string
	Index int   // from 0
	Last  bool  // the last piece of its bundle
	Size  int64 // payload bytes
	hdr   [pieceHdrLen]byte
}

// PieceSet is the pieces of one bundle found by ScanPieces, by index, each
// index once (identical copies of a piece are found once).
type PieceSet struct {
	ID     [16]byte
	Pieces []Piece
}

// IDString returns the bundle ID as 32 hexadecimal digits.
func (s *PieceSet) IDString() string { return fmt.Sprintf("%x", s.ID[:]) }

// errNotPiece is returned by readPiece for a file that is not a piece.
var errNotPiece = errors.New("not a bundle piece")

// readPiece reads and checks a piece file's header and size.
func readPiece(path string) (Piece, error) {
	p := Piece{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return p, err
	}
	defer f.Close()
	k, err := io.ReadFull(f, p.hdr[:])
	if !bytes.HasPrefix(p.hdr[:k], []byte(pieceMagic)) || k < len(pieceMagic) {
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return p, err
		}
		return p, errNotPiece
	}
	if err != nil {
		return p, &Error{Kind: errkind.Damaged, Truncated: true, Msg: fmt.Sprintf("bundle piece %s is truncated: it holds only %d bytes", path, k)}
	}
	return p, p.parse(f)
}

// parse checks the header in p.hdr against the file's size.
func (p *Piece) parse(f *os.File) error {
	h := p.hdr[:]
	if v := binary.LittleEndian.Uint16(h[8:]); v != Version {
		return invalid("bundle piece %s has format version %d, not one this program reads (it reads version %d)", p.Path, v, Version)
	}
	p.Index = int(min(binary.LittleEndian.Uint32(h[26:]), 1<<24+1)) // (int is 32 bits on the XO-1)
	flags := h[30]
	p.Last = flags&pieceLast != 0
	plen := binary.LittleEndian.Uint64(h[31:])
	if flags&^pieceLast != 0 || plen > 1<<60 || p.Index > 1<<24 {
		return &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("bundle piece %s is damaged: its header is invalid", p.Path)}
	}
	p.Size = int64(plen)
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	want := pieceHdrLen + p.Size
	if fi.Size() < want {
		return &Error{Kind: errkind.Damaged, Truncated: true, Msg: fmt.Sprintf("piece %d of bundle %x (%s) is truncated: it holds %d of its %d bytes", p.Index+1, h[10:26], p.Path, fi.Size(), want)}
	}
	if fi.Size() > want {
		return &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("piece %d of bundle %x (%s) is damaged: it has %d bytes more than its header says", p.Index+1, h[10:26], p.Path, fi.Size()-want)}
	}
	return nil
}

// ScanPieces finds bundle pieces among paths: each path is a piece file or
// a directory whose files are looked at (not its subdirectories); in a
// directory, files that are not pieces are skipped. Pieces are recognised
// by content, not by name. It returns one PieceSet per bundle, ordered by
// ID, and fails on a piece that is damaged or truncated, on an explicitly
// named file that is not a piece, and on two different pieces with the same
// bundle ID and index. It does not check that a set is complete (see
// PieceSet.Check) nor hash the payloads (Open does, as it reads).
func ScanPieces(paths ...string) ([]*PieceSet, error) {
	var found []Piece
	add := func(path string, explicit bool) error {
		p, err := readPiece(path)
		if errors.Is(err, errNotPiece) {
			if explicit {
				return invalid("%s is not a piece of an xs-backup bundle", path)
			}
			return nil
		}
		if err != nil {
			return err
		}
		found = append(found, p)
		return nil
	}
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if err := add(path, true); err != nil {
				return nil, err
			}
			continue
		}
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			if e.Type()&fs.ModeType != 0 && e.Type()&fs.ModeSymlink == 0 {
				continue // devices, pipes, sockets
			}
			if err := add(filepath.Join(path, e.Name()), false); err != nil {
				return nil, err
			}
		}
	}
	byID := map[[16]byte]*PieceSet{}
	for _, p := range found {
		var id [16]byte
		copy(id[:], p.hdr[10:26])
		s := byID[id]
		if s == nil {
			s = &PieceSet{ID: id}
			byID[id] = s
		}
		s.Pieces = append(s.Pieces, p)
	}
	var sets []*PieceSet
	for _, s := range byID {
		slices.SortStableFunc(s.Pieces, func(a, b Piece) int { return a.Index - b.Index })
		out := s.Pieces[:0]
		for i := 0; i < len(s.Pieces); {
			j := i + 1
			for j < len(s.Pieces) && s.Pieces[j].Index == s.Pieces[i].Index {
				j++
			}
			if j == i+1 {
				out = append(out, s.Pieces[i])
				i = j
				continue
			}
			// The same piece in several files (copied to two sticks): keep
			// the first whose content matches its hash.
			p, err := pickCopy(s, s.Pieces[i:j])
			if err != nil {
				return nil, err
			}
			out = append(out, p)
			i = j
		}
		s.Pieces = out
		sets = append(sets, s)
	}
	slices.SortFunc(sets, func(a, b *PieceSet) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return sets, nil
}

// pickCopy chooses among files that claim the same index: the first intact
// one, provided every intact one has the same header (and so, as far as
// BLAKE3 goes, the same content).
func pickCopy(s *PieceSet, dups []Piece) (Piece, error) {
	var good []Piece
	var paths []string
	for _, p := range dups {
		paths = append(paths, p.Path)
		err := p.check()
		if err == nil {
			good = append(good, p)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			return p, err
		}
	}
	if len(good) == 0 {
		return dups[0], &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("every copy of piece %d of bundle %s is damaged: %s", dups[0].Index+1, s.IDString(), strings.Join(paths, ", "))}
	}
	for _, p := range good[1:] {
		if p.hdr != good[0].hdr {
			return p, &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("two different files claim to be piece %d of bundle %s: %s and %s", p.Index+1, s.IDString(), good[0].Path, p.Path)}
		}
	}
	return good[0], nil
}

// check reads the piece's payload and compares its hash.
func (p *Piece) check() error {
	f, err := os.Open(p.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [pieceHdrLen]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || hdr != p.hdr {
		return &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("bundle piece %s changed while being read", p.Path)}
	}
	h := blake3.New()
	n, err := io.Copy(h, io.LimitReader(f, p.Size))
	if err != nil {
		return err
	}
	h.Write(p.hdr[:pieceFixedLen])
	if n != p.Size || !bytes.Equal(h.Sum(nil), p.hdr[pieceFixedLen:]) {
		return &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("bundle piece %s is damaged: its content does not match its hash", p.Path)}
	}
	return nil
}

// Check reports whether the set is complete: pieces 0 to the last, the
// last one marked last, nothing after it. A missing piece is an error
// matching ErrTruncated.
func (s *PieceSet) Check() error {
	last := -1
	for _, p := range s.Pieces {
		if p.Last {
			if last >= 0 {
				return damaged("pieces %d and %d of bundle %s are both marked as the last", last+1, p.Index+1, s.IDString())
			}
			last = p.Index
		}
	}
	have := make(map[int]bool, len(s.Pieces))
	for _, p := range s.Pieces {
		have[p.Index] = true
		if last >= 0 && p.Index > last {
			return damaged("piece %d of bundle %s (%s) comes after its last piece, %d", p.Index+1, s.IDString(), p.Path, last+1)
		}
	}
	if last < 0 {
		n := 0
		if len(s.Pieces) > 0 {
			n = s.Pieces[len(s.Pieces)-1].Index + 1
		}
		if missing := missingPieces(have, n, ""); missing != "" {
			return truncated("the last piece is missing, and %s (bundle %s)", missing, s.IDString())
		}
		return truncated("the last piece is missing: found pieces 1 to %d, none of them the last (bundle %s)", n, s.IDString())
	}
	if missing := missingPieces(have, last+1, fmt.Sprintf(" of %d", last+1)); missing != "" {
		return truncated("%s (bundle %s)", missing, s.IDString())
	}
	return nil
}

// missingPieces says which of pieces 0 to n-1 are missing ("piece 3 of 5
// is missing", with ofTotal " of 5"), or "" if none is.
func missingPieces(have map[int]bool, n int, ofTotal string) string {
	var miss []string
	count := 0
	for i := range n {
		if !have[i] {
			count++
			if len(miss) < 10 {
				miss = append(miss, fmt.Sprint(i+1))
			}
		}
	}
	switch {
	case count == 0:
		return ""
	case count == 1:
		return "piece " + miss[0] + ofTotal + " is missing"
	case count > len(miss):
		return fmt.Sprintf("%d pieces%s are missing (%s, …)", count, ofTotal, strings.Join(miss, ", "))
	}
	return "pieces " + strings.Join(miss, ", ") + ofTotal + " are missing"
}

// Open checks that the set is complete and returns a reader of the bundle
// stream the pieces hold, joined in order. The reader checks each piece's
// hash as it reaches the piece's end and fails with a damage error naming
// the piece if it does not match; pass it to Verify or Read, which see the
// error.
func (s *PieceSet) Open() (io.ReadCloser, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	return &joined{set: s}, nil
}

// OpenFiles finds the pieces of one bundle among paths (files or
// directories, see ScanPieces), checks that they are complete, and returns
// a reader of the joined stream (see PieceSet.Open). Paths that hold pieces
// of more than one bundle are refused with an error listing them: use
// ScanPieces to choose. The reader is for one pass: for a second one (Read
// after Verify), call OpenFiles or PieceSet.Open again.
func OpenFiles(paths ...string) (io.ReadCloser, *PieceSet, error) {
	sets, err := ScanPieces(paths...)
	if err != nil {
		return nil, nil, err
	}
	switch len(sets) {
	case 0:
		return nil, nil, &Error{Kind: errkind.NotFound, Msg: fmt.Sprintf("no bundle pieces found in %s", strings.Join(paths, ", "))}
	case 1:
	default:
		var list []string
		for _, s := range sets {
			n := fmt.Sprintf("%d pieces", len(s.Pieces))
			if len(s.Pieces) == 1 {
				n = "1 piece"
			}
			list = append(list, fmt.Sprintf("%s (%s, e.g. %s)", s.IDString(), n, s.Pieces[0].Path))
		}
		return nil, nil, invalid("these places hold pieces of %d different bundles; import one at a time: %s", len(sets), strings.Join(list, "; "))
	}
	rc, err := sets[0].Open()
	if err != nil {
		return nil, nil, err
	}
	return rc, sets[0], nil
}

// joined reads the payloads of a complete set's pieces in order.
type joined struct {
	set  *PieceSet
	i    int      // next piece to open
	f    *os.File // the piece being read
	left int64    // its payload bytes not yet read
	hash *blake3.Hasher
	err  error
}

func (j *joined) Read(b []byte) (int, error) {
	for j.err == nil {
		if j.f == nil {
			if j.i == len(j.set.Pieces) {
				return 0, io.EOF
			}
			j.err = j.open()
			continue
		}
		if j.left == 0 {
			j.err = j.done()
			continue
		}
		if int64(len(b)) > j.left {
			b = b[:j.left]
		}
		n, err := j.f.Read(b)
		j.hash.Write(b[:n])
		j.left -= int64(n)
		if err == io.EOF && j.left > 0 {
			p := &j.set.Pieces[j.i-1]
			err = &Error{Kind: errkind.Damaged, Truncated: true, Msg: fmt.Sprintf("bundle piece %d of %d (%s) is truncated: it got shorter while being read", p.Index+1, len(j.set.Pieces), p.Path)}
		} else if err == io.EOF {
			err = nil
		}
		j.err = err
		if n > 0 {
			return n, nil
		}
	}
	return 0, j.err
}

// open opens the next piece and checks that its header is the one scanned.
func (j *joined) open() error {
	p := &j.set.Pieces[j.i]
	f, err := os.Open(p.Path)
	if err != nil {
		return err
	}
	var hdr [pieceHdrLen]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || hdr != p.hdr {
		f.Close()
		return &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("bundle piece %d of %d (%s) changed while being read", p.Index+1, len(j.set.Pieces), p.Path)}
	}
	j.f, j.left, j.hash = f, p.Size, blake3.New()
	j.i++
	return nil
}

// done checks the hash of the piece just read and closes it.
func (j *joined) done() error {
	p := &j.set.Pieces[j.i-1]
	j.hash.Write(p.hdr[:pieceFixedLen])
	ok := bytes.Equal(j.hash.Sum(nil), p.hdr[pieceFixedLen:])
	err := j.f.Close()
	j.f = nil
	if !ok {
		return &Error{Kind: errkind.Damaged, Msg: fmt.Sprintf("bundle piece %d of %d (%s) is damaged: its content does not match its hash", p.Index+1, len(j.set.Pieces), p.Path)}
	}
	return err
}

// Close closes the piece being read.
func (j *joined) Close() error {
	if j.err == nil {
		j.err = errors.New("bundle: pieces reader closed")
	}
	if j.f != nil {
		err := j.f.Close()
		j.f = nil
		return err
	}
	return nil
}
