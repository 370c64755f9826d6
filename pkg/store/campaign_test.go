package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The damage campaign (issue "damage never spreads"): a store built by real
// backups of several laptops over a few nights is copied; in each copy a
// seeded position is damaged (bytes flipped or zeroed in a pack, a pack
// truncated, bytes flipped in the Badger index, a snapshot or user file
// damaged); then the exact sequence staff would run follows: start the
// store, check --read-data, the command check advises (repair when the
// index is reported inconsistent or will not open), the nightly lifecycle
// (retention, scrub, GC with compaction), the laptops' next backups, check
// again, restores of every snapshot. It asserts, per position:
//
//   - chunks lost beyond the damage = 0: every blob a snapshot referenced
//     before the damage and whose own record was not damaged still reads
//     back intact;
//   - every damaged blob that a laptop still has (its current Journal) is
//     healed by its next backup, for every snapshot that uses it;
//   - restores write every other file byte for byte and name the ones they
//     leave out; never a wrong byte.
//
// XS_CAMPAIGN=N runs N positions (default 24; RELIABILITY.md reports a long run).

const campaignPackSize = 96 << 10

type campaignLaptop struct {
	serial string
	user   store.UserID
	src    string
	cache  string // saved file cache
}

type campaignSnap struct {
	user  store.UserID
	id    store.SnapshotID
	files map[string][]byte // what the snapshot must restore to
}

type pristine struct {
	dir     string
	laptops []campaignLaptop
	snaps   []campaignSnap
	// blobs referenced by any snapshot (chunks and trees)
	blobs map[blob.Ref]bool
	// records of each pack: offset, end, blob
	packs map[string][]packRec
	at    time.Time
}

type packRec struct {
	off, end int64
	ref      blob.Ref
}

func TestDamageCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("damage campaign: not in -short")
	}
	n := 24
	if v, err := strconv.Atoi(os.Getenv("XS_CAMPAIGN")); err == nil && v > 0 {
		n = v
	}
	p := buildPristine(t)
	r := rand.New(rand.NewPCG(2026, 12))
	kinds := []string{"pack-flip", "pack-flip", "pack-flip", "pack-zero", "pack-trunc", "index", "index", "snapfile", "userfile"}
	var tot campaignTotals
	for i := 0; i < n; i++ {
		kind := kinds[i%len(kinds)]
		seed := r.Uint64()
		t.Run(fmt.Sprintf("%02d-%s", i, kind), func(t *testing.T) {
			runPosition(t, p, kind, seed, &tot)
		})
	}
	t.Logf("damage campaign: %d positions; %d blobs damaged; %d healed by the next backups; %d left damaged (only in old snapshots); chunks lost beyond the damage: %d; repairs run: %d; files restored %d, left out and named %d",
		n, tot.damaged, tot.healed, tot.unhealed, tot.lostBeyond, tot.repairs, tot.filesOK, tot.filesOut)
	if tot.lostBeyond != 0 {
		t.Fatalf("%d chunks lost beyond the damage", tot.lostBeyond)
	}
}

type campaignTotals struct {
	damaged, healed, unhealed, lostBeyond, repairs, filesOK, filesOut int
}

func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && backup.JournalExclude(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[rel] = b
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func buildPristine(t *testing.T) *pristine {
	ctx := context.Background()
	base := t.TempDir()
	p := &pristine{dir: filepath.Join(base, "store"), blobs: map[blob.Ref]bool{}, packs: map[string][]packRec{}}
	clk := newClock()
	s, err := store.Open(ctx, p.dir, store.Options{Reserve: -1, PackSize: campaignPackSize, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	caches := map[int]*backup.Cache{}
	for i := 0; i < 4; i++ {
		l := campaignLaptop{serial: fmt.Sprintf("CAMP%d", i), src: filepath.Join(base, fmt.Sprintf("laptop%d", i)), cache: filepath.Join(base, fmt.Sprintf("cache%d", i))}
		o := journalgen.Small(uint64(i + 1))
		o.Entries = 8
		if _, err := journalgen.Generate(l.src, o); err != nil {
			t.Fatal(err)
		}
		l.user = addUser(t, s, l.serial).ID
		p.laptops = append(p.laptops, l)
		caches[i] = backup.NewCache()
	}
	for night := 0; night < 3; night++ {
		for i, l := range p.laptops {
			if night > 0 {
				// A new document, an edit, and (on one laptop) a deletion: old
				// snapshots then hold data no laptop has any more.
				ds := filepath.Join(l.src, "datastore", fmt.Sprintf("n%d", night))
				os.MkdirAll(ds, 0o755)
				buf := make([]byte, 2000+r.IntN(60000))
				for k := range buf {
					buf[k] = byte(r.IntN(256))
				}
				os.WriteFile(filepath.Join(ds, "data"), buf, 0o644)
				os.WriteFile(filepath.Join(ds, "title"), []byte(fmt.Sprintf("night %d of %s", night, l.serial)), 0o644)
				if i == 0 {
					os.RemoveAll(filepath.Join(l.src, "datastore", fmt.Sprintf("n%d", night-1)))
				}
			}
			u, _ := s.User(l.user)
			_, sn := backupDir(t, s, u, l.src, caches[i])
			p.snaps = append(p.snaps, campaignSnap{user: l.user, id: sn.ID, files: readTree(t, l.src)})
			clk.Add(time.Hour)
		}
		clk.Add(22 * time.Hour)
	}
	for i, l := range p.laptops {
		if err := caches[i].Save(l.cache); err != nil {
			t.Fatal(err)
		}
	}
	for _, cs := range p.snaps {
		sn, err := s.Snapshot(cs.user, cs.id)
		if err != nil {
			t.Fatal(err)
		}
		p.blobs[blob.Ref{Type: blob.Tree, ID: sn.Root}] = true
		err = s.Walk(ctx, sn.Root, func(_ string, e *manifest.Entry) error {
			if e.Type == manifest.Dir {
				p.blobs[blob.Ref{Type: blob.Tree, ID: e.Subtree}] = true
			}
			for _, id := range e.Chunks {
				p.blobs[blob.Ref{Type: blob.Chunk, ID: id}] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	p.at = clk.Now()
	checkClean(t, s)
	s.Close()
	packs, _ := filepath.Glob(filepath.Join(p.dir, "packs", "*", "*.pack"))
	for _, f := range packs {
		b, _ := os.ReadFile(f)
		rel, _ := filepath.Rel(p.dir, f)
		for off := 16; off+52 <= len(b); {
			stored := int(binary.LittleEndian.Uint32(b[off+8:]))
			var r blob.Ref
			r.Type = blob.Type(b[off+4])
			copy(r.ID[:], b[off+16:off+48])
			p.packs[rel] = append(p.packs[rel], packRec{int64(off), int64(off + 52 + stored), r})
			off += 52 + stored
		}
	}
	if len(p.packs) < 4 {
		t.Fatalf("only %d packs: the campaign needs several", len(p.packs))
	}
	return p
}

func copyDir(t testing.TB, from, to string) {
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
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// damage applies one seeded damage to the store in dir and returns the blobs
// whose records it touched.
func damage(t *testing.T, p *pristine, dir, kind string, seed uint64) (map[blob.Ref]bool, string) {
	r := rand.New(rand.NewPCG(seed, 1))
	hit := map[blob.Ref]bool{}
	pick := func(pattern string) string {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		sort.Strings(files)
		if len(files) == 0 {
			t.Fatalf("no %s to damage", pattern)
		}
		return files[r.IntN(len(files))]
	}
	overlap := func(rel string, a, b int64) {
		for _, rec := range p.packs[rel] {
			if rec.off < b && a < rec.end {
				hit[rec.ref] = true
			}
		}
	}
	switch kind {
	case "pack-flip", "pack-zero":
		f := pick("packs/*/*.pack")
		b, _ := os.ReadFile(f)
		n := 1 + r.IntN(16)
		off := r.IntN(len(b) - n)
		for i := off; i < off+n; i++ {
			if kind == "pack-zero" {
				b[i] = 0
			} else {
				b[i] ^= byte(1 + r.IntN(255))
			}
		}
		os.WriteFile(f, b, 0o644)
		rel, _ := filepath.Rel(dir, f)
		overlap(rel, int64(off), int64(off+n))
		return hit, fmt.Sprintf("%s: %d bytes at %d", rel, n, off)
	case "pack-trunc":
		f := pick("packs/*/*.pack")
		st, _ := os.Stat(f)
		at := r.Int64N(st.Size())
		os.Truncate(f, at)
		rel, _ := filepath.Rel(dir, f)
		overlap(rel, at, st.Size())
		return hit, fmt.Sprintf("%s: truncated at %d of %d", rel, at, st.Size())
	case "index":
		var files []string
		filepath.WalkDir(filepath.Join(dir, "index"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if st, _ := d.Info(); st != nil && st.Size() > 32 {
					files = append(files, p)
				}
			}
			return nil
		})
		sort.Strings(files)
		f := files[r.IntN(len(files))]
		b, _ := os.ReadFile(f)
		off := r.IntN(len(b) - 16)
		for i := off; i < off+16; i++ {
			b[i] ^= 0xff
		}
		os.WriteFile(f, b, 0o644)
		return hit, fmt.Sprintf("index file %s: 16 bytes at %d", filepath.Base(f), off)
	case "snapfile":
		f := pick("snapshots/*/*.json")
		b, _ := os.ReadFile(f)
		os.WriteFile(f, b[:r.IntN(len(b))], 0o644)
		return hit, "snapshot file " + filepath.Base(f) + " truncated"
	case "userfile":
		f := pick("users/*.json")
		b, _ := os.ReadFile(f)
		b[r.IntN(len(b))] = '{'
		os.WriteFile(f, b, 0o644)
		return hit, "user file " + filepath.Base(f) + " damaged"
	}
	t.Fatalf("unknown damage %s", kind)
	return nil, ""
}

func runPosition(t *testing.T, p *pristine, kind string, seed uint64, tot *campaignTotals) {
	ctx := context.Background()
	dir := t.TempDir()
	copyDir(t, p.dir, dir)
	hit, what := damage(t, p, dir, kind, seed)
	// Only the blobs snapshots used count as damage; a damaged garbage
	// record loses nothing.
	dmg := map[blob.Ref]bool{}
	for r := range hit {
		if p.blobs[r] {
			dmg[r] = true
		}
	}
	t.Logf("%s: damages %d referenced blob(s)", what, len(dmg))
	now := p.at.Add(2 * time.Hour)
	opts := store.Options{Reserve: -1, PackSize: campaignPackSize, Now: func() time.Time { return now }, ScrubDays: 1}

	// 1. Start (as the daemon would). An index that will not open is the one
	// failure the advice (check --repair) is for.
	repaired := false
	repair := func(why string) {
		t.Logf("advised: check --repair (%s)", why)
		rs, err := store.OpenForRepair(ctx, dir, opts)
		if err != nil {
			t.Fatalf("repair cannot open the store: %v", err)
		}
		rep, err := rs.Repair(ctx)
		if err != nil {
			t.Fatalf("repair: %v", err)
		}
		rs.Close()
		t.Logf("repair: %+v", *rep)
		repaired = true
		tot.repairs++
	}
	s, err := store.Open(ctx, dir, opts)
	if errors.Is(err, store.ErrIndexDamaged) {
		repair(err.Error())
		s, err = store.Open(ctx, dir, opts)
	}
	if err != nil {
		t.Fatalf("the store does not start after %s: %v", what, err)
	}
	// 2. check --read-data, and what it advises.
	rep, err := s.Check(ctx, store.CheckOptions{ReadData: true})
	if err != nil || rep.IndexProblems > 0 {
		if repaired {
			t.Fatalf("check after repair: %v %+v", err, rep)
		}
		s.Close()
		why := fmt.Sprint(err)
		if err == nil {
			why = fmt.Sprintf("%d index problem(s)", rep.IndexProblems)
		}
		repair(why)
		if s, err = store.Open(ctx, dir, opts); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Close()
	// 3. The nightly lifecycle (scrub of every pack, GC with compaction).
	now = now.Add(time.Hour)
	if _, err := s.Lifecycle(ctx, store.LifecycleOptions{}); err != nil && !repaired {
		t.Fatalf("lifecycle: %v", err)
	}
	if _, err := s.GC(ctx, store.GCOptions{CompactBelow: 1}); err != nil {
		t.Fatalf("gc: %v", err)
	}
	// 4. Each laptop's next backup (its Journal unchanged since its last one).
	current := map[blob.Ref]bool{}
	for _, l := range p.laptops {
		u, err := s.User(l.user)
		if err != nil {
			t.Fatalf("laptop %s's user is gone: %v", l.serial, err)
		}
		if u.Revoked || !u.Approved {
			// A user file rebuilt as a placeholder waits for staff: give it its
			// serial back as they would, then approve it.
			if _, err := s.UpdateUser(ctx, u.ID, func(u *store.User) error { u.Approved, u.Revoked = true, false; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		cache, err := backup.LoadCache(l.cache)
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
		tg := s.Target(l.user, store.CommitInfo{Source: l.src})
		if _, err := backup.Run(ctx, l.src, tg, backup.Options{Params: s.Params(), Cache: cache, Exclude: backup.JournalExclude}); err != nil {
			t.Fatalf("laptop %s's next backup fails after %s: %v", l.serial, what, err)
		}
		sn := tg.Last()
		current[blob.Ref{Type: blob.Tree, ID: sn.Root}] = true
		s.Walk(ctx, sn.Root, func(_ string, e *manifest.Entry) error {
			if e.Type == manifest.Dir {
				current[blob.Ref{Type: blob.Tree, ID: e.Subtree}] = true
			}
			for _, id := range e.Chunks {
				current[blob.Ref{Type: blob.Chunk, ID: id}] = true
			}
			return nil
		})
	}
	// 5. Nothing beyond the damage is lost; what the laptops still have is healed.
	for r := range p.blobs {
		_, err := s.ReadBlob(ctx, r)
		switch {
		case err == nil && dmg[r]:
			tot.healed++
		case err == nil:
		case dmg[r] && !current[r]:
			tot.unhealed++
		case dmg[r]:
			t.Errorf("damaged %s is in a laptop's Journal but was not healed by its backup: %v", r, err)
		default:
			tot.lostBeyond++
			t.Errorf("LOST beyond the damage: %s (%v)", r, err)
		}
	}
	tot.damaged += len(dmg)
	// 6. Every snapshot restores: every file whose blobs are intact byte for
	// byte, the others left out and named.
	for _, cs := range p.snaps {
		sn, err := s.Snapshot(cs.user, cs.id)
		if err != nil {
			t.Errorf("snapshot %s is gone: %v", cs.id, err)
			continue
		}
		out := t.TempDir()
		res, rerr := s.Restore(ctx, sn, out, store.RestoreOptions{})
		if rerr != nil && !errors.Is(rerr, blob.ErrDamaged) {
			t.Errorf("restore %s: %v", cs.id, rerr)
			continue
		}
		if res == nil {
			// Its root tree is damaged: nothing of it can be listed. That is
			// only acceptable when no laptop could heal it.
			root := blob.Ref{Type: blob.Tree, ID: sn.Root}
			if !dmg[root] || current[root] {
				t.Errorf("restore %s fails as a whole (%v) though its root was not damaged or was healable", cs.id, rerr)
			}
			tot.filesOut += len(cs.files)
			continue
		}
		named := map[string]bool{}
		if res != nil {
			for _, d := range res.Damaged {
				named[d.Path] = true
			}
		}
		got := readTree(t, out)
		for name, want := range cs.files {
			b, ok := got[name]
			if ok {
				if !bytes.Equal(b, want) {
					t.Errorf("snapshot %s: %s restored with wrong bytes", cs.id, name)
				}
				tot.filesOK++
				continue
			}
			if !namedOrParent(named, name) {
				t.Errorf("snapshot %s: %s neither restored nor named", cs.id, name)
			}
			tot.filesOut++
		}
		for name := range got {
			if _, ok := cs.files[name]; !ok {
				t.Errorf("snapshot %s: restore wrote %s, which it never held", cs.id, name)
			}
		}
	}
	// 7. The store checks clean but for what could not be healed.
	rep, err = s.Check(ctx, store.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range rep.Problems {
		if pr.Kind != "damaged" && pr.Kind != "snapshot" && pr.Kind != "metadata" {
			t.Errorf("check at the end: %+v", pr)
		}
	}
}

func namedOrParent(named map[string]bool, name string) bool {
	for p := name; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if named[p] {
			return true
		}
	}
	for n := range named {
		if strings.HasPrefix(name, n+"/") {
			return true
		}
	}
	return false
}
