// Package manifest defines the snapshot tree: directories encoded as
// content-addressed blobs, exactly like file chunks.
//
// A snapshot is the ID of its root Tree. A Tree is one directory: a list of
// entries sorted by name, each a file (size and ordered chunk IDs), a
// directory (the ID of its own Tree) or a symlink (its target). A Tree is
// encoded canonically by Encode, so an unchanged directory always has the
// same ID and costs nothing to record again; only the trees on the path to a
// changed file are new in a later snapshot.
//
// Decode is the only way untrusted bytes become a Tree: it enforces size caps
// and validates every name (no "/", NUL, "", "." or "..", no duplicates), so
// nothing a manifest says can make a restore escape its target directory.
package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// Limits that Decode enforces on untrusted input.
const (
	// MaxTreeSize is the largest encoded Tree accepted.
	MaxTreeSize = 16 << 20
	// MaxEntries is the largest number of entries in one directory.
	MaxEntries = 1 << 18
	// MaxNameLen is the longest entry name, in bytes (Linux NAME_MAX).
	MaxNameLen = 255
	// MaxTargetLen is the longest symlink target (Linux PATH_MAX).
	MaxTargetLen = 4096
	// MaxDepth is the deepest directory nesting a snapshot may have.
	MaxDepth = 128
)

// magic starts every encoded tree; the digit is the format version.
var magic = []byte("XST1")

// Type says what an Entry is.
type Type uint8

// Entry types. Values are part of the encoding: never renumber.
const (
	File    Type = 1
	Dir     Type = 2
	Symlink Type = 3
)

func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Entry is one name in a directory.
type Entry struct {
	Name  string
	Type  Type
	Mode  fs.FileMode // permission bits (and setuid/setgid/sticky)
	MTime int64       // modification time, Unix nanoseconds
	Size  int64       // file size in bytes (0 for dirs and symlinks)
	// Chunks are the file's content, in order (files only).
	Chunks []chunk.ID
	// Subtree is the ID of the directory's Tree (dirs only).
	Subtree chunk.ID
	// Target is the symlink's target (symlinks only).
	Target string
}

// Tree is one directory's entries, sorted by Name.
type Tree struct {
	Entries []Entry
}

// ErrInvalid is wrapped by every error Decode and Validate return.
var ErrInvalid = errors.New("invalid manifest")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidName reports whether name may be an entry name: non-empty, at most
// MaxNameLen bytes, not "." or "..", and without "/" or NUL.
func ValidName(name string) error {
	switch {
	case name == "":
		return invalid("empty name")
	case name == "." || name == "..":
		return invalid("name %q is not allowed", name)
	case len(name) > MaxNameLen:
		return invalid("name longer than %d bytes", MaxNameLen)
	case strings.IndexByte(name, '/') >= 0 || strings.IndexByte(name, 0) >= 0: // ContainsAny without SIMD: 2× slower
		return invalid("name %q contains '/' or NUL", name)
	}
	return nil
}

// Sort orders the entries by name, as Encode requires.
func (t *Tree) Sort() {
	sort.Slice(t.Entries, func(i, j int) bool { return t.Entries[i].Name < t.Entries[j].Name })
}

// Validate checks names, order, uniqueness and per-type fields.
func (t *Tree) Validate() error {
	if len(t.Entries) > MaxEntries {
		return invalid("%d entries, more than %d", len(t.Entries), MaxEntries)
	}
	for i := range t.Entries {
		e := &t.Entries[i]
		if err := ValidName(e.Name); err != nil {
			return err
		}
		if i > 0 {
			prev := t.Entries[i-1].Name
			if prev == e.Name {
				return invalid("duplicate name %q", e.Name)
			}
			if prev > e.Name {
				return invalid("entries not sorted at %q", e.Name)
			}
		}
		if e.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			return invalid("entry %q has mode bits %v beyond permissions", e.Name, e.Mode)
		}
		if e.Type != File && (e.Size != 0 || len(e.Chunks) > 0) {
			return invalid("%s %q has a size or chunks", e.Type, e.Name)
		}
		if e.Type != Dir && !e.Subtree.IsZero() {
			return invalid("%s %q has a subtree", e.Type, e.Name)
		}
		if e.Type != Symlink && e.Target != "" {
			return invalid("%s %q has a symlink target", e.Type, e.Name)
		}
		switch e.Type {
		case File:
			if e.Size < 0 || e.Size > 1<<62 {
				return invalid("file %q has size %d", e.Name, e.Size)
			}
			if e.Size == 0 && len(e.Chunks) > 0 {
				return invalid("empty file %q has chunks", e.Name)
			}
			if e.Size > 0 && len(e.Chunks) == 0 {
				return invalid("file %q of %d bytes has no chunks", e.Name, e.Size)
			}
		case Dir:
			if e.Subtree.IsZero() {
				return invalid("directory %q has no subtree", e.Name)
			}
		case Symlink:
			if e.Target == "" || len(e.Target) > MaxTargetLen || strings.IndexByte(e.Target, 0) >= 0 {
				return invalid("symlink %q has a bad target", e.Name)
			}
		default:
			return invalid("entry %q has unknown type %d", e.Name, e.Type)
		}
	}
	return nil
}

// EncodedSize is the number of bytes Encode writes for t (valid or not):
// a tree is at most MaxTreeSize.
func EncodedSize(t *Tree) int {
	n := len(magic) + uvarintLen(uint64(len(t.Entries)))
	for i := range t.Entries {
		n += EntrySize(&t.Entries[i])
	}
	return n
}

// EntrySize is the number of bytes Encode writes for e in its tree.
func EntrySize(e *Entry) int {
	n := uvarintLen(uint64(len(e.Name))) + len(e.Name) + 1 + uvarintLen(uint64(e.Mode)) +
		varintLen(e.MTime) + uvarintLen(uint64(e.Size))
	switch e.Type {
	case File:
		n += uvarintLen(uint64(len(e.Chunks))) + len(e.Chunks)*len(chunk.ID{})
	case Dir:
		n += len(e.Subtree)
	case Symlink:
		n += uvarintLen(uint64(len(e.Target))) + len(e.Target)
	}
	return n
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

func varintLen(v int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], v)
}

// Encode validates t and returns its canonical encoding. Call Sort first if
// the entries were not added in name order.
func Encode(t *Tree) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(magic)
	buf := make([]byte, binary.MaxVarintLen64)
	uv := func(v uint64) { b.Write(buf[:binary.PutUvarint(buf, v)]) }
	uv(uint64(len(t.Entries)))
	for i := range t.Entries {
		e := &t.Entries[i]
		uv(uint64(len(e.Name)))
		b.WriteString(e.Name)
		b.WriteByte(byte(e.Type))
		uv(uint64(e.Mode))
		b.Write(buf[:binary.PutVarint(buf, e.MTime)])
		uv(uint64(e.Size))
		switch e.Type {
		case File:
			uv(uint64(len(e.Chunks)))
			for _, id := range e.Chunks {
				b.Write(id[:])
			}
		case Dir:
			b.Write(e.Subtree[:])
		case Symlink:
			uv(uint64(len(e.Target)))
			b.WriteString(e.Target)
		}
	}
	if b.Len() > MaxTreeSize {
		return nil, invalid("encoded tree is %d bytes, more than %d", b.Len(), MaxTreeSize)
	}
	return b.Bytes(), nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(max uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = invalid("truncated %s", what)
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.err = invalid("non-canonical %s", what) // one tree, one encoding, one ID
		return 0
	}
	if v > max {
		d.err = invalid("%s %d exceeds %d", what, v, max)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = invalid("truncated %s", what)
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.err = invalid("non-canonical %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = invalid("truncated %s", what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// Decode parses and validates an encoded Tree. It never allocates more than
// a small multiple of len(data), and rejects anything Encode would not produce.
func Decode(data []byte) (*Tree, error) {
	if len(data) > MaxTreeSize {
		return nil, invalid("tree is %d bytes, more than %d", len(data), MaxTreeSize)
	}
	if !bytes.HasPrefix(data, magic) {
		return nil, invalid("not a tree (bad magic)")
	}
	d := &decoder{b: data[len(magic):]}
	// Each entry takes at least 6 bytes, which bounds the allocation below.
	n := d.uvarint(uint64(min(MaxEntries, len(d.b)/6)), "entry count")
	t := &Tree{Entries: make([]Entry, 0, n)}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e Entry
		e.Name = string(d.bytes(d.uvarint(MaxNameLen, "name length"), "name"))
		typ := d.bytes(1, "type")
		if d.err != nil {
			break
		}
		e.Type = Type(typ[0])
		e.Mode = fs.FileMode(d.uvarint(1<<32-1, "mode"))
		e.MTime = d.varint("mtime")
		e.Size = int64(d.uvarint(1<<62, "size"))
		switch e.Type {
		case File:
			nc := d.uvarint(uint64(len(d.b)/len(chunk.ID{})), "chunk count")
			raw := d.bytes(nc*uint64(len(chunk.ID{})), "chunk list")
			if d.err == nil && nc > 0 {
				e.Chunks = make([]chunk.ID, nc)
				for j := range e.Chunks {
					copy(e.Chunks[j][:], raw[j*32:])
				}
			}
		case Dir:
			copy(e.Subtree[:], d.bytes(32, "subtree"))
		case Symlink:
			e.Target = string(d.bytes(d.uvarint(MaxTargetLen, "target length"), "target"))
		default:
			d.err = invalid("entry %q has unknown type %d", e.Name, typ[0])
		}
		t.Entries = append(t.Entries, e)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, invalid("%d trailing bytes", len(d.b))
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// Children returns the IDs a tree refers to, in entry order: each file's
// chunks (repeats included) and each directory's subtree. The store counts
// references with exactly this list.
func (t *Tree) Children() []chunk.ID {
	var ids []chunk.ID
	for i := range t.Entries {
		e := &t.Entries[i]
		switch e.Type {
		case File:
			ids = append(ids, e.Chunks...)
		case Dir:
			ids = append(ids, e.Subtree)
		}
	}
	return ids
}

// CommitInfo describes a snapshot being committed, as the laptop sends it
// and the store records it (informational only: nothing is decided on it).
// It is the one type behind proto.CommitInfo and store.CommitInfo.
type CommitInfo struct {
	Host   string `json:"host,omitempty"`   // laptop name
	Source string `json:"source,omitempty"` // directory backed up
	// Origin is set only when a school server replicates a snapshot to a
	// mothership (or a server is rebuilt from one): the snapshot keeps the
	// identity and time it had where it was made.
	Origin *Origin `json:"origin,omitempty"`
}

// Origin says where a replicated snapshot was made.
type Origin struct {
	// User is the laptop's user ID on the school server; 0 is the school's
	// own registry (users, keys, settings), replicated as a snapshot too.
	User uint64 `json:"user"`
	// Serial is the laptop's serial number there (for staff reading lists).
	Serial string `json:"serial,omitempty"`
	// Snapshot is the snapshot's ID on the school server, Time its time.
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	// Pinned and PinReason carry the school's pin.
	Pinned    bool   `json:"pinned,omitempty"`
	PinReason string `json:"pin_reason,omitempty"`
	// Seq is the snapshot's place in the laptop's commit order at the
	// school (its Snapshot.Seq there; 0 from a school older than that):
	// the order the mothership and a server rebuilt from it keep, whatever
	// the school's clock said.
	Seq int64 `json:"seq,omitempty"`
}
