package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// Shared fixture of the S3 attack tests: two laptops backed up over two
// nights (the Journal changed in between, so the first night's snapshots
// hold data the laptops no longer have) into a store whose packs live in
// a real versitygw bucket.

type s3aSnap struct {
	user  store.UserID
	id    store.SnapshotID
	files map[string][]byte
	refs  map[blob.Ref]bool
}

type s3a struct {
	t      *testing.T
	srv    *s3test.Server
	prefix string
	dir    string
	remote store.Remote
	s      *store.Store
	users  []*store.User
	srcs   []string
	caches []*backup.Cache
	snaps  []s3aSnap
}

func (a *s3a) opts() store.Options {
	return store.Options{Reserve: -1, PackSize: 64 << 10, Remote: a.remote}
}

// newS3A builds the fixture; remote, if not nil, replaces the direct
// connection to the server (a proxy, a wrapper).
func newS3A(t *testing.T, remote func(srv *s3test.Server, prefix string) store.Remote) *s3a {
	t.Helper()
	srv := s3test.Start(t)
	a := &s3a{t: t, srv: srv, prefix: "atk", dir: t.TempDir()}
	if remote != nil {
		a.remote = remote(srv, a.prefix)
	} else {
		a.remote = srv.Remote(t, a.prefix)
	}
	a.open()
	t.Cleanup(a.close)
	for i, serial := range []string{"S3A-A", "S3A-B"} {
		u, err := a.s.AddUser(context.Background(), store.NewUser{Serial: serial, Approved: true})
		if err != nil {
			t.Fatal(err)
		}
		a.users = append(a.users, u)
		src := t.TempDir()
		o := journalgen.Small(uint64(51 + i))
		o.Entries = 6
		if _, err := journalgen.Generate(src, o); err != nil {
			t.Fatal(err)
		}
		a.srcs = append(a.srcs, src)
		a.caches = append(a.caches, backup.NewCache())
	}
	for night := 0; night < 2; night++ {
		for i := range a.users {
			if night > 0 {
				if err := journalgen.Mutate(a.srcs[i], uint64(51+i), night); err != nil {
					t.Fatal(err)
				}
			}
			sn := a.backup(i)
			a.snaps = append(a.snaps, s3aSnap{user: a.users[i].ID, id: sn.ID, files: readTree(t, a.srcs[i]), refs: a.refsOf(sn)})
		}
	}
	return a
}

func (a *s3a) open() {
	a.t.Helper()
	s, err := store.Open(context.Background(), a.dir, a.opts())
	if err != nil {
		a.t.Fatalf("open: %v", err)
	}
	a.s = s
}

func (a *s3a) close() {
	if a.s != nil {
		a.s.Close()
		a.s = nil
	}
}

// backup is laptop i's next run, its cache kept.
func (a *s3a) backup(i int) *store.Snapshot {
	a.t.Helper()
	tg := a.s.Target(a.users[i].ID, store.CommitInfo{})
	if _, err := backup.Run(context.Background(), a.srcs[i], tg, backup.Options{Params: a.s.Params(), Cache: a.caches[i], Exclude: backup.JournalExclude}); err != nil {
		a.t.Fatalf("backup of laptop %d: %v", i, err)
	}
	return tg.Last()
}

func (a *s3a) refsOf(sn *store.Snapshot) map[blob.Ref]bool {
	a.t.Helper()
	refs := map[blob.Ref]bool{{Type: blob.Tree, ID: sn.Root}: true}
	err := a.s.Walk(context.Background(), sn.Root, func(_ string, e *manifest.Entry) error {
		if e.Type == manifest.Dir {
			refs[blob.Ref{Type: blob.Tree, ID: e.Subtree}] = true
		}
		for _, id := range e.Chunks {
			refs[blob.Ref{Type: blob.Chunk, ID: id}] = true
		}
		return nil
	})
	if err != nil {
		a.t.Fatalf("walk %s: %v", sn.ID, err)
	}
	return refs
}

// allRefs lists every blob the fixture's snapshots use.
func (a *s3a) allRefs() map[blob.Ref]bool {
	all := map[blob.Ref]bool{}
	for _, sn := range a.snaps {
		for r := range sn.refs {
			all[r] = true
		}
	}
	return all
}

// current lists the blobs of each laptop's latest snapshot (what their
// next backups can heal).
func (a *s3a) current() map[blob.Ref]bool {
	cur := map[blob.Ref]bool{}
	for _, sn := range a.snaps[len(a.snaps)-len(a.users):] {
		for r := range sn.refs {
			cur[r] = true
		}
	}
	return cur
}

// objPath is the file behind a bucket object (versitygw posix backend).
func (a *s3a) objPath(name string) string {
	return filepath.Join(a.srv.Dir, a.srv.Bucket, a.prefix, filepath.FromSlash(name))
}

// packObjects lists the pack objects in the bucket, by sequence number.
func (a *s3a) packSeqs() []uint64 {
	var seqs []uint64
	for name := range a.srv.Objects(a.t, a.prefix+"/") {
		var seq uint64
		if _, err := fmt.Sscanf(name, "packs/%02x/%016x.pack", new(uint64), &seq); err == nil && pack.Name(seq) == name {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs
}

// blobsIn lists the blobs whose records are in pack seq's object.
func (a *s3a) blobsIn(seq uint64) map[blob.Ref]int64 {
	a.t.Helper()
	f, err := os.Open(a.objPath(pack.Name(seq)))
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	out := map[blob.Ref]int64{}
	_, err = pack.ScanReader(f, st.Size(), func(h pack.Header, off int64, _ []byte) error {
		out[blob.Ref{Type: h.Type, ID: h.ID}] = off
		return nil
	}, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	return out
}

// treePack picks the pack object holding the most trees the snapshots use
// (ties: the lowest number), and returns the used blobs it holds.
func (a *s3a) treePack() (uint64, map[blob.Ref]bool) {
	all := a.allRefs()
	best, bestN := uint64(0), -1
	var bestSet map[blob.Ref]bool
	for _, seq := range a.packSeqs() {
		n := 0
		set := map[blob.Ref]bool{}
		for r := range a.blobsIn(seq) {
			if all[r] {
				set[r] = true
				if r.Type == blob.Tree {
					n++
				}
			}
		}
		if n > bestN {
			best, bestN, bestSet = seq, n, set
		}
	}
	if bestN <= 0 {
		a.t.Fatalf("no pack holds a tree")
	}
	return best, bestSet
}

// checkAndAdvice is check --read-data and what it advises: --repair (the
// daemon stopped) for index problems, nothing else.
func (a *s3a) checkAndAdvice() (*store.CheckReport, bool) {
	a.t.Helper()
	rep, err := a.s.Check(context.Background(), store.CheckOptions{ReadData: true})
	if err != nil {
		a.t.Errorf("check --read-data: %v", err)
		return nil, false
	}
	if rep.IndexProblems > 0 {
		a.t.Logf("check advises --repair: %d index problem(s), %d damaged", rep.IndexProblems, rep.Damaged)
		a.repair()
		return rep, true
	}
	a.t.Logf("check: %d damaged, %d problem(s), %d trees restored from copies", rep.Damaged, len(rep.Problems), rep.TreesRestored)
	return rep, false
}

func (a *s3a) repair() *store.RepairReport {
	a.t.Helper()
	a.close()
	rs, err := store.OpenForRepair(context.Background(), a.dir, a.opts())
	if err != nil {
		a.t.Fatalf("repair cannot open the store: %v", err)
	}
	rep, err := rs.Repair(context.Background())
	rs.Close()
	if err != nil {
		a.t.Fatalf("repair: %v", err)
	}
	a.t.Logf("repair: %d packs, %d blobs, %d damaged records, %d lost, %d trees restored, %d kept below damaged trees",
		rep.Packs, rep.Blobs, rep.Damaged, rep.Lost, rep.TreesRestored, rep.KeptBelowDamagedTrees)
	a.open()
	return rep
}

// night is the nightly lifecycle (scrub of every pack, GC) followed by a
// GC compacting every pack; errors fail the test.
func (a *s3a) night() {
	a.t.Helper()
	rep, err := a.s.Lifecycle(context.Background(), store.LifecycleOptions{ScrubDays: 1})
	if err != nil {
		a.t.Errorf("nightly lifecycle after staff followed check's advice: %v", err)
		return
	}
	if rep.GC != nil && len(rep.GC.PacksKept) > 0 {
		a.t.Logf("lifecycle GC kept %v", rep.GC.PacksKept)
	}
	if _, err := a.s.GC(context.Background(), store.GCOptions{CompactBelow: 1}); err != nil {
		a.t.Errorf("gc: %v", err)
	}
}

func (a *s3a) nextBackups() {
	for i := range a.users {
		a.backup(i)
	}
}

// verify: every blob the fixture's snapshots used reads back, except
// damaged ones no laptop has any more (and, if treesHeal, never a damaged
// tree: its copy in the index brings it back); every snapshot restores
// every file whose blobs are intact, byte for byte, and names the others.
// It returns how many damaged blobs stayed lost and how many files were
// left out.
func (a *s3a) verify(dmg map[blob.Ref]bool, treesHeal bool) (unhealed, filesOut int) {
	a.t.Helper()
	ctx := context.Background()
	cur := a.current()
	beyond, unhealedCur := 0, 0
	for r := range a.allRefs() {
		_, err := a.s.ReadBlob(ctx, r)
		switch {
		case err == nil:
		case !dmg[r]:
			beyond++
			if beyond <= 5 {
				a.t.Errorf("LOST beyond the damage: %s (%v)", r, err)
			}
		case cur[r]:
			unhealedCur++
			if unhealedCur <= 3 {
				a.t.Errorf("damaged %s is in a laptop's Journal but was not healed by its backup: %v", r, err)
			}
		case r.Type == blob.Tree && treesHeal:
			a.t.Errorf("damaged tree %s of an old snapshot did not come back from its copy in the index: %v", r, err)
		default:
			unhealed++
		}
	}
	if beyond > 0 {
		a.t.Errorf("%d blob(s) lost beyond the damaged ones", beyond)
	}
	if unhealedCur > 0 {
		a.t.Errorf("%d damaged blob(s) the laptops still have were not healed by their backups", unhealedCur)
	}
	for _, cs := range a.snaps {
		sn, err := a.s.Snapshot(cs.user, cs.id)
		if err != nil {
			a.t.Errorf("acknowledged snapshot %s is gone: %v", cs.id, err)
			continue
		}
		out := a.t.TempDir()
		res, rerr := a.s.Restore(ctx, sn, out, store.RestoreOptions{})
		if rerr != nil && !errors.Is(rerr, blob.ErrDamaged) {
			a.t.Errorf("restore %s: %v", cs.id, rerr)
			continue
		}
		if res == nil {
			filesOut += len(cs.files)
			if !dmg[blob.Ref{Type: blob.Tree, ID: sn.Root}] {
				a.t.Errorf("restore %s failed as a whole: %v", cs.id, rerr)
			}
			continue
		}
		named := map[string]bool{}
		for _, d := range res.Damaged {
			named[d.Path] = true
		}
		got := readTree(a.t, out)
		for name, want := range cs.files {
			b, ok := got[name]
			if ok {
				if !bytes.Equal(b, want) {
					a.t.Errorf("snapshot %s: %s restored with wrong bytes", cs.id, name)
				}
				continue
			}
			filesOut++
			if !namedOrParent(named, name) {
				a.t.Errorf("snapshot %s: %s neither restored nor named", cs.id, name)
			}
		}
	}
	a.t.Logf("verify: %d damaged blob(s) the laptops no longer have stay lost; %d file(s) left out of restores", unhealed, filesOut)
	return unhealed, filesOut
}

// damagedNow is store.Damaged, failing the test on error.
func (a *s3a) damagedNow() []store.DamagedBlob {
	a.t.Helper()
	d, err := a.s.Damaged(context.Background())
	if err != nil {
		a.t.Fatalf("damaged: %v", err)
	}
	return d
}

// s3aProxy is a reverse proxy in front of the server whose faults are
// chosen per request by a function (s3test.Proxy counts requests only).
type s3aProxy struct {
	Addr string
	mu   sync.Mutex
	fn   func(r *http.Request) (status int, body string)
	hits int
}

func startS3AProxy(t *testing.T, srv *s3test.Server) *s3aProxy {
	t.Helper()
	target, _ := url.Parse("http://" + srv.Addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &s3aProxy{Addr: l.Addr().String()}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		fn := p.fn
		p.mu.Unlock()
		if fn != nil {
			if status, body := fn(r); status != 0 {
				p.mu.Lock()
				p.hits++
				p.mu.Unlock()
				io.Copy(io.Discard, r.Body)
				if strings.HasPrefix(body, "<?xml") {
					w.Header().Set("Content-Type", "application/xml")
				} else {
					w.Header().Set("Content-Type", "text/html")
				}
				w.WriteHeader(status)
				if r.Method != http.MethodHead {
					io.WriteString(w, body)
				}
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return p
}

func (p *s3aProxy) set(fn func(r *http.Request) (int, string)) {
	p.mu.Lock()
	p.fn = fn
	p.mu.Unlock()
}

func (p *s3aProxy) faults() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// isPackRead: a GET of a pack object (not a listing).
func isPackRead(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".pack")
}

func s3aRemote(t *testing.T, srv *s3test.Server, addr, prefix string, retries int) store.Remote {
	t.Helper()
	cfg := srv.Config(addr, prefix)
	cfg.Retries = retries
	r, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
