package school

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rsyncLinkDest is what xs-backup replaces: an rsync daemon on the server
// and, per laptop per night, `rsync -a --delete --link-dest=<previous night>`
// into a new snapshot folder. It also runs util-linux hardlink over the
// whole tree after each night for the "cross-user hardlinks" variant.
type rsyncLinkDest struct {
	folderChains
	bin, hardlinkBin string
	port             int
	cmd              *exec.Cmd
	waited           chan error
}

// folderChains is the snapshot-folder bookkeeping of both rsync baselines:
// tree/<chain>/night-NN, one chain per laptop (a new one after a reflash).
type folderChains struct {
	tree  string
	mu    sync.Mutex
	chain map[int]string // laptop -> folder chain
	prev  map[int]string // laptop -> previous night's folder in its chain, "" if none
	last  map[int]string // laptop -> newest snapshot folder
}

// init creates a chain folder for every laptop under tree.
func (f *folderChains) init(sc *school, tree string) error {
	f.tree = tree
	f.chain, f.prev, f.last = map[int]string{}, map[int]string{}, map[int]string{}
	for _, l := range sc.laptops {
		f.chain[l.idx] = l.name
		if err := os.MkdirAll(filepath.Join(tree, l.name), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// current is the laptop's chain and previous night's folder ("" if none).
func (f *folderChains) current(l *laptop) (chain, prev string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chain[l.idx], f.prev[l.idx]
}

// done records night k's folder as the laptop's newest.
func (f *folderChains) done(l *laptop, chain string, k int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prev[l.idx] = nightDir(k)
	f.last[l.idx] = filepath.Join(f.tree, chain, nightDir(k))
}

// newest is the laptop's newest snapshot folder.
func (f *folderChains) newest(l *laptop) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[l.idx]
}

// reflash starts a new folder chain: the new laptop has no previous night.
func (f *folderChains) reflash(_ context.Context, l *laptop) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chain[l.idx] = l.name + "-reflashed"
	f.prev[l.idx] = ""
	return os.MkdirAll(filepath.Join(f.tree, f.chain[l.idx]), 0o755)
}

// night0 is where a file of the laptop's first chain was on night 0.
func (f *folderChains) night0(l *laptop, rel string) string {
	return filepath.Join(f.tree, l.name, nightDir(0), filepath.FromSlash(rel))
}

// rsyncFilters leave out what every system leaves out of a Journal.
func rsyncFilters() []string {
	var args []string
	for _, n := range excludeNames {
		args = append(args, "--exclude=/"+n)
	}
	return append(args, "--exclude=*.tmp", "--exclude=.tmp*", "--exclude=*~")
}

// stopDaemon sends SIGTERM and waits for waited, killing after 20 s.
func stopDaemon(cmd *exec.Cmd, waited chan error) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-waited
	}
}

func (r *rsyncLinkDest) name() string { return "rsync" }

func (r *rsyncLinkDest) start(ctx context.Context, sc *school, work string) error {
	if err := r.init(sc, filepath.Join(work, "tree")); err != nil {
		return err
	}
	var err error
	if r.port, err = freePort(); err != nil {
		return err
	}
	ids := ""
	if os.Geteuid() == 0 { // a root daemon would otherwise write as nobody
		ids = "uid = 0\ngid = 0\n"
	}
	conf := fmt.Sprintf("use chroot = no\nlog file = %s\nmax connections = 0\n[school]\npath = %s\nread only = no\nuse chroot = no\nnumeric ids = yes\n%s",
		filepath.Join(work, "rsyncd.log"), r.tree, ids)
	confPath := filepath.Join(work, "rsyncd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	r.cmd = exec.Command(r.bin, "--daemon", "--no-detach", "--config", confPath, "--port", strconv.Itoa(r.port), "--address", "127.0.0.1")
	r.cmd.Stderr = os.Stderr
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start the rsync daemon: %w", err)
	}
	r.waited = make(chan error, 1)
	go func() { r.waited <- r.cmd.Wait() }()
	return waitListening(r.port, r.waited, filepath.Join(work, "rsyncd.log"))
}

var (
	rsyncSentRe = regexp.MustCompile(`Total bytes sent: ([\d,]+)`)
	rsyncRecvRe = regexp.MustCompile(`Total bytes received: ([\d,]+)`)
)

func statNum(re *regexp.Regexp, s string) (int64, bool) {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
	return n, err == nil
}

func nightDir(k int) string { return fmt.Sprintf("night-%02d", k) }

func (r *rsyncLinkDest) backup(ctx context.Context, l *laptop, k int) (int64, time.Duration, error) {
	chain, prev := r.current(l)
	args := append([]string{"-a", "--delete", "--stats"}, rsyncFilters()...)
	if prev != "" {
		args = append(args, "--link-dest=/"+chain+"/"+prev) // module-absolute: the daemon strips a leading ../
	}
	args = append(args, l.journal+"/", fmt.Sprintf("rsync://127.0.0.1:%d/school/%s/%s/", r.port, chain, nightDir(k)))
	p, err := run(ctx, "", nil, r.bin, args...)
	if err != nil {
		return 0, 0, err
	}
	if p.code != 0 {
		return 0, 0, p.failed("rsync " + l.name)
	}
	sent, ok1 := statNum(rsyncSentRe, p.stdout)
	recv, ok2 := statNum(rsyncRecvRe, p.stdout)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("rsync --stats for %s: no byte counts in %q", l.name, p.stdout)
	}
	r.done(l, chain, k)
	return sent + recv, p.cpu, nil
}

// serverCPU includes the per-connection children the daemon has reaped.
func (r *rsyncLinkDest) serverCPU() time.Duration { return procCPU(r.cmd.Process.Pid) }

// disk is the tree as it is (after hardlink, if hardlink has run).
func (r *rsyncLinkDest) disk() (int64, error) { return diskUsage(r.tree) }

// plainDisk is what the tree would take without cross-user hardlinks: each
// folder chain counted on its own (hardlinks within a chain, made by
// --link-dest, count once; a file shared by two chains counts twice).
func (r *rsyncLinkDest) plainDisk() (int64, error) {
	ents, err := os.ReadDir(r.tree)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, e := range ents {
		n, err := diskUsage(filepath.Join(r.tree, e.Name()))
		if err != nil {
			return 0, err
		}
		sum += n
	}
	fi, err := os.Stat(r.tree)
	if err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			sum += st.Blocks * 512
		}
	}
	return sum, nil
}

// hardlink runs util-linux hardlink over the whole tree; it merges files
// with equal content, mode, owner and time across every laptop and night.
func (r *rsyncLinkDest) hardlink(ctx context.Context) (time.Duration, time.Duration, error) {
	p, err := run(ctx, "", nil, r.hardlinkBin, "-q", r.tree)
	if err != nil {
		return 0, 0, err
	}
	if p.code != 0 {
		return 0, 0, p.failed("hardlink " + r.tree)
	}
	return p.wall, p.cpu, nil
}

func (r *rsyncLinkDest) state(*laptop) (int64, error) { return 0, nil }

// restoreWhole pulls the newest snapshot folder from the rsync daemon, as
// a laptop restoring over the network would (before 2026-12-06 this was a
// local cp -a on the server, which is no restore a laptop can make).
func (r *rsyncLinkDest) restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error) {
	return r.pull(ctx, r.newest(l)+"/", dir+"/", dir)
}

// restoreDoc pulls one file of night 0 from the daemon.
func (r *rsyncLinkDest) restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error) {
	dst := filepath.Join(dir, "data")
	return r.pull(ctx, r.night0(l, rel), dst, dst)
}

// pull fetches src (a path under the tree) to dst with rsync -a from the
// daemon.
func (r *rsyncLinkDest) pull(ctx context.Context, src, dst, landed string) (string, time.Duration, error) {
	rel, err := filepath.Rel(r.tree, src)
	if err != nil {
		return "", 0, err
	}
	if strings.HasSuffix(src, "/") {
		rel += "/"
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dst)), 0o755); err != nil {
		return "", 0, err
	}
	p, err := run(ctx, "", nil, r.bin, "-a", fmt.Sprintf("rsync://127.0.0.1:%d/school/%s", r.port, filepath.ToSlash(rel)), dst)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("rsync pull of " + rel)
	}
	return landed, p.wall, nil
}

func (r *rsyncLinkDest) stop() error {
	stopDaemon(r.cmd, r.waited)
	r.cmd = nil
	return nil
}
