// Package offsite is the benchmark of school → mothership replication
// (pkg/offsite): a school server's store, fed night after night from the
// whole-school benchmark's generated Journals (bench/school), is replicated
// every night to a mothership (an in-process xs-backupd with the
// mothership role) through an emulated uplink (bench/netem), and in the same
// run the natural baselines cross the same emulated link: `rsync -aH` of
// the school's store directory, and `rsync -aH` of the snapshot folders the
// old system kept (rsync --link-dest per laptop per night, then util-linux
// hardlink across laptops). A second school with the same library and other
// children replicates to the same mothership at the end, to measure what
// the mothership stores for two schools.
//
// The package returns figures ([Run], [Result.Markdown]); the benchmark in
// offsite_test.go runs it.
package offsite

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/bench/internal/rsyncd"
	"github.com/xs-backup/xs-backup/bench/netem"
	"github.com/xs-backup/xs-backup/bench/school"
	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Options shape a run. Zero fields take the values of [Default].
type Options struct {
	// Laptops, Nights, JournalMB and Scale shape each school (see
	// school.GenOptions): Journals of JournalMB MiB on night 0, books and
	// photos 1/Scale of the whole-school benchmark's sizes.
	Laptops, Nights, JournalMB, Scale int
	// Seed makes the schools' shared library and school 1's children;
	// Seed2 school 2's children.
	Seed, Seed2 uint64
	// Rate (bits per second), one-way Delay, Jitter and Loss of the
	// emulated uplink between the school and the mothership.
	Rate          float64
	Delay, Jitter time.Duration
	Loss          float64
	// Work is where everything goes ("": a temporary directory, removed at
	// the end unless Keep).
	Work string
	Keep bool
	// NoBaselines skips the rsync baselines (a quick check of xs-backup).
	NoBaselines bool
	// TargetDelay is the mothership's [traffic] target_delay (0: its
	// default, 25 ms; negative: no delay-based pacing).
	TargetDelay time.Duration
	// Log, if set, receives one line per step.
	Log func(string)
}

// Default is the run reported in bench/README.md: 100 laptops, 10 nights,
// 1 MiB Journals with books and photos at 1/16 of their size, through
// 5 Mbit/s with 100 ms each way (200 ms RTT) and up to 10 ms of jitter.
func Default() Options {
	return Options{Laptops: 100, Nights: 10, JournalMB: 1, Scale: 16, Seed: 1, Seed2: 2,
		Rate: 5e6, Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond}
}

func (o *Options) fill() {
	d := Default()
	if o.Laptops == 0 {
		o.Laptops = d.Laptops
	}
	if o.Nights == 0 {
		o.Nights = d.Nights
	}
	if o.JournalMB == 0 {
		o.JournalMB = d.JournalMB
	}
	if o.Scale == 0 {
		o.Scale = d.Scale
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	if o.Seed2 == 0 {
		o.Seed2 = d.Seed2
	}
	if o.Rate == 0 {
		o.Rate, o.Delay, o.Jitter = d.Rate, d.Delay, d.Jitter
	}
}

// Night is one night's figures.
type Night struct {
	// Logical and Files are school 1's Journals (what a backup reads).
	Logical int64 `json:"logical"`
	Files   int   `json:"files"`
	// Backup is the time to back school 1's laptops up into its server
	// (in process, not part of the off-site figures).
	Backup time.Duration `json:"backup"`

	// XS is xs-backup's replication (offsite.Sync through the link).
	XS Transfer `json:"xs"`
	// XSSent is what offsite.Sync reports sending (stored blob bytes), and
	// XSSnapshots how many snapshots it committed.
	XSSent      int64 `json:"xs_sent"`
	XSSnapshots int   `json:"xs_snapshots"`
	// Store is `rsync -aH` of the school server's data directory, Tree of
	// the hardlinked --link-dest snapshot folders.
	Store Transfer `json:"store"`
	Tree  Transfer `json:"tree"`

	// SchoolPacks is school 1's pack bytes, SchoolDir its whole data
	// directory, TreeDisk the snapshot folders (each inode once).
	SchoolPacks int64 `json:"school_packs"`
	SchoolDir   int64 `json:"school_dir"`
	TreeDisk    int64 `json:"tree_disk"`
	// MothershipPacks is the mothership's pack bytes after the night.
	MothershipPacks int64 `json:"mothership_packs"`
}

// Transfer is one replication through the link.
type Transfer struct {
	// Wire is every byte the link delivered, both directions, headers
	// included (IP/UDP for QUIC, IP/TCP and acknowledgements for rsync).
	Wire int64 `json:"wire"`
	// Time is the wall time of the whole run (connection included).
	Time time.Duration `json:"time"`
	// Dropped and Lost are packets the link's buffer dropped or lost at random.
	Dropped int64 `json:"dropped"`
	Lost    int64 `json:"lost"`
}

// Result is everything a run measured.
type Result struct {
	Options  Options        `json:"options"`
	Machine  school.Machine `json:"machine"`
	Start    time.Time      `json:"start"`
	Duration time.Duration  `json:"duration"`
	Nights   []Night        `json:"nights"`
	// Reflash is the laptop wiped on ReflashNight (-1: none).
	ReflashNight  int    `json:"reflash_night"`
	ReflashLaptop string `json:"reflash_laptop"`

	// OnePacks is the mothership's pack bytes with school 1 alone (after
	// its last night), TwoPacks after school 2 replicated all its nights.
	OnePacks int64 `json:"one_packs"`
	TwoPacks int64 `json:"two_packs"`
	// School2Packs is school 2's own store; Shared2 the stored bytes of the
	// chunks it holds that school 1 holds too; Unique2 = School2Packs -
	// Shared2, the bytes only school 2 brings.
	School2Packs int64 `json:"school2_packs"`
	Shared2      int64 `json:"shared2"`
	Unique2      int64 `json:"unique2"`
	// School2Sent and School2Time are school 2's one replication of all
	// its nights (on loopback, not through the link).
	School2Sent int64         `json:"school2_sent"`
	School2Time time.Duration `json:"school2_time"`
	// Verified says what was checked after the run.
	Verified string   `json:"verified"`
	Notes    []string `json:"notes"`
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	o.fill()
	logf := func(format string, a ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, a...))
		}
	}
	res = &Result{Options: o, Machine: school.DescribeMachine(ctx), Start: time.Now()}
	work := o.Work
	if work == "" {
		if work, err = os.MkdirTemp("", "xs-bench-offsite-"); err != nil {
			return nil, err
		}
		if !o.Keep {
			defer os.RemoveAll(work)
		}
	}
	dir := func(parts ...string) string { return filepath.Join(append([]string{work}, parts...)...) }
	for _, d := range []string{dir("journals1"), dir("journals2"), dir("tree"), dir("offsite", "store"), dir("offsite", "tree")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	gopts := school.GenOptions{Laptops: o.Laptops, Nights: o.Nights, JournalMB: o.JournalMB, Seed: o.Seed, Scale: o.Scale}
	gen1, err := school.NewGenerator(gopts, dir("journals1"))
	if err != nil {
		return nil, err
	}
	gopts.ChildSeed = o.Seed2
	gen2, err := school.NewGenerator(gopts, dir("journals2"))
	if err != nil {
		return nil, err
	}
	res.ReflashNight, res.ReflashLaptop = gen1.Reflash()

	// The mothership, and the link between it and the school.
	ms, stopMS, err := startMothership(dir("mothership"), o.TargetDelay)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := stopMS(); err == nil && serr != nil {
			err = fmt.Errorf("stop the mothership: %w", serr)
		}
	}()
	link := netem.NewLink(netem.LinkConfig{Rate: o.Rate, Delay: o.Delay, Jitter: o.Jitter, Loss: o.Loss})
	defer link.Close()
	quicFront, err := netem.NewRelay(link, ms.Addr.String())
	if err != nil {
		return nil, err
	}
	defer quicFront.Close()

	// The rsync daemon on the off-site host, behind the same link.
	var rsyncURL string
	if !o.NoBaselines {
		port, stop, err := rsyncd.Start("offsite", dir("offsite"), dir("rsyncd.log"))
		if err != nil {
			return nil, err
		}
		defer stop()
		tcpFront, err := newTCPRelay(link, "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return nil, err
		}
		defer tcpFront.Close()
		rsyncURL = "rsync://" + tcpFront.Addr() + "/offsite/"
	}

	// The two school servers: a store each, their laptops registered.
	s1, err := newSchoolServer(ctx, dir("school1"), "school-1", gen1)
	if err != nil {
		return nil, err
	}
	defer func() { s1.st.Close() }()
	s2, err := newSchoolServer(ctx, dir("school2"), "school-2", gen2)
	if err != nil {
		return nil, err
	}
	defer s2.st.Close()
	msAdmin := &admin.Service{S: ms.Store}
	m1 := offsite.Mothership{Addr: quicFront.Addr(), School: s1.name, Key: s1.key}
	if err := s1.register(ctx, m1, msAdmin); err != nil {
		return nil, err
	}

	for k := range o.Nights {
		var n Night
		if err := gen1.Night(k); err != nil {
			return nil, err
		}
		if err := gen2.Night(k); err != nil {
			return nil, err
		}
		for _, j := range gen1.Journals() {
			b, f, err := school.JournalBytes(j.Dir)
			if err != nil {
				return nil, err
			}
			n.Logical += b
			n.Files += f
		}
		t0 := time.Now()
		if err := s1.backupAll(ctx); err != nil {
			return nil, err
		}
		n.Backup = time.Since(t0)
		if err := s2.backupAll(ctx); err != nil {
			return nil, err
		}
		if !o.NoBaselines {
			if err := linkDest(ctx, gen1, dir("tree"), k); err != nil {
				return nil, err
			}
		}

		// xs-backup: the school's nightly sync to its mothership.
		var rep *offsite.Report
		n.XS, err = measure(link, func() error {
			rep, err = offsite.Sync(ctx, s1.st, m1, s1.state, offsite.Options{School: s1.name})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("night %d: sync school 1: %w", k, err)
		}
		n.XSSent, n.XSSnapshots = rep.Bytes, rep.Snapshots
		if len(rep.Failed) > 0 {
			return nil, fmt.Errorf("night %d: sync school 1 failed snapshots: %v", k, rep.Failed)
		}
		if !o.NoBaselines {
			// The store is closed while rsync copies it, as an admin stops
			// a database to copy its files (a live Badger index is not a
			// consistent copy, and holds 160 MiB of preallocated files).
			if err := s1.st.Close(); err != nil {
				return nil, err
			}
			n.Store, err = measure(link, func() error { return rsyncAH(ctx, s1.dir, rsyncURL+"store/") })
			if err != nil {
				return nil, fmt.Errorf("night %d: %w", k, err)
			}
			if s1.st, err = store.Open(ctx, s1.dir, store.Options{Reserve: -1}); err != nil {
				return nil, err
			}
			n.Tree, err = measure(link, func() error { return rsyncAH(ctx, dir("tree"), rsyncURL+"tree/") })
			if err != nil {
				return nil, fmt.Errorf("night %d: %w", k, err)
			}
		}
		if n.SchoolPacks, err = packBytes(s1.st); err != nil {
			return nil, err
		}
		if n.MothershipPacks, err = packBytes(ms.Store); err != nil {
			return nil, err
		}
		if n.SchoolDir, err = school.DiskUsage(s1.dir); err != nil {
			return nil, err
		}
		if n.TreeDisk, err = school.DiskUsage(dir("tree")); err != nil {
			return nil, err
		}
		res.Nights = append(res.Nights, n)
		logf("night %d: %.1f MB of Journals; xs-backup %.2f MB in %.1f s (%d snapshots, %.2f MB of blobs); rsync store %.2f MB in %.1f s; rsync tree %.2f MB in %.1f s; mothership packs %.1f MB",
			k, mb(n.Logical), mb(n.XS.Wire), n.XS.Time.Seconds(), n.XSSnapshots, mb(n.XSSent), mb(n.Store.Wire), n.Store.Time.Seconds(),
			mb(n.Tree.Wire), n.Tree.Time.Seconds(), mb(n.MothershipPacks))
	}
	res.OnePacks = res.Nights[len(res.Nights)-1].MothershipPacks

	// School 2 replicates all its nights at once, on loopback.
	m2 := offsite.Mothership{Addr: ms.Addr.String(), School: s2.name, Key: s2.key}
	if err := s2.register(ctx, m2, msAdmin); err != nil {
		return nil, err
	}
	t0 := time.Now()
	rep2, err := offsite.Sync(ctx, s2.st, m2, s2.state, offsite.Options{School: s2.name})
	if err != nil {
		return nil, fmt.Errorf("sync school 2: %w", err)
	}
	res.School2Time, res.School2Sent = time.Since(t0), rep2.Bytes
	if res.TwoPacks, err = packBytes(ms.Store); err != nil {
		return nil, err
	}
	if res.School2Packs, err = packBytes(s2.st); err != nil {
		return nil, err
	}
	if res.Shared2, err = sharedBytes(ctx, s2.st, s1.st); err != nil {
		return nil, err
	}
	res.Unique2 = res.School2Packs - res.Shared2
	logf("mothership packs: %.1f MB with school 1, %.1f MB with both; school 2's store %.1f MB of which %.1f MB shared with school 1",
		mb(res.OnePacks), mb(res.TwoPacks), mb(res.School2Packs), mb(res.Shared2))

	if res.Verified, err = verify(ctx, ms.Store, s1, s2, gen1); err != nil {
		return nil, err
	}
	res.Duration = time.Since(res.Start)
	return res, nil
}

// measure runs fn and returns what the link carried meanwhile.
func measure(link *netem.Link, fn func() error) (Transfer, error) {
	before := link.Stats()
	t0 := time.Now()
	err := fn()
	took := time.Since(t0)
	time.Sleep(2 * linkSettle(link)) // the last packets (acknowledgements) in flight
	after := link.Stats()
	return Transfer{Wire: after.Bytes - before.Bytes, Time: took, Dropped: after.Dropped - before.Dropped, Lost: after.Lost - before.Lost}, err
}

func linkSettle(link *netem.Link) time.Duration {
	c := link.Config()
	return c.Delay + c.Jitter + 50*time.Millisecond
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func packBytes(st *store.Store) (int64, error) {
	sp, err := st.Space()
	if err != nil {
		return 0, err
	}
	return sp.PackBytes, nil
}

// startMothership runs an xs-backupd with the mothership role in process.
func startMothership(data string, targetDelay time.Duration) (*server.Daemon, func() error, error) {
	cfg := server.DefaultConfig()
	if targetDelay != 0 {
		cfg.Traffic.TargetDelay = server.Duration(targetDelay)
	}
	cfg.Role, cfg.Registration = "mothership", "approve"
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", data, "", 0
	cfg.RestorePage.Listen, cfg.Lifecycle.At = "", ""
	cfg.AdminSocket = data + ".sock"
	cfg.LogLevel = "warn"
	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("start the mothership: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready:
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("the mothership stopped at once: %w", err)
	}
	return d, func() error { cancel(); return <-done }, nil
}

// schoolServer is a school server as the benchmark needs it: its store, its
// key and its off-site state (no daemon: its laptops back up in process).
type schoolServer struct {
	name, dir string
	st        *store.Store
	key       ed25519.PrivateKey
	state     *offsite.State
	gen       *school.Generator
	users     map[string]store.UserID
}

func newSchoolServer(ctx context.Context, dir, name string, gen *school.Generator) (*schoolServer, error) {
	st, err := store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &schoolServer{name: name, dir: dir, st: st, key: key, gen: gen, users: map[string]store.UserID{}}
	if s.state, err = offsite.LoadState(dir); err != nil {
		return nil, err
	}
	for _, j := range gen.Journals() {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		u, err := st.AddUser(ctx, store.NewUser{Serial: "SHC" + name[len(name)-1:] + j.Name, PublicKey: pub, Approved: true})
		if err != nil {
			return nil, fmt.Errorf("register laptop %s at %s: %w", j.Name, name, err)
		}
		s.users[j.Name] = u.ID
	}
	return s, nil
}

// register registers the school with the mothership and approves it there,
// as the mothership's staff would.
func (s *schoolServer) register(ctx context.Context, m offsite.Mothership, a *admin.Service) error {
	if _, err := offsite.Register(ctx, m, s.state); err != nil {
		return fmt.Errorf("register %s with the mothership: %w", s.name, err)
	}
	if _, err := a.Approve(ctx, admin.ApproveRequest{Serial: s.name}); err != nil {
		return fmt.Errorf("approve %s on the mothership: %w", s.name, err)
	}
	return nil
}

// backupAll backs every laptop's Journal up into the school's store, as
// each laptop's nightly run does.
func (s *schoolServer) backupAll(ctx context.Context) error {
	for _, j := range s.gen.Journals() {
		t := s.st.Target(s.users[j.Name], manifest.CommitInfo{Host: j.Name, Source: j.Dir})
		if _, err := backup.Run(ctx, j.Dir, t, backup.Options{Params: s.st.Params(), Exclude: backup.JournalExclude}); err != nil {
			return fmt.Errorf("back up %s at %s: %w", j.Name, s.name, err)
		}
	}
	return nil
}

// sharedBytes is the stored size, in a, of the blobs of a's snapshots that
// b holds too.
func sharedBytes(ctx context.Context, a, b *store.Store) (int64, error) {
	seen := map[blob.Ref]bool{}
	var shared int64
	for _, u := range a.Users() {
		for _, sn := range a.Snapshots(u.ID) {
			err := a.Walk(ctx, sn.Root, func(_ string, e *manifest.Entry) error {
				for _, c := range e.Chunks {
					r := blob.Ref{Type: blob.Chunk, ID: c}
					if seen[r] {
						continue
					}
					seen[r] = true
					if _, err := b.Stat(ctx, r); err != nil {
						if errors.Is(err, store.ErrNotFound) {
							continue
						}
						return err
					}
					info, err := a.Stat(ctx, r)
					if err != nil {
						return err
					}
					shared += info.Stored
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
		}
	}
	return shared, nil
}

// linkDest is the old system's night k: per laptop, rsync -a --delete
// --link-dest=<last night> into a new snapshot folder, then util-linux
// hardlink over the whole tree (files equal across laptops share an inode).
func linkDest(ctx context.Context, gen *school.Generator, tree string, k int) error {
	night := fmt.Sprintf("night-%02d", k)
	for _, j := range gen.Journals() {
		chain := filepath.Join(tree, j.Name)
		if err := os.MkdirAll(chain, 0o755); err != nil {
			return err
		}
		args := append([]string{"-a", "--delete"}, school.RsyncFilters()...)
		if k > 0 {
			args = append(args, "--link-dest="+filepath.Join(chain, fmt.Sprintf("night-%02d", k-1)))
		}
		args = append(args, j.Dir+"/", filepath.Join(chain, night)+"/")
		if out, err := exec.CommandContext(ctx, "rsync", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("rsync --link-dest of %s: %v: %s", j.Name, err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "hardlink", "-q", tree).CombinedOutput(); err != nil {
		return fmt.Errorf("hardlink %s: %v: %s", tree, err, out)
	}
	return nil
}

// rsyncAH is the baseline's nightly off-site copy.
func rsyncAH(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "rsync", "-aH", "--delete", src+"/", dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rsync -aH %s %s: %v: %s", src, dst, err, out)
	}
	return nil
}

// verify checks that the mothership holds every snapshot of both schools
// and that school 1's first laptop restores from it as its Journal is now.
func verify(ctx context.Context, ms *store.Store, s1, s2 *schoolServer, gen1 *school.Generator) (string, error) {
	var parts []string
	for _, s := range []*schoolServer{s1, s2} {
		u, err := ms.UserBySerial(s.name)
		if err != nil {
			return "", err
		}
		want := 0
		for _, id := range s.users {
			want += len(s.st.Snapshots(id))
		}
		got := 0
		for _, sn := range ms.Snapshots(u.ID) {
			if sn.Origin != nil && sn.Origin.User != 0 {
				got++
			}
		}
		if got != want {
			return "", fmt.Errorf("the mothership holds %d laptop snapshots of %s, the school %d", got, s.name, want)
		}
		parts = append(parts, fmt.Sprintf("%s: %d snapshots", s.name, got))
	}
	u1, _ := ms.UserBySerial(s1.name)
	j := gen1.Journals()[0]
	var latest *store.Snapshot
	for _, sn := range ms.Snapshots(u1.ID) {
		if sn.Origin != nil && sn.Origin.User == uint64(s1.users[j.Name]) {
			latest = sn
		}
	}
	if latest == nil {
		return "", fmt.Errorf("no snapshot of %s on the mothership", j.Name)
	}
	out, err := os.MkdirTemp("", "xs-bench-offsite-restore-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(out)
	if _, err := ms.Restore(ctx, latest, out, store.RestoreOptions{}); err != nil {
		return "", fmt.Errorf("restore %s from the mothership: %w", j.Name, err)
	}
	if err := dircmp.Compare(j.Dir, out, backup.JournalExclude); err != nil {
		return "", fmt.Errorf("%s restored from the mothership differs from its Journal: %w", j.Name, err)
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" on the mothership (every one the schools hold); %s's latest restored from the mothership equals its Journal", j.Name), nil
}
