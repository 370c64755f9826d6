// Package school is the whole-school benchmark of xs-backup: a school of
// laptops whose Sugar Journals change night after night, backed up each
// night by xs-backup (a real xs-backupd and one xo-backup process per
// laptop), by rsync --link-dest into hardlinked snapshot folders (what
// xs-backup replaces), and by restic and borg when they are installed, all
// on the same data. It measures wall and CPU time, bytes on the wire,
// server disk, client state and restore times, verifies every restore byte
// for byte, and studies the chunk size on the same data.
//
// The package only computes and returns results (see [Run], [Result.Markdown],
// [Result.SVG] and [UpdateReadme]); bench/cmd/school is the command.
package school

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// System names, in the order they run each night.
const (
	XSBackup      = "xs-backup"
	Rsync         = "rsync"
	RsyncHardlink = "rsync+hardlink"
	// RsyncSSH is ds-backup's own transport: rsync over SSH with --link-dest.
	RsyncSSH = "rsync+ssh"
	Restic   = "restic"
	Borg     = "borg"
)

// Options shape a run. Zero fields take the defaults of [Small].
type Options struct {
	// Size names the run in file names (school-<Size>.md), e.g. "small".
	Size string
	// Laptops is the number of laptops in the school.
	Laptops int
	// Nights is the number of nightly backups; night 0 is the first full one.
	Nights int
	// JournalMB is the size of each Journal on night 0, in MiB.
	JournalMB int
	// Concurrency is how many laptops back up at once.
	Concurrency int
	// Seed makes the school (every byte of every Journal) reproducible.
	Seed uint64
	// Work is where Journals, servers and repositories go. Empty: a new
	// temporary directory, removed at the end unless Keep is set.
	Work string
	// Keep leaves Work in place.
	Keep bool
	// Repo is the root of the xs-backup source tree to build; empty: found
	// from the current directory upwards.
	Repo string
	// Systems restricts the run to these systems (XSBackup, Rsync, RsyncSSH,
	// Restic, Borg); empty runs every one that is installed. xs-backup always
	// runs.
	Systems []string
	// NoChunkStudy skips the chunk-size study.
	NoChunkStudy bool
	// NoInstall never runs apt-get for a missing tool (otherwise a run as
	// root installs missing rsync, openssh, restic and borg once).
	NoInstall bool
	// Command is the command line, quoted in the report.
	Command string
	// Log, if set, receives one line per step.
	Log func(string)
}

// Small is the `make bench` school: 12 laptops, 4 nights, 15 MiB Journals.
func Small() Options {
	return Options{Size: "small", Laptops: 12, Nights: 4, JournalMB: 15, Concurrency: 4, Seed: 1}
}

// Result is everything a run measured.
type Result struct {
	Options  Options       `json:"options"`
	Machine  Machine       `json:"machine"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// Nights describes the data of each night.
	Nights []NightData `json:"nights"`
	// Systems are in running order; RsyncHardlink follows Rsync.
	Systems []*SystemResult `json:"systems"`
	// Chunks is the chunk-size study (nil if skipped).
	Chunks []ChunkRow `json:"chunks"`
	// IndexPerBlob is the measured index cost of the xs-backup store, in
	// bytes per stored blob, and IndexBasis says how it was measured.
	IndexPerBlob float64 `json:"index_per_blob"`
	IndexBasis   string  `json:"index_basis"`
	// ReflashNight and ReflashLaptop say which laptop was wiped when (-1: none).
	ReflashNight  int    `json:"reflash_night"`
	ReflashLaptop string `json:"reflash_laptop"`
	// DocPath is the document restored from night 0 (laptop L000).
	DocPath string `json:"doc_path"`
	// Commit is the xs-backup source that was built (git describe --dirty).
	Commit string `json:"commit"`
	// Notes are facts worth reading next to the tables.
	Notes []string `json:"notes"`
}

// NightData is the school's data on one night.
type NightData struct {
	// Logical is the bytes of all Journals (what every system backs up).
	Logical int64 `json:"logical"`
	// Files is the number of backed-up files in all Journals.
	Files int `json:"files"`
	// Changed is the bytes of the files new or changed since the night before.
	Changed int64 `json:"changed"`
}

// SystemResult is one system's figures.
type SystemResult struct {
	Name string `json:"name"`
	// Skipped says why the system did not run ("" if it ran).
	Skipped string `json:"skipped,omitempty"`
	// Failed is the first error; a failed system's figures are not reported.
	Failed string       `json:"failed,omitempty"`
	Nights []NightStats `json:"nights"`
	// StateMean and StateMax are the client state per laptop after the last night.
	StateMean int64 `json:"state_mean"`
	StateMax  int64 `json:"state_max"`
	// RestoreWhole is the time to restore laptop L000's latest Journal,
	// RestoreDoc one document from night 0; zero with an error if the
	// restore failed or differed from the generator's copy.
	RestoreWhole    time.Duration `json:"restore_whole"`
	RestoreWholeErr string        `json:"restore_whole_err,omitempty"`
	RestoreDoc      time.Duration `json:"restore_doc"`
	RestoreDocErr   string        `json:"restore_doc_err,omitempty"`
	// WireNote says what Wire counts for this system.
	WireNote string `json:"wire_note"`
}

// NightStats is one system's figures for one night.
type NightStats struct {
	// Wall is from the first laptop's start to the last one's end.
	Wall time.Duration `json:"wall"`
	// CPU is user+system of every client process plus the server's.
	CPU time.Duration `json:"cpu"`
	// ServerCPU is the server's share of CPU.
	ServerCPU time.Duration `json:"server_cpu"`
	// Wire is bytes on the wire, both directions (see WireNote).
	Wire int64 `json:"wire"`
	// Disk is the server's disk use after the night.
	Disk int64 `json:"disk"`
	// LaptopWall is each laptop's backup this night, from the start of its
	// client to its end (the order laptops ran in, not sorted).
	LaptopWall []time.Duration `json:"laptop_wall,omitempty"`
}

// OK reports whether the system ran to the end with verified restores.
func (s *SystemResult) OK() bool {
	return s.Skipped == "" && s.Failed == "" && s.RestoreWholeErr == "" && s.RestoreDocErr == ""
}

// Totals sums the nights.
func (s *SystemResult) Totals() (wall, cpu time.Duration, wire int64) {
	for _, n := range s.Nights {
		wall += n.Wall
		cpu += n.CPU
		wire += n.Wire
	}
	return
}

// LaptopP50 is the median of one laptop's backup time over the nights
// from..to (to excluded; to < 0: the last night included).
func (s *SystemResult) LaptopP50(from, to int) time.Duration {
	if to < 0 || to > len(s.Nights) {
		to = len(s.Nights)
	}
	var all []time.Duration
	for _, n := range s.Nights[min(from, to):to] {
		all = append(all, n.LaptopWall...)
	}
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	return all[len(all)/2]
}

// LastDisk is the server disk after the last night.
func (s *SystemResult) LastDisk() int64 {
	if len(s.Nights) == 0 {
		return 0
	}
	return s.Nights[len(s.Nights)-1].Disk
}

// System returns the named system's result, or nil.
func (r *Result) System(name string) *SystemResult {
	for _, s := range r.Systems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// runner is one backup system driven by the benchmark.
type runner interface {
	name() string
	start(ctx context.Context, sc *school, work string) error
	// backup backs up one laptop and returns bytes on the wire (0 if the
	// system counts them per night) and the client's CPU time.
	backup(ctx context.Context, l *laptop, night int) (int64, time.Duration, error)
	serverCPU() time.Duration
	disk() (int64, error)
	state(l *laptop) (int64, error)
	reflash(ctx context.Context, l *laptop) error
	// restoreWhole and restoreDoc return where the Journal or the file
	// landed and how long the restoring command took.
	restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error)
	restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error)
	stop() error
}

// nightWirer is a runner that counts bytes for a whole night at once.
type nightWirer interface {
	beginNight() error
	nightWire() (int64, error)
}

// Run builds xs-backup, generates the school, runs every night with every
// system and returns the figures. An error means the run itself could not
// go on (bad options, rsync missing, the generator failing); a system that
// fails is recorded in its SystemResult and the others go on.
func Run(ctx context.Context, o Options) (*Result, error) {
	o, err := withDefaults(o)
	if err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, args...))
		}
	}
	res := &Result{Options: o, Start: time.Now(), ReflashNight: -1}
	if o.Work == "" {
		if o.Work, err = os.MkdirTemp("", "xs-school-"); err != nil {
			return nil, err
		}
		res.Options.Work = o.Work
		if !o.Keep {
			defer os.RemoveAll(o.Work)
		}
	} else if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return nil, err
	}
	tools, notes, err := findTools(ctx, o, logf)
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, notes...)
	res.Machine = machine(ctx)

	if p, err := run(ctx, o.Repo, nil, "git", "describe", "--always", "--dirty"); err == nil && p.code == 0 {
		res.Commit = strings.TrimSpace(p.stdout)
	}
	logf("building xs-backup from %s (%s)", o.Repo, res.Commit)
	xs := &xsBackup{bin: filepath.Join(o.Work, "bin")}
	if err := buildXS(ctx, o.Repo, xs.bin); err != nil {
		return nil, err
	}
	sc, err := newSchool(o, filepath.Join(o.Work, "journals"))
	if err != nil {
		return nil, err
	}
	res.ReflashNight = sc.reflashNight
	if sc.reflashLaptop >= 0 {
		res.ReflashLaptop = sc.laptops[sc.reflashLaptop].name
	}

	// The systems, each in its own directory.
	type sys struct {
		r   runner
		res *SystemResult
	}
	var systems []*sys
	var rs *rsyncLinkDest
	var hl *SystemResult
	add := func(r runner, wire string) {
		s := &sys{r: r, res: &SystemResult{Name: r.name(), WireNote: wire}}
		systems = append(systems, s)
		res.Systems = append(res.Systems, s.res)
	}
	add(xs, "QUIC datagrams both ways (wire_bytes_sent + wire_bytes_received of `xo-backup run --json`), handshakes included")
	if want(o, Rsync) {
		rs = &rsyncLinkDest{bin: tools[Rsync], hardlinkBin: tools["hardlink"]}
		add(rs, "rsync --stats: total bytes sent + received (rsync protocol over TCP, handshake included)")
		hl = &SystemResult{Name: RsyncHardlink, WireNote: "as rsync"}
		if rs.hardlinkBin == "" {
			hl.Skipped = "hardlink (util-linux) not installed: skipped; apt-get install util-linux"
		}
		res.Systems = append(res.Systems, hl)
	}
	if want(o, RsyncSSH) {
		if tools["sshd"] == "" || tools["ssh"] == "" || tools["ssh-keygen"] == "" {
			res.Systems = append(res.Systems, &SystemResult{Name: RsyncSSH, Skipped: "sshd or ssh not installed: skipped; apt-get install openssh-server openssh-client"})
		} else {
			add(&rsyncSSH{bin: tools[Rsync], sshd: tools["sshd"], ssh: tools["ssh"], keygen: tools["ssh-keygen"]},
				"the SSH connection's bytes both ways, counted by a TCP relay in front of sshd (encryption and framing included)")
		}
	}
	for _, name := range []string{Restic, Borg} {
		if !want(o, name) {
			continue
		}
		if tools[name] == "" {
			res.Systems = append(res.Systems, &SystemResult{Name: name, Skipped: fmt.Sprintf("%s not installed: skipped; apt-get install %s", name, pkgOf(name))})
			continue
		}
		if name == Restic {
			add(&restic{bin: tools[name]}, "bytes added to the shared local repository (new pack, index and snapshot files, after compression and encryption): what a remote repository would receive")
		} else {
			add(&borg{bin: tools[name]}, "deduplicated_size of `borg create --json` (new chunks after compression, local repository): what `borg serve` would receive")
		}
	}
	defer func() {
		for _, s := range systems {
			s.r.stop()
		}
	}()
	for _, s := range systems {
		dir := filepath.Join(o.Work, s.r.name())
		if err := s.r.start(ctx, sc, dir); err != nil {
			s.res.Failed = "start: " + err.Error()
			if s.r == runner(xs) {
				return nil, fmt.Errorf("xs-backup: %s", s.res.Failed)
			}
		}
	}

	var study *chunkStudy
	if !o.NoChunkStudy {
		if study, err = newChunkStudy(); err != nil {
			return nil, err
		}
		defer study.close()
	}

	prev := make([]map[string]fileState, len(sc.laptops))
	load0, loadMax := loadAvg(), 0.0
	for k := range o.Nights {
		loadMax = max(loadMax, loadAvg())
		t0 := time.Now()
		if err := sc.night(k); err != nil {
			return nil, err
		}
		var nd NightData
		var changed []string
		for i, l := range sc.laptops {
			files, total, err := walkJournal(l.journal)
			if err != nil {
				return nil, err
			}
			nd.Logical += total
			nd.Files += len(files)
			for rel, st := range files {
				if old, ok := prev[i][rel]; !ok || old != st {
					nd.Changed += st.size
					changed = append(changed, filepath.Join(l.journal, filepath.FromSlash(rel)))
				}
			}
			prev[i] = files
		}
		res.Nights = append(res.Nights, nd)
		gen := time.Since(t0)
		if study != nil {
			slices.Sort(changed)
			if err := study.addNight(ctx, nd.Logical, changed); err != nil {
				return nil, fmt.Errorf("chunk study: %w", err)
			}
		}
		logf("night %d/%d: %d laptops, %.0f MB in Journals, %.0f MB new or changed (generated in %.1f s, chunk study %.1f s)",
			k+1, o.Nights, len(sc.laptops), mb(nd.Logical), mb(nd.Changed), gen.Seconds(), (time.Since(t0) - gen).Seconds())
		for _, s := range systems {
			if s.res.Failed != "" {
				continue
			}
			ns, err := backupNight(ctx, sc, s.r, k, o.Concurrency)
			if err != nil {
				s.res.Failed = fmt.Sprintf("night %d: %v", k, err)
				logf("  %-14s FAILED: %s", s.res.Name, s.res.Failed)
				if s.r == runner(xs) {
					return nil, fmt.Errorf("xs-backup failed on night %d: %w", k, err)
				}
				continue
			}
			s.res.Nights = append(s.res.Nights, ns)
			disk := fmt.Sprintf("%9.1f MB disk", mb(ns.Disk))
			if s.r == runner(rs) {
				disk = "" // measured below, before the hardlink pass
			}
			logf("  %-14s %7.1f s wall %7.1f s CPU %9.1f MB wire %s", s.res.Name, ns.Wall.Seconds(), ns.CPU.Seconds(), mb(ns.Wire), disk)
			if s.r == runner(rs) && hl != nil && hl.Skipped == "" && hl.Failed == "" {
				plain, err := rs.plainDisk()
				if err != nil {
					return nil, err
				}
				hwall, hcpu, err := rs.hardlink(ctx)
				if err != nil {
					hl.Failed = fmt.Sprintf("night %d: %v", k, err)
					continue
				}
				disk, err := rs.disk()
				if err != nil {
					return nil, err
				}
				s.res.Nights[k].Disk = plain
				hl.Nights = append(hl.Nights, NightStats{Wall: ns.Wall + hwall, CPU: ns.CPU + hcpu, ServerCPU: ns.ServerCPU + hcpu, Wire: ns.Wire, Disk: disk})
				logf("  %-14s %7.1f s wall %7.1f s CPU (of which the hardlink pass %.1f s) %9.1f MB disk (rsync alone: %.1f MB)",
					RsyncHardlink, (ns.Wall + hwall).Seconds(), (ns.CPU + hcpu).Seconds(), hwall.Seconds(), mb(disk), mb(plain))
			}
		}
	}

	if rs != nil && hl != nil && hl.Skipped == "" && hl.Failed == "" && res.System(Rsync).Failed != "" {
		hl.Failed = "rsync failed"
	}
	loadMax = max(loadMax, loadAvg())
	res.Notes = append(res.Notes, fmt.Sprintf("Machine load (1-minute load average): %.1f at the start, up to %.1f at the start of a night and at the end. "+
		"The benchmark itself keeps about %d backup processes and a server busy; much higher values mean other work shared the cores and the times are less reliable.",
		load0, loadMax, o.Concurrency+1))
	// Client state, then restores of laptop L000, verified.
	const wholeRestores = 3
	l0 := sc.laptops[0]
	res.DocPath = sc.docRel
	for _, s := range systems {
		if s.res.Failed != "" {
			continue
		}
		var sum int64
		for _, l := range sc.laptops {
			n, err := s.r.state(l)
			if err != nil {
				return nil, err
			}
			sum += n
			s.res.StateMax = max(s.res.StateMax, n)
		}
		s.res.StateMean = sum / int64(len(sc.laptops))
		dir := filepath.Join(o.Work, "restore", s.r.name())
		// The median of three whole-Journal restores, each checked: one
		// alone measured this VM's disk (the writeback of the night before,
		// the removal of the restore before) as much as the restore.
		var times []time.Duration
		for k := range wholeRestores {
			root, d, err := s.r.restoreWhole(ctx, l0, filepath.Join(dir, fmt.Sprintf("whole-%d", k)))
			if err == nil {
				err = dircmp.Compare(l0.journal, root, backup.JournalExclude)
			}
			if err != nil {
				s.res.RestoreWholeErr = err.Error()
				logf("  %-14s whole-Journal restore FAILED: %v", s.res.Name, err)
				break
			}
			times = append(times, d)
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("whole-%d", k)))
		}
		if s.res.RestoreWholeErr == "" {
			slices.Sort(times)
			s.res.RestoreWhole = times[len(times)/2]
		}
		path, d, err := s.r.restoreDoc(ctx, l0, sc.docRel, filepath.Join(dir, "doc"))
		if err == nil {
			err = sameFile(path, sc.docNight0)
		}
		if err != nil {
			s.res.RestoreDocErr = err.Error()
			logf("  %-14s night-0 document restore FAILED: %v", s.res.Name, err)
		} else {
			s.res.RestoreDoc = d
		}
		logf("  %-14s restores: whole Journal %.2f s, one document from night 0 %.3f s; client state %.0f KB mean, %.0f KB max",
			s.res.Name, s.res.RestoreWhole.Seconds(), s.res.RestoreDoc.Seconds(), float64(s.res.StateMean)/1e3, float64(s.res.StateMax)/1e3)
		if s.r == runner(rs) && hl != nil && hl.Failed == "" && hl.Skipped == "" {
			hl.StateMean, hl.StateMax, hl.RestoreWhole, hl.RestoreWholeErr, hl.RestoreDoc, hl.RestoreDocErr =
				s.res.StateMean, s.res.StateMax, s.res.RestoreWhole, s.res.RestoreWholeErr, s.res.RestoreDoc, s.res.RestoreDocErr
		}
	}
	res.Notes = append(res.Notes, "xs-backup server disk after the last night: "+xs.breakdown()+". The shadow file is where the store writes (and fsyncs, then discards) uploads of chunks that only other laptops hold, so that such an upload costs the same time as a new one.")
	if xs.payload > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("xs-backup QUIC overhead: the laptops sent %.1f MB of chunk and tree bytes (bytes_sent) in %.1f MB of QUIC packets (wire_bytes_sent): +%.1f%%.",
			mb(xs.payload), mb(xs.wireSent), (ratio(xs.wireSent, xs.payload)-1)*100))
	}
	if rs != nil {
		res.Notes = append(res.Notes, "rsync's --link-dest is given module-absolute (`--link-dest=/L000/night-03`): in daemon mode rsync strips a leading `../` from the path, and a relative link-dest silently links nothing.")
	}
	if err := xs.stop(); err != nil {
		res.Notes = append(res.Notes, "xs-backupd did not stop cleanly: "+err.Error())
	}
	res.Notes = append(res.Notes, xs.notes...)
	if per, blobs, index, err := xs.indexCost(ctx); err == nil {
		res.IndexPerBlob = per
		res.IndexBasis = fmt.Sprintf("the benchmark's xs-backup store after the last night: Badger index directory %.1f MB on disk / %d blobs (chunks and trees, from a read-only store check that found no problems) = %.0f bytes per blob, every user's hold records included",
			mb(index), blobs, per)
	} else {
		res.Notes = append(res.Notes, "index cost not measured: "+err.Error())
	}
	if study != nil {
		res.Chunks = study.rows(res.IndexPerBlob)
	}
	res.Duration = time.Since(res.Start)
	return res, nil
}

// backupNight backs up every laptop with r, conc at once, and measures it.
func backupNight(ctx context.Context, sc *school, r runner, k, conc int) (NightStats, error) {
	var ns NightStats
	if k == sc.reflashNight && sc.reflashLaptop >= 0 {
		if err := r.reflash(ctx, sc.laptops[sc.reflashLaptop]); err != nil {
			return ns, fmt.Errorf("reflash %s: %w", sc.laptops[sc.reflashLaptop].name, err)
		}
	}
	nw, perNight := r.(nightWirer)
	if perNight {
		if err := nw.beginNight(); err != nil {
			return ns, err
		}
	}
	var mu sync.Mutex
	cpu0 := r.serverCPU()
	start := time.Now()
	err := forEach(ctx, len(sc.laptops), conc, func(i int) error {
		t0 := time.Now()
		wire, cpu, err := r.backup(ctx, sc.laptops[i], k)
		took := time.Since(t0)
		mu.Lock()
		ns.Wire += wire
		ns.CPU += cpu
		ns.LaptopWall = append(ns.LaptopWall, took)
		mu.Unlock()
		return err
	})
	ns.Wall = time.Since(start)
	if err != nil {
		return ns, err
	}
	time.Sleep(200 * time.Millisecond) // let a forking server reap its children
	ns.ServerCPU = r.serverCPU() - cpu0
	ns.CPU += ns.ServerCPU
	if perNight {
		if ns.Wire, err = nw.nightWire(); err != nil {
			return ns, err
		}
	}
	ns.Disk, err = r.disk()
	return ns, err
}

func want(o Options, name string) bool {
	return name == XSBackup || len(o.Systems) == 0 || slices.Contains(o.Systems, name)
}

func pkgOf(tool string) string {
	switch tool {
	case Borg:
		return "borgbackup"
	case "hardlink":
		return "util-linux"
	case "sshd":
		return "openssh-server"
	case "ssh", "ssh-keygen":
		return "openssh-client"
	}
	return tool
}

// findTools locates rsync, hardlink, restic and borg, installing the
// missing ones with apt-get once when running as root.
func findTools(ctx context.Context, o Options, logf func(string, ...any)) (map[string]string, []string, error) {
	look := func() (map[string]string, []string) {
		m := map[string]string{}
		var missing []string
		for _, t := range []string{Rsync, "hardlink", "sshd", "ssh", "ssh-keygen", Restic, Borg} {
			switch t {
			case "hardlink":
			case "sshd", "ssh", "ssh-keygen":
				if !want(o, RsyncSSH) {
					continue
				}
			case Rsync:
				if !want(o, Rsync) && !want(o, RsyncSSH) {
					continue
				}
			default:
				if !want(o, t) {
					continue
				}
			}
			p, err := exec.LookPath(t)
			if err != nil && t == "sshd" {
				p, err = exec.LookPath("/usr/sbin/sshd")
			}
			if err == nil {
				m[t] = p
			} else {
				missing = append(missing, t)
			}
		}
		return m, missing
	}
	tools, missing := look()
	var notes []string
	if len(missing) > 0 && os.Geteuid() == 0 && !o.NoInstall {
		var pkgs []string
		for _, t := range missing {
			if !slices.Contains(pkgs, pkgOf(t)) {
				pkgs = append(pkgs, pkgOf(t))
			}
		}
		logf("installing %s with apt-get", strings.Join(pkgs, " "))
		p, err := run(ctx, "", []string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", append([]string{"install", "-y"}, pkgs...)...)
		if err != nil || p.code != 0 {
			notes = append(notes, fmt.Sprintf("apt-get install %s failed; those systems were skipped", strings.Join(pkgs, " ")))
		}
		tools, _ = look()
	}
	if (want(o, Rsync) || want(o, RsyncSSH)) && tools[Rsync] == "" {
		return nil, nil, errors.New("rsync is not installed and could not be installed: apt-get install rsync (as root), or leave rsync out with -systems")
	}
	return tools, notes, nil
}

func withDefaults(o Options) (Options, error) {
	d := Small()
	if o.Size == "" {
		o.Size = d.Size
	}
	for _, f := range []struct {
		v   *int
		def int
	}{{&o.Laptops, d.Laptops}, {&o.Nights, d.Nights}, {&o.JournalMB, d.JournalMB}, {&o.Concurrency, d.Concurrency}} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			return o, errors.New("laptops, nights, journal size and concurrency must be positive")
		}
	}
	if o.JournalMB < 2 {
		return o, errors.New("journal size must be at least 2 MiB, so that every Journal holds a document")
	}
	for _, s := range o.Systems {
		if !slices.Contains([]string{XSBackup, Rsync, RsyncSSH, Restic, Borg}, s) {
			return o, fmt.Errorf("unknown system %q: use %s, %s, %s, %s or %s", s, XSBackup, Rsync, RsyncSSH, Restic, Borg)
		}
	}
	if o.Repo == "" {
		var err error
		if o.Repo, err = findRepo(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// findRepo finds the xs-backup module root from the current directory up.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/xs-backup/xs-backup\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the xs-backup source tree: run from the repository, or give its root with -repo")
		}
		dir = parent
	}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// loadAvg is the 1-minute load average (0 if unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var v float64
	fmt.Sscan(string(b), &v)
	return v
}
