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
	bin, hardlinkBin string
	root, tree       string
	port             int
	cmd              *exec.Cmd
	waited           chan error

	mu    sync.Mutex
	chain map[int]string // laptop -> folder chain (a new one after a reflash)
	prev  map[int]string // laptop -> previous night's folder in its chain, "" if none
	// last is each laptop's newest snapshot folder.
	last map[int]string
}

func (r *rsyncLinkDest) name() string { return "rsync" }

func (r *rsyncLinkDest) start(ctx context.Context, sc *school, work string) error {
	r.root, r.tree = work, filepath.Join(work, "tree")
	r.chain, r.prev, r.last = map[int]string{}, map[int]string{}, map[int]string{}
	for _, l := range sc.laptops {
		r.chain[l.idx] = l.name
		if err := os.MkdirAll(filepath.Join(r.tree, l.name), 0o755); err != nil {
			return err
		}
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
	r.mu.Lock()
	chain, prev := r.chain[l.idx], r.prev[l.idx]
	r.mu.Unlock()
	args := []string{"-a", "--delete", "--stats"}
	for _, n := range excludeNames {
		args = append(args, "--exclude=/"+n)
	}
	args = append(args, "--exclude=*.tmp", "--exclude=.tmp*", "--exclude=*~")
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
	r.mu.Lock()
	r.prev[l.idx] = nightDir(k)
	r.last[l.idx] = filepath.Join(r.tree, chain, nightDir(k))
	r.mu.Unlock()
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

// reflash starts a new folder chain: the new laptop has no previous night.
func (r *rsyncLinkDest) reflash(_ context.Context, l *laptop) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chain[l.idx] = l.name + "-reflashed"
	r.prev[l.idx] = ""
	return os.MkdirAll(filepath.Join(r.tree, r.chain[l.idx]), 0o755)
}

// restoreWhole is a plain copy of the newest snapshot folder.
func (r *rsyncLinkDest) restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error) {
	r.mu.Lock()
	src := r.last[l.idx]
	r.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", 0, err
	}
	p, err := run(ctx, "", nil, "cp", "-a", src, dir)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("cp -a " + src)
	}
	return dir, p.wall, nil
}

func (r *rsyncLinkDest) restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error) {
	src := filepath.Join(r.tree, l.name, nightDir(0), filepath.FromSlash(rel))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	dst := filepath.Join(dir, "data")
	p, err := run(ctx, "", nil, "cp", "-a", src, dst)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("cp -a " + src)
	}
	return dst, p.wall, nil
}

func (r *rsyncLinkDest) stop() error {
	if r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.waited:
	case <-time.After(20 * time.Second):
		r.cmd.Process.Kill()
		<-r.waited
	}
	r.cmd = nil
	return nil
}
