package offsite

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/offsite/bundle"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The registry records of a recovery bundle (store.json, users.json, the
// registry number, the laptop switches and the commits list) are decoded
// by Recover when a school server is rebuilt. Bundles here are made with
// the package's own encoders (MakeKit, WriteRegistry, the commits record
// as writeRecovery writes it) and signed by a real mothership key; one
// record is then replaced.

const regSchool = "school-dec"

// regFix holds everything a recovery bundle of one laptop is made of.
type regFix struct {
	records    [][2][]byte // name, data, in bundle order (blobs after "laptop")
	blobs      []blob.Blob
	mkey       ed25519.PrivateKey
	pass       string
	src        string
	user       *store.User
	base       uint64 // bytes a recovery from the real bundle allocates
	snapOrigin manifest.Origin
}

// regNames are the records that may be replaced, by index.
var regNames = []string{RegStore, RegUsers, metaRegistrySeq, metaLaptop, metaCommits}

func regFixture(tb testing.TB) *regFix {
	tb.Helper()
	ctx := context.Background()
	fx := &regFix{}
	dir := tb.TempDir()
	st, err := store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	defer ForgetState(dir)
	key, err := proto.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), proto.EncodeKey(key), 0o600); err != nil {
		tb.Fatal(err)
	}
	k, err := MakeKit(dir, regSchool, key)
	if err != nil {
		tb.Fatal(err)
	}
	fx.pass = k.Passphrase
	if fx.user, err = st.AddUser(ctx, store.NewUser{Serial: "SHCDEC01", Nickname: "ana", Approved: true, PublicKey: bytes.Repeat([]byte{9}, 32)}); err != nil {
		tb.Fatal(err)
	}
	fx.src = tb.TempDir()
	o := journalgen.Small(5)
	o.Entries = 3
	if _, err := journalgen.Generate(fx.src, o); err != nil {
		tb.Fatal(err)
	}
	tg := st.Target(fx.user.ID, store.CommitInfo{})
	if _, err := backup.Run(ctx, fx.src, tg, backup.Options{Params: st.Params(), Exclude: backup.JournalExclude}); err != nil {
		tb.Fatal(err)
	}
	sn := tg.Last()
	reg := tb.TempDir()
	if err := WriteRegistry(reg, st, regSchool, dir); err != nil {
		tb.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(reg, name))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	for _, name := range []string{RegSealed, RegPub, RegStore, RegUsers} {
		fx.records = append(fx.records, [2][]byte{[]byte(name), read(name)})
	}
	fx.records = append(fx.records, [2][]byte{[]byte(metaRegistrySeq), []byte("3")},
		[2][]byte{[]byte(metaLaptop), []byte(strconv.FormatUint(uint64(fx.user.ID), 10))})
	if err := eachBlob(ctx, st, sn.Root, map[blob.Ref]bool{}, func(r blob.Ref) error {
		b, err := st.ReadStored(ctx, r)
		fx.blobs = append(fx.blobs, b)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	fx.snapOrigin = manifest.Origin{User: uint64(fx.user.ID), Serial: fx.user.Serial, Snapshot: string(sn.ID), Time: sn.Time, Seq: sn.Seq}
	orig := fx.snapOrigin
	commits, _ := json.Marshal([]commitRec{{User: uint64(fx.user.ID), Root: sn.Root, Info: manifest.CommitInfo{Origin: &orig}}})
	fx.records = append(fx.records, [2][]byte{[]byte(metaCommits), commits})
	if _, fx.mkey, err = ed25519.GenerateKey(nil); err != nil {
		tb.Fatal(err)
	}
	// The baseline: a recovery from the bundle as made.
	var res *RecoverResult
	fx.base = regAllocated(func() { res, _, err = fx.recover(tb, "", nil) })
	if err != nil || res.Users != 1 || res.Snapshots != 1 {
		tb.Fatalf("recovery from the real bundle: %+v %v", res, err)
	}
	return fx
}

func regAllocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// record returns the data of the named record as made.
func (fx *regFix) record(name string) []byte {
	for _, r := range fx.records {
		if string(r[0]) == name {
			return r[1]
		}
	}
	return nil
}

// recover writes the bundle with record name's data replaced by data
// (name "": as made), signed by the mothership, and rebuilds a server from
// it into a new data directory, which it returns.
func (fx *regFix) recover(tb testing.TB, name string, data []byte) (*RecoverResult, string, error) {
	tb.Helper()
	out := tb.TempDir()
	fw, err := bundle.CreateFiles(out, "xs-recovery-"+regSchool, 0,
		bundle.Header{Kind: bundle.KindRecovery, For: regSchool, Created: time.Now().UTC()}, fx.mkey)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range fx.records {
		d := r[1]
		if string(r[0]) == name {
			d = data
		}
		if err := fw.Meta(string(r[0]), d); err != nil {
			tb.Fatal(err)
		}
		if string(r[0]) == metaLaptop {
			for _, b := range fx.blobs {
				if err := fw.Blob(b); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	paths, err := fw.Close()
	if err != nil {
		tb.Fatal(err)
	}
	dataDir := filepath.Join(tb.TempDir(), "data")
	defer ForgetState(dataDir)
	res, err := Recover(context.Background(), RecoverOptions{DataDir: dataDir, Paths: paths, Mothership: fx.mkey.Public().(ed25519.PublicKey),
		School: regSchool, Passphrase: fx.pass, Store: store.Options{Reserve: -1}})
	return res, dataDir, err
}

// checkRecovered checks what a recovery that succeeded rebuilt: the
// laptop with its key, and its snapshot restoring byte for byte.
func (fx *regFix) checkRecovered(tb testing.TB, dataDir string) {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dataDir, store.Options{Reserve: -1, Existing: true})
	if err != nil {
		tb.Fatalf("the rebuilt store does not open: %v", err)
	}
	defer st.Close()
	defer ForgetState(dataDir)
	u, err := st.UserBySerial(fx.user.Serial)
	if err != nil || u.ID != fx.user.ID || !bytes.Equal(u.PublicKey, fx.user.PublicKey) {
		tb.Fatalf("the rebuilt laptop: %+v %v", u, err)
	}
	l := st.Snapshots(u.ID)
	if len(l) != 1 {
		tb.Fatalf("%d snapshots rebuilt", len(l))
	}
	out := tb.TempDir()
	if _, err := st.Restore(ctx, l[0], out, store.RestoreOptions{}); err != nil {
		tb.Fatal(err)
	}
	if err := dircmp.Compare(fx.src, out, backup.JournalExclude); err != nil {
		tb.Fatalf("the rebuilt snapshot differs: %v", err)
	}
}

// FuzzDecRecoveryRecord: one registry record of a signed recovery bundle
// (which selects store.json, users.json, the registry number, the laptop
// switch or the commits list) holds anything. Recover never panics,
// allocates no more than a recovery of the real bundle plus its records'
// size, and a failure leaves the new data directory empty (ready for the
// next try); the records as the package encodes them rebuild the laptop
// and its snapshot.
func FuzzDecRecoveryRecord(f *testing.F) {
	fx := regFixture(f)
	f.Add(uint8(1), fx.record(RegUsers))
	f.Add(uint8(0), []byte(`{"school": 5, "params": []}`))
	f.Add(uint8(1), []byte(`[null]`))
	f.Add(uint8(2), []byte("-1"))
	f.Add(uint8(3), []byte("0"))
	f.Add(uint8(4), []byte(`[{"user": "x"}]`))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		name := regNames[int(which)%len(regNames)]
		var res *RecoverResult
		var dataDir string
		var err error
		used := regAllocated(func() { res, dataDir, err = fx.recover(t, name, data) })
		if used > fx.base+uint64(8*len(data))+64<<20 {
			t.Errorf("a recovery with a %d-byte %s allocated %d MiB (the real bundle: %d MiB)", len(data), name, used>>20, fx.base>>20)
		}
		if err != nil {
			if left := dirEntries(dataDir); len(left) > 0 {
				t.Fatalf("a failed recovery (%v) left %v in the data directory", err, left)
			}
			if bytes.Equal(data, fx.record(name)) {
				t.Fatalf("the bundle as made does not recover: %v", err)
			}
			return
		}
		if res == nil {
			t.Fatal("no result and no error")
		}
		if bytes.Equal(data, fx.record(name)) {
			if res.Users != 1 || res.Snapshots != 1 {
				t.Fatalf("the bundle as made rebuilt %+v", res)
			}
			fx.checkRecovered(t, dataDir)
		}
	})
}

// TestDecAttackRecoveryRecords: a recovery bundle, signed by the
// mothership, whose registry records are hostile: wrong JSON types, cut
// short, a null laptop, a laptop without an ID or serial, a laptop twice,
// a negative or huge registry number, a laptop switch to user 0, a commits
// list of the wrong type or without an origin, chunker parameters no
// laptop can cut with. Expect each recovery to fail within 20 s with an
// error that says what is wrong (naming the record, or the laptop), never
// a panic, and to leave the data directory empty; the bundle as made then
// rebuilds the laptop and its snapshot.
func TestDecAttackRecoveryRecords(t *testing.T) {
	fx := regFixture(t)
	users := string(fx.record(RegUsers))
	for _, c := range []struct {
		name, record, data, want string
	}{
		{"store wrong types", RegStore, `{"school": 5, "params": []}`, RegStore},
		{"store cut", RegStore, string(fx.record(RegStore)[:10]), RegStore},
		{"store bad params", RegStore, `{"school": "` + regSchool + `", "params": {"polynomial": 1, "min_size": 4194304, "average_bits": 16, "max_size": 4096}}`, "chunker"},
		{"users wrong types", RegUsers, `{"id": 1}`, RegUsers},
		{"users cut", RegUsers, users[:len(users)/2], RegUsers},
		{"users null record", RegUsers, `[null]`, RegUsers},
		{"users no ID", RegUsers, `[{"serial": "SHCDEC02"}]`, "no ID"},
		{"users bad serial", RegUsers, `[{"id": 7, "serial": "../.."}]`, "serial"},
		{"users twice", RegUsers, "[" + strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(users), "["), "]") + `, {"id": 77, "serial": "SHCDEC01"}]`, "SHCDEC01"},
		{"registry number negative", metaRegistrySeq, "-1", "registry number"},
		{"registry number huge", metaRegistrySeq, "99999999999999999999999", "registry number"},
		{"laptop zero", metaLaptop, "0", "laptop record"},
		{"laptop text", metaLaptop, "ana", "laptop record"},
		{"commits wrong type", metaCommits, `{"user": 1}`, "list of snapshots"},
		{"commits no origin", metaCommits, `[{"user": ` + strconv.FormatUint(uint64(fx.user.ID), 10) + `, "root": "` + strings.Repeat("00", 32) + `", "info": {}}]`, "where it was made"},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan struct{})
			var err error
			var dataDir string
			go func() {
				defer close(done)
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("Recover panicked: %v", p)
					}
				}()
				_, dataDir, err = fx.recover(t, c.record, []byte(c.data))
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Recover did not return in 20 s")
			}
			if err == nil {
				t.Fatalf("a bundle whose %s is %q recovered", c.record, c.data)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("the error does not say %q: %v", c.want, err)
			}
			if left := dirEntries(dataDir); len(left) > 0 {
				t.Errorf("the failed recovery left %v in the data directory", left)
			}
		})
	}
	_, dataDir, err := fx.recover(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	fx.checkRecovered(t, dataDir)
}
