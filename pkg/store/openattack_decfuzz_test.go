package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// Attacks on the files a store reads when it opens: each is replaced by a
// damaged or hostile version (cut in half, bytes flipped, fields of the
// wrong JSON type, 100 MB, a directory, a symlink to /dev/zero, a named
// pipe, missing chunker settings) in a real store of two laptops, then the
// store is opened as the daemon opens it. Staff expect: no panic, no hang,
// bounded memory, a clear error naming the file when the store cannot be
// used (or the damage reported and repaired where it can), and nothing
// else lost: both laptops' snapshots still list and restore byte for byte.

var daOpts = Options{Reserve: -1, PackSize: 64 << 10}

type daFix struct {
	dir        string
	a, b       *User
	srcA, srcB string
	snA, snB   *Snapshot
	base       uint64 // bytes a clean Open allocates
}

func daBuild(t *testing.T) *daFix {
	t.Helper()
	ctx := context.Background()
	fx := &daFix{dir: t.TempDir()}
	s, err := Open(ctx, fx.dir, daOpts)
	if err != nil {
		t.Fatal(err)
	}
	if fx.a, err = s.AddUser(ctx, NewUser{Serial: "DAA00001", Nickname: "ana", Approved: true, PublicKey: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	if fx.b, err = s.AddUser(ctx, NewUser{Serial: "DAB00002", Nickname: "ben", Approved: true}); err != nil {
		t.Fatal(err)
	}
	fx.srcA, fx.srcB = decJournal(t, 11), decJournal(t, 12)
	fx.snA = decBackup(t, s, fx.a.ID, fx.srcA)
	fx.snB = decBackup(t, s, fx.b.ID, fx.srcB)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fx.base = allocated(func() {
		if s, err = Open(ctx, fx.dir, daOpts); err != nil {
			t.Fatal(err)
		}
	})
	s.Close()
	return fx
}

// clone copies the pristine store for one attack.
func (fx *daFix) clone(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	daCopyDir(t, fx.dir, dir)
	return dir
}

func daCopyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if rel == "lock" {
			return nil
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// open opens dir as the daemon does, bounded by 6 s (unblock is called
// when that passes, to let a blocked Open go) and by memory.
func (fx *daFix) open(t *testing.T, dir string, unblock func()) (*Store, error) {
	t.Helper()
	type res struct {
		s   *Store
		err error
	}
	ch := make(chan res, 1)
	var used uint64
	start := time.Now()
	go func() {
		var r res
		used = allocated(func() { r.s, r.err = Open(context.Background(), dir, daOpts) })
		ch <- r
	}()
	select {
	case r := <-ch:
		if r.s != nil {
			t.Cleanup(func() { r.s.Close() })
		}
		if limit := fx.base + 64<<20; used > limit {
			t.Errorf("Open allocated %d MiB (a clean open: %d MiB)", used>>20, fx.base>>20)
		}
		return r.s, r.err
	case <-time.After(6 * time.Second):
		if unblock != nil {
			unblock()
		}
		select {
		case r := <-ch:
			if r.s != nil {
				r.s.Close()
			}
		case <-time.After(3 * time.Second):
		}
		t.Fatalf("Open did not return in %v", time.Since(start).Round(time.Second))
		return nil, nil
	}
}

// openDamaged clones the pristine store, damages its file name as kind
// says and opens it, which must succeed.
func (fx *daFix) openDamaged(t *testing.T, name, kind string) (dir string, s *Store) {
	t.Helper()
	dir = fx.clone(t)
	unblock := damageFile(t, filepath.Join(dir, name), kind)
	s, err := fx.open(t, dir, unblock)
	if err != nil {
		t.Fatalf("Open with %s %s: %v", name, kind, err)
	}
	return dir, s
}

// daReported checks that the store reports its file name as damaged.
func daReported(t *testing.T, s *Store, name string) {
	t.Helper()
	for _, md := range s.MetaDamage() {
		if md.File == name {
			return
		}
	}
	t.Errorf("the damaged %s is not reported: %+v", name, s.MetaDamage())
}

// intact checks that both laptops' snapshots list and restore byte for
// byte.
func (fx *daFix) intact(t *testing.T, s *Store) {
	t.Helper()
	for _, c := range []struct {
		u   *User
		sn  *Snapshot
		src string
	}{{fx.a, fx.snA, fx.srcA}, {fx.b, fx.snB, fx.srcB}} {
		var found *Snapshot
		for _, sn := range s.Snapshots(c.u.ID) {
			if sn.ID == c.sn.ID {
				found = sn
			}
		}
		if found == nil {
			t.Errorf("laptop %s's snapshot %s is no longer listed (%v)", c.u.Serial, c.sn.ID, s.Snapshots(c.u.ID))
			continue
		}
		out := t.TempDir()
		res, err := s.Restore(context.Background(), found, out, RestoreOptions{})
		if err != nil {
			t.Errorf("restore of %s's %s: %v", c.u.Serial, c.sn.ID, err)
			continue
		}
		if len(res.Damaged) > 0 {
			t.Errorf("restore of %s's %s left files out: %v", c.u.Serial, c.sn.ID, res.Damaged)
		}
		if err := dircmp.Compare(c.src, out, backup.JournalExclude); err != nil {
			t.Errorf("restore of %s's %s differs: %v", c.u.Serial, c.sn.ID, err)
		}
	}
}

// wrongTypes gives every top-level field of a JSON object a value of
// another type.
func wrongTypes(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		switch v.(type) {
		case string:
			m[k] = 12345
		case float64:
			m[k] = "many"
		case bool:
			m[k] = "yes"
		case map[string]any:
			m[k] = []any{1, 2}
		default:
			m[k] = map[string]any{"x": true}
		}
	}
	out, _ := json.Marshal(m)
	return out
}

var daKinds = []string{"truncated", "flipped", "wrong-types", "100MB", "directory", "symlink-dev-zero", "named-pipe"}

// damageFile replaces path by the kind of damage; it returns what lets an
// Open blocked on it go (a writer for a named pipe), or nil.
func damageFile(t *testing.T, path, kind string) (unblock func()) {
	t.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "truncated":
		err = os.WriteFile(path, orig[:len(orig)/2], 0o640)
	case "flipped":
		for i := len(orig) / 3; i < len(orig)/3+16 && i < len(orig); i++ {
			orig[i] ^= 0x5a
		}
		err = os.WriteFile(path, orig, 0o640)
	case "wrong-types":
		err = os.WriteFile(path, wrongTypes(t, orig), 0o640)
	case "100MB":
		var f *os.File
		if f, err = os.Create(path); err == nil {
			f.Write(orig)
			err = f.Truncate(100 << 20)
			f.Close()
		}
	case "directory":
		if err = os.Mkdir(path, 0o750); err == nil {
			err = os.WriteFile(filepath.Join(path, "x"), orig, 0o640)
		}
	case "symlink-dev-zero":
		err = os.Symlink("/dev/zero", path)
	case "named-pipe":
		if err = syscall.Mkfifo(path, 0o640); err == nil {
			return func() {
				if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
		}
	default:
		t.Fatalf("unknown damage %s", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return nil
}

// putBack replaces whatever is at path by the pristine store's file.
func (fx *daFix) putBack(t *testing.T, dir, name string) {
	t.Helper()
	os.RemoveAll(filepath.Join(dir, name))
	b, err := os.ReadFile(filepath.Join(fx.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestDecAttackStoreConfig: xs-store.json damaged each way. Expect Open
// to refuse within 6 s with an error naming xs-store.json (or, for
// flipped bytes that still decode, to open with the same chunker
// parameters), without writing anything: with the file put back, both
// laptops' snapshots list and restore.
func TestDecAttackStoreConfig(t *testing.T) {
	fx := daBuild(t)
	for _, kind := range daKinds {
		t.Run(kind, func(t *testing.T) {
			dir := fx.clone(t)
			unblock := damageFile(t, filepath.Join(dir, configName), kind)
			s, err := fx.open(t, dir, unblock)
			if err == nil {
				if kind != "flipped" || s.Params() != s.cfg.Params {
					t.Fatalf("a store whose %s is %s opened", configName, kind)
				}
				fx.intact(t, s)
				return
			}
			if !strings.Contains(err.Error(), configName) {
				t.Errorf("the error does not name %s: %v", configName, err)
			}
			fx.putBack(t, dir, configName)
			s, err = fx.open(t, dir, nil)
			if err != nil {
				t.Fatalf("with %s put back: %v", configName, err)
			}
			fx.intact(t, s)
		})
	}
}

// TestDecAttackStoreConfigWithoutChunker: xs-store.json whose chunker
// settings are missing (a hand edit, a cut that kept valid JSON) or out of
// range. Every laptop must cut with the store's parameters: expect Open to
// refuse with an error naming xs-store.json, not a store that opens and
// fails every laptop's backup with a chunker error.
func TestDecAttackStoreConfigWithoutChunker(t *testing.T) {
	fx := daBuild(t)
	for _, c := range []struct {
		name string
		edit func(m map[string]any)
	}{
		{"missing", func(m map[string]any) { delete(m, "chunker") }},
		{"zeroed", func(m map[string]any) { m["chunker"] = map[string]any{} }},
		{"min-over-max", func(m map[string]any) {
			p := m["chunker"].(map[string]any)
			p["min_size"], p["max_size"] = 1<<22, 1<<12
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := fx.clone(t)
			path := filepath.Join(dir, configName)
			b, _ := os.ReadFile(path)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m)
			b, _ = json.Marshal(m)
			os.WriteFile(path, b, 0o640)
			s, err := fx.open(t, dir, nil)
			if err == nil {
				// What the laptops then meet: every backup fails.
				tg := s.Target(fx.a.ID, CommitInfo{})
				_, berr := backup.Run(context.Background(), fx.srcA, tg, backup.Options{Params: s.Params(), Exclude: backup.JournalExclude})
				t.Fatalf("a store whose %s has chunker settings %v opened (parameters %+v); a laptop's backup then: %v", configName, m["chunker"], s.Params(), berr)
			}
			if !strings.Contains(err.Error(), configName) {
				t.Errorf("the error does not name %s: %v", configName, err)
			}
		})
	}
}

// TestDecAttackUserFile: laptop A's users/ID.json damaged each way (its
// copy intact). Expect Open to succeed within 6 s, A restored from the
// copy with its serial, key and approval, the damage reported, and both
// laptops' snapshots restored; the next Open is clean too.
func TestDecAttackUserFile(t *testing.T) {
	fx := daBuild(t)
	name := userFile(fx.a.ID)
	for _, kind := range daKinds {
		t.Run(kind, func(t *testing.T) {
			dir, s := fx.openDamaged(t, name, kind)
			u, err := s.UserBySerial(fx.a.Serial)
			if err != nil || u.ID != fx.a.ID || !u.Approved || len(u.PublicKey) != 32 {
				t.Fatalf("laptop A after its user file was %s: %+v %v", kind, u, err)
			}
			daReported(t, s, name)
			fx.intact(t, s)
			s.Close()
			s, err = fx.open(t, dir, nil)
			if err != nil {
				t.Fatalf("the next Open: %v", err)
			}
			if u, err := s.UserBySerial(fx.a.Serial); err != nil || u.ID != fx.a.ID {
				t.Fatalf("laptop A at the next Open: %+v %v", u, err)
			}
			fx.intact(t, s)
		})
	}
}

// TestDecAttackUserCopy: laptop A's users/ID.json.copy damaged each way
// (its file intact). Expect Open to succeed within 6 s with A unchanged
// and both laptops' snapshots restored.
func TestDecAttackUserCopy(t *testing.T) {
	fx := daBuild(t)
	name := userCopy(fx.a.ID)
	for _, kind := range daKinds {
		t.Run(kind, func(t *testing.T) {
			_, s := fx.openDamaged(t, name, kind)
			if u, err := s.UserBySerial(fx.a.Serial); err != nil || u.ID != fx.a.ID || !u.Approved {
				t.Fatalf("laptop A after its user copy was %s: %+v %v", kind, u, err)
			}
			fx.intact(t, s)
		})
	}
}

// TestDecAttackUserFileAndCopy: both of laptop A's user files damaged.
// Expect Open to succeed with A's backups kept under the placeholder
// "damaged-ID", a problem reported by Check, and laptop B untouched.
func TestDecAttackUserFileAndCopy(t *testing.T) {
	fx := daBuild(t)
	for _, kind := range []string{"truncated", "directory", "symlink-dev-zero", "100MB"} {
		t.Run(kind, func(t *testing.T) {
			dir := fx.clone(t)
			damageFile(t, filepath.Join(dir, userFile(fx.a.ID)), kind)
			damageFile(t, filepath.Join(dir, userCopy(fx.a.ID)), kind)
			s, err := fx.open(t, dir, nil)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			ph, err := s.UserBySerial("damaged-" + fx.a.ID.String())
			if err != nil || ph.ID != fx.a.ID {
				t.Fatalf("placeholder: %+v %v", ph, err)
			}
			rep, err := s.Check(context.Background(), CheckOptions{})
			if err != nil || rep.OK() {
				t.Errorf("check with laptop A's user lost: %v, problems %+v", err, rep)
			}
			fx.intact(t, s)
		})
	}
}

// TestDecAttackSnapshotFile: laptop A's snapshot file damaged each way.
// Expect Open to succeed within 6 s, the snapshot rebuilt from the index
// and reported, and both laptops' snapshots restored, also at the next
// Open.
func TestDecAttackSnapshotFile(t *testing.T) {
	fx := daBuild(t)
	name := snapFile(fx.a.ID, fx.snA.ID)
	for _, kind := range daKinds {
		t.Run(kind, func(t *testing.T) {
			dir, s := fx.openDamaged(t, name, kind)
			daReported(t, s, name)
			fx.intact(t, s)
			s.Close()
			s, err := fx.open(t, dir, nil)
			if err != nil {
				t.Fatalf("the next Open: %v", err)
			}
			fx.intact(t, s)
		})
	}
}

// TestDecAttackNumberingMark: snapshots/numbered.json damaged each way.
// Expect Open to succeed within 6 s with every snapshot keeping its
// number, and both laptops' snapshots restored.
func TestDecAttackNumberingMark(t *testing.T) {
	fx := daBuild(t)
	for _, kind := range daKinds {
		t.Run(kind, func(t *testing.T) {
			_, s := fx.openDamaged(t, numberingMark, kind)
			for _, want := range []*Snapshot{fx.snA, fx.snB} {
				l := s.Snapshots(want.User)
				if len(l) != 1 || l[0].Seq != want.Seq {
					t.Errorf("user %s: %v, want %s numbered %d", want.User, l, want.ID, want.Seq)
				}
			}
			fx.intact(t, s)
		})
	}
}

// TestDecAttackTreeCopyHugeLength: the index's copy of laptop A's root
// tree says its tree is 4 GiB (compressed), and the tree's record in its
// pack is damaged, so a read falls back to the copy. Expect the restore
// of A's snapshot to fail or report the damage within 10 s with bounded
// memory, never a panic; Check to name the damaged tree; laptop B's
// snapshot to restore byte for byte.
func TestDecAttackTreeCopyHugeLength(t *testing.T) {
	fx := daBuild(t)
	dir := fx.clone(t)
	s, err := fx.open(t, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := blob.Ref{Type: blob.Tree, ID: fx.snA.Root}
	var o objRec
	err = s.dbUpdate(func(txn *badger.Txn) error {
		v, ok, err := get(txn, copyKey(root.ID))
		if err != nil || !ok || len(v) < 5 {
			return errors.Join(err, errors.New("no copy of the root tree"))
		}
		v[0] |= pack.FlagZstd
		binary.LittleEndian.PutUint32(v[1:], 1<<32-1)
		if err := txn.Set(copyKey(root.ID), v); err != nil {
			return err
		}
		b, _, err := get(txn, objKey(root))
		if err != nil {
			return err
		}
		o, err = decodeObj(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	f := filepath.Join(dir, pack.Name(o.Pack))
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	at := int(o.Off) + pack.RecordHeaderLen + int(o.Stored)/2
	for i := at; i < at+16 && i < int(o.Off)+pack.RecordHeaderLen+int(o.Stored); i++ {
		b[i] ^= 0xa5
	}
	os.WriteFile(f, b, 0o640)

	if s, err = fx.open(t, dir, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var used uint64
	var rerr error
	go func() {
		defer close(done)
		used = allocated(func() {
			out := t.TempDir()
			var res *RestoreResult
			res, rerr = s.Restore(context.Background(), s.Snapshots(fx.a.ID)[0], out, RestoreOptions{})
			if rerr == nil && len(res.Damaged) == 0 {
				rerr = errors.New("restored whole")
			} else {
				rerr = nil
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the restore of a snapshot whose root tree is damaged did not end in 10 s")
	}
	if rerr != nil {
		t.Errorf("restore of a snapshot whose root tree and its copy are damaged: %v", rerr)
	}
	if used > 64<<20 {
		t.Errorf("the restore allocated %d MiB", used>>20)
	}
	rep, err := s.Check(context.Background(), CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, p := range rep.Problems {
		named = named || p.Snapshot == fx.snA.ID || strings.Contains(p.Ref+p.Detail, root.ID.String())
	}
	if rep.OK() || !named {
		t.Errorf("check does not name the damaged tree: %+v", rep.Problems)
	}
	// Laptop B is untouched.
	out := t.TempDir()
	if _, err := s.Restore(context.Background(), s.Snapshots(fx.b.ID)[0], out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dircmp.Compare(fx.srcB, out, backup.JournalExclude); err != nil {
		t.Errorf("laptop B's restore differs: %v", err)
	}
}
