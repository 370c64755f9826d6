package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Fuzz targets for the decoders of the store's own files and index
// records: the store config, users/ID.json and its .copy, snapshot files,
// snapshots/numbered.json, the blob, hold and usage records of the index
// and the directory trees' copies. Each is seeded with what the store's own
// encoder wrote, and checks: no panic, memory bounded whatever a length
// field says, and decode(encode(x)) == x.

// decFix is a real store with two laptops, each with one backup.
type decFix struct {
	s          *Store
	dir        string
	a, b       *User
	snA, snB   *Snapshot
	userA      []byte // users/A.json as the store wrote it
	copyA      []byte // users/A.json.copy
	snapA      []byte // snapshots/A/ID.json
	mark       []byte // snapshots/numbered.json
	config     []byte // xs-store.json
	rootCopy   []byte // the index's copy of snA's root tree
	rootRawLen int
}

func decJournal(tb testing.TB, seed uint64) string {
	tb.Helper()
	dir := tb.TempDir()
	o := journalgen.Small(seed)
	o.Entries = 4
	if _, err := journalgen.Generate(dir, o); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func decBackup(tb testing.TB, s *Store, u UserID, src string) *Snapshot {
	tb.Helper()
	tg := s.Target(u, CommitInfo{Source: src})
	if _, err := backup.Run(context.Background(), src, tg, backup.Options{Params: s.Params(), Exclude: backup.JournalExclude}); err != nil {
		tb.Fatal(err)
	}
	return tg.Last()
}

func decFixture(tb testing.TB) *decFix {
	tb.Helper()
	ctx := context.Background()
	fx := &decFix{dir: tb.TempDir()}
	s, err := Open(ctx, fx.dir, Options{Reserve: -1, PackSize: 64 << 10})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	fx.s = s
	pub := ed25519.PublicKey(bytes.Repeat([]byte{7}, ed25519.PublicKeySize))
	if fx.a, err = s.AddUser(ctx, NewUser{Serial: "DECA0001", Nickname: "ana", Approved: true, PublicKey: pub}); err != nil {
		tb.Fatal(err)
	}
	if fx.b, err = s.AddUser(ctx, NewUser{Serial: "DECB0002", Nickname: "ben", Approved: true}); err != nil {
		tb.Fatal(err)
	}
	fx.snA = decBackup(tb, s, fx.a.ID, decJournal(tb, 1))
	fx.snB = decBackup(tb, s, fx.b.ID, decJournal(tb, 2))
	s.saveNumbering()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(fx.dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	fx.userA = read(userFile(fx.a.ID))
	fx.copyA = read(userCopy(fx.a.ID))
	fx.snapA = read(snapFile(fx.a.ID, fx.snA.ID))
	fx.mark = read(numberingMark)
	fx.config = read(configName)
	if err := s.view(func(txn *badger.Txn) error {
		v, ok, err := get(txn, copyKey(fx.snA.Root))
		if err == nil && !ok {
			tb.Fatal("the root tree of a fresh backup has no copy in the index")
		}
		fx.rootCopy = v
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	raw, _, _, ok := s.treeCopy(blob.Ref{Type: blob.Tree, ID: fx.snA.Root})
	if !ok {
		tb.Fatal("the root tree's copy does not verify")
	}
	fx.rootRawLen = len(raw)
	return fx
}

// reload reads the users and snapshots again, as Open does, into a new
// Store sharing fx's index and file system.
func (fx *decFix) reload() (*Store, error) {
	n := &Store{dir: fx.s.dir, fsys: fx.s.fsys, opts: fx.s.opts, db: fx.s.db, codec: fx.s.codec,
		users: map[UserID]*User{}, serials: map[string]UserID{}, snaps: map[UserID][]*Snapshot{}}
	return n, n.loadMeta()
}

func (fx *decFix) write(tb testing.TB, name string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(fx.dir, name), data, 0o640); err != nil {
		tb.Fatal(err)
	}
}

// allocated runs fn and returns the bytes it (and anything running
// meanwhile) allocated.
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// The loaders read at most 1 MiB per user or snapshot file: reading one
// must not cost more than a small multiple of that.
const decAllocCap = 64 << 20

func userJSON(u *User) string { b, _ := json.Marshal(u); return string(b) }
func snapJSON(sn *Snapshot) string {
	c := *sn
	c.deleting, c.guessSeq = false, false
	b, _ := json.Marshal(&c)
	return string(b)
}

// FuzzDecObjRec: a blob entry of the index (30 bytes) decodes without
// panicking whatever its bytes; only 30 bytes decode, and they encode back
// to themselves.
func FuzzDecObjRec(f *testing.F) {
	f.Add((&objRec{Type: blob.Chunk, Flags: pack.FlagZstd, Pack: 7, Off: 4096, Stored: 1200, Raw: 4000, Owners: 2}).encode())
	f.Add((&objRec{Type: blob.Tree, Flags: flagLost, Pack: 1<<64 - 1, Off: -1, Stored: 1<<32 - 1, Raw: 1<<32 - 1, Owners: 1<<32 - 1}).encode())
	f.Add([]byte{})
	f.Add(make([]byte, 29))
	f.Add(make([]byte, 31))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeObj(b)
		if len(b) != 30 {
			if err == nil {
				t.Fatalf("a blob entry of %d bytes decoded: %+v", len(b), o)
			}
			return
		}
		if err != nil {
			t.Fatalf("a 30-byte blob entry did not decode: %v", err)
		}
		if got := o.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode: %x, want %x", got, b)
		}
		o2, err := decodeObj(o.encode())
		if err != nil || o2 != o {
			t.Fatalf("encode then decode: %+v %v, want %+v", o2, err, o)
		}
	})
}

// FuzzDecHoldRec: a user's hold on a blob (16 bytes) decodes whatever its
// bytes; another length decodes as no hold; 16 bytes round-trip.
func FuzzDecHoldRec(f *testing.F) {
	f.Add(holdRec{Refs: 3, Size: 4096, Pending: 0}.encode())
	f.Add(holdRec{Refs: 0, Size: 1<<32 - 1, Pending: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()}.encode())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h := decodeHold(b)
		if len(b) != 16 {
			if h.held() || h != (holdRec{}) {
				t.Fatalf("a hold record of %d bytes decoded as %+v", len(b), h)
			}
			return
		}
		if got := h.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode: %x, want %x", got, b)
		}
	})
}

// FuzzDecUsage: a user's usage record (16 bytes) decodes whatever its
// bytes; another length is zero usage; 16 bytes round-trip.
func FuzzDecUsage(f *testing.F) {
	f.Add(Usage{Bytes: 1 << 30, Blobs: 1234}.encode())
	f.Add(Usage{Bytes: -1, Blobs: -1}.encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		u := decodeUsage(b)
		if len(b) != 16 {
			if u != (Usage{}) {
				t.Fatalf("a usage record of %d bytes decoded as %+v", len(b), u)
			}
			return
		}
		if got := u.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode: %x, want %x", got, b)
		}
	})
}

// FuzzDecTreeCopy: the copy of a directory tree kept in the index (flags,
// a raw length, the stored bytes) is read without panicking whatever it
// holds; a huge raw length allocates no more than the largest chunk; what
// it returns always hashes to the tree's ID; the copy the store wrote
// reads back whole.
func FuzzDecTreeCopy(f *testing.F) {
	fx := decFixture(f)
	f.Add(fx.rootCopy)
	flags, n, stored := fx.rootCopy[0], binary.LittleEndian.Uint32(fx.rootCopy[1:]), fx.rootCopy[5:]
	f.Add(encodeCopy(flags, n+1, stored))
	f.Add(encodeCopy(flags, 1<<32-1, stored))
	f.Add(encodeCopy(flags^pack.FlagZstd, n, stored))
	f.Add(fx.rootCopy[:len(fx.rootCopy)/2])
	f.Add([]byte{pack.FlagZstd, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{})
	ref := blob.Ref{Type: blob.Tree, ID: fx.snA.Root}
	f.Fuzz(func(t *testing.T, v []byte) {
		if err := fx.s.db.Update(func(txn *badger.Txn) error { return txn.Set(copyKey(ref.ID), v) }); err != nil {
			t.Fatal(err)
		}
		var raw, st []byte
		var fl uint8
		var ok bool
		used := allocated(func() { raw, st, fl, ok = fx.s.treeCopy(ref) })
		if used > uint64(chunk.MaxChunkSize)+uint64(4*len(v))+decAllocCap {
			t.Errorf("reading a %d-byte copy allocated %d bytes", len(v), used)
		}
		if !ok {
			if bytes.Equal(v, fx.rootCopy) {
				t.Fatal("the copy the store wrote does not read back")
			}
			return
		}
		if chunk.Sum(raw) != ref.ID || len(v) < 5 || len(raw) != int(binary.LittleEndian.Uint32(v[1:])) {
			t.Fatalf("a copy that does not hash to its tree was returned (%d bytes)", len(raw))
		}
		if !bytes.Equal(encodeCopy(fl, uint32(len(raw)), st), v[:5+len(st)]) || fl != v[0] {
			t.Fatalf("encode(decode(copy)) differs from the copy")
		}
	})
}

// FuzzDecUserFile: users/A.json holds anything (its copy is intact). Open
// never fails for it and never panics: a file that decodes to the user it
// is named for is taken, anything else is restored from the copy and
// reported; the other laptop is untouched.
func FuzzDecUserFile(f *testing.F) {
	fx := decFixture(f)
	f.Add(fx.userA)
	f.Add(fx.userA[:len(fx.userA)/2])
	f.Add([]byte(strings.Replace(string(fx.userA), `"serial"`, `"serial": 5, "x"`, 1)))
	f.Add([]byte(strings.Replace(string(fx.userA), `"approved": true`, `"approved": "yes"`, 1)))
	f.Add([]byte(`{"id": 1e400}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	name := userFile(fx.a.ID)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.write(t, name, data)
		fx.write(t, userCopy(fx.a.ID), fx.copyA)
		var n *Store
		var err error
		if used := allocated(func() { n, err = fx.reload() }); used > decAllocCap {
			t.Errorf("loading a %d-byte user file allocated %d bytes", len(data), used)
		}
		if err != nil {
			t.Fatalf("a damaged user file with an intact copy failed the load: %v", err)
		}
		got := n.users[fx.a.ID]
		if got == nil {
			t.Fatal("the laptop is gone")
		}
		if b := n.users[fx.b.ID]; b == nil || userJSON(b) != userJSON(fx.b) {
			t.Fatalf("the other laptop changed: %+v", b)
		}
		if len(n.snaps[fx.a.ID]) != 1 || len(n.snaps[fx.b.ID]) != 1 {
			t.Fatalf("snapshots: %d and %d, want 1 each", len(n.snaps[fx.a.ID]), len(n.snaps[fx.b.ID]))
		}
		var want User
		if json.Unmarshal(data, &want) == nil && want.ID == fx.a.ID {
			if userJSON(got) != userJSON(&want) {
				t.Fatalf("decoded %s, loaded %s", userJSON(&want), userJSON(got))
			}
			return
		}
		if userJSON(got) != userJSON(fx.a) {
			t.Fatalf("a damaged user file was not restored from its copy: %s", userJSON(got))
		}
		named := false
		for _, md := range n.metaDamage {
			named = named || md.File == name
		}
		if !named {
			t.Fatalf("the damaged %s is not reported: %+v", name, n.metaDamage)
		}
	})
}

// FuzzDecUserCopy: users/A.json is unreadable and its copy holds anything.
// Open never fails for it and never panics: a copy naming the user is
// taken, anything else leaves the placeholder "damaged-ID", which keeps
// the laptop's backup.
func FuzzDecUserCopy(f *testing.F) {
	fx := decFixture(f)
	f.Add(fx.copyA)
	f.Add(fx.copyA[:len(fx.copyA)-1])
	f.Add([]byte(strings.Replace(string(fx.copyA), `"id"`, `"id": "x", "y"`, 1)))
	f.Add([]byte(`{"id": 0}`))
	f.Add([]byte{0})
	name := userFile(fx.a.ID)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.write(t, name, []byte("{"))
		fx.write(t, userCopy(fx.a.ID), data)
		var n *Store
		var err error
		if used := allocated(func() { n, err = fx.reload() }); used > decAllocCap {
			t.Errorf("loading a %d-byte user copy allocated %d bytes", len(data), used)
		}
		if err != nil {
			t.Fatalf("a damaged user file failed the load: %v", err)
		}
		got := n.users[fx.a.ID]
		if got == nil || len(n.snaps[fx.a.ID]) != 1 || len(n.snaps[fx.b.ID]) != 1 {
			t.Fatalf("user %+v, snapshots %d and %d", got, len(n.snaps[fx.a.ID]), len(n.snaps[fx.b.ID]))
		}
		var want User
		if json.Unmarshal(data, &want) == nil && want.ID == fx.a.ID {
			if userJSON(got) != userJSON(&want) {
				t.Fatalf("copy decoded as %s, loaded %s", userJSON(&want), userJSON(got))
			}
			return
		}
		if got.Serial != "damaged-"+fx.a.ID.String() || got.Approved {
			t.Fatalf("with both files unreadable the user is %s, want the placeholder", userJSON(got))
		}
	})
}

// FuzzDecSnapshotFile: snapshots/A/ID.json holds anything. Open never fails
// for it and never panics: a file that decodes to the snapshot it is named
// for is taken; anything else is rebuilt from the index (which knows its
// root) and reported. The other laptop's snapshot is untouched.
func FuzzDecSnapshotFile(f *testing.F) {
	fx := decFixture(f)
	f.Add(fx.snapA)
	f.Add(fx.snapA[:len(fx.snapA)/3])
	f.Add([]byte(strings.Replace(string(fx.snapA), `"files"`, `"files": "many", "x"`, 1)))
	f.Add([]byte(strings.Replace(string(fx.snapA), `"root": "`, `"root": "zz`, 1)))
	f.Add([]byte(`{"seq": -9223372036854775808}`))
	f.Add([]byte{})
	name := snapFile(fx.a.ID, fx.snA.ID)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.write(t, name, data)
		var n *Store
		var err error
		if used := allocated(func() { n, err = fx.reload() }); used > decAllocCap {
			t.Errorf("loading a %d-byte snapshot file allocated %d bytes", len(data), used)
		}
		if err != nil {
			t.Fatalf("a damaged snapshot file failed the load: %v", err)
		}
		if l := n.snaps[fx.b.ID]; len(l) != 1 || snapJSON(l[0]) != snapJSON(fx.snB) {
			t.Fatalf("the other laptop's snapshots changed: %v", l)
		}
		l := n.snaps[fx.a.ID]
		if len(l) != 1 || l[0].ID != fx.snA.ID {
			t.Fatalf("the laptop's snapshots after its file was damaged: %v", l)
		}
		got := l[0]
		var want Snapshot
		if json.Unmarshal(data, &want) == nil && want.User == fx.a.ID && want.ID == fx.snA.ID {
			if bytes.Equal(data, fx.snapA) && snapJSON(got) != snapJSON(fx.snA) {
				t.Fatalf("the store's own snapshot file loaded as %s, want %s", snapJSON(got), snapJSON(fx.snA))
			}
			return
		}
		if got.Root != fx.snA.Root || got.Files != fx.snA.Files || got.Size != fx.snA.Size {
			t.Fatalf("rebuilt %s, want the root and counts of %s", snapJSON(got), snapJSON(fx.snA))
		}
		named := false
		for _, md := range n.metaDamage {
			named = named || md.File == name
		}
		if !named {
			t.Fatalf("the damaged %s is not reported: %+v", name, n.metaDamage)
		}
		fx.write(t, name, fx.snapA)
	})
}

// FuzzDecNumberingMark: snapshots/numbered.json holds anything. Open never
// fails for it and never panics; snapshots that carry their number keep it
// (the mark only gives back numbers that files lost).
func FuzzDecNumberingMark(f *testing.F) {
	fx := decFixture(f)
	f.Add(fx.mark)
	f.Add(fx.mark[:len(fx.mark)/2])
	f.Add([]byte(`{"` + fx.a.ID.String() + "/" + string(fx.snA.ID) + `": -5}`))
	f.Add([]byte(`{"x": "y"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.write(t, numberingMark, data)
		var n *Store
		var err error
		if used := allocated(func() { n, err = fx.reload() }); used > decAllocCap {
			t.Errorf("loading a %d-byte numbering mark allocated %d bytes", len(data), used)
		}
		if err != nil {
			t.Fatalf("a damaged numbering mark failed the load: %v", err)
		}
		for _, want := range []*Snapshot{fx.snA, fx.snB} {
			l := n.snaps[want.User]
			if len(l) != 1 || l[0].ID != want.ID || l[0].Seq != want.Seq {
				t.Fatalf("user %s's snapshots after the mark held %q: %v, want %s with number %d", want.User, data, l, want.ID, want.Seq)
			}
		}
		if bytes.Equal(data, fx.mark) {
			var known map[string]int64
			json.Unmarshal(data, &known)
			if k, ok := n.readNumberingMark(); !ok || len(k) != len(known) {
				t.Fatalf("the mark the store wrote reads back as %v %v", k, ok)
			}
		}
	})
}

// FuzzDecStoreConfig: xs-store.json holds anything. Reading it never
// panics; a failure names the file (or the format it does not support);
// what it accepts is this format with chunker parameters a laptop can cut
// with; the file the store wrote reads back as it was.
func FuzzDecStoreConfig(f *testing.F) {
	fx := decFixture(f)
	f.Add(fx.config)
	f.Add(fx.config[:len(fx.config)/2])
	f.Add([]byte(strings.Replace(string(fx.config), `"format": 1`, `"format": "1"`, 1)))
	f.Add([]byte(strings.Replace(string(fx.config), `"format": 1`, `"format": 2`, 1)))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, configName), data, 0o640); err != nil {
			t.Fatal(err)
		}
		n := &Store{dir: dir, fsys: fsys.Dir(dir), opts: Options{Now: time.Now, Existing: true}}
		err := n.loadConfig()
		if err != nil {
			if !strings.Contains(err.Error(), configName) && !strings.Contains(err.Error(), "store format") {
				t.Fatalf("the error does not name %s: %v", configName, err)
			}
			if bytes.Equal(data, fx.config) {
				t.Fatalf("the store's own config does not read back: %v", err)
			}
			return
		}
		if n.cfg.Format != FormatVersion {
			t.Fatalf("accepted format %d", n.cfg.Format)
		}
		if perr := n.cfg.Params.Validate(); perr != nil {
			t.Fatalf("accepted a config whose chunker parameters no laptop can cut with (%v): %q", perr, data)
		}
		if bytes.Equal(data, fx.config) && (n.cfg.Params != fx.s.cfg.Params || !n.cfg.Created.Equal(fx.s.cfg.Created)) {
			t.Fatalf("the store's own config read back as %+v, want %+v", n.cfg, fx.s.cfg)
		}
	})
}
