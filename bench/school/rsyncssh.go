package school

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rsyncSSH is ds-backup as it ran in schools: rsync over SSH into a
// per-laptop folder with --link-dest to the previous night. A private sshd
// listens on loopback; the laptops reach it through a counting TCP relay in
// the benchmark process, so the wire figure is the SSH stream itself
// (encryption and framing included), not rsync's own count.
type rsyncSSH struct {
	folderChains
	bin, sshd, ssh, keygen string
	sshdPort               int
	relay                  net.Listener
	relayWG                sync.WaitGroup
	wire                   atomic.Int64
	cmd                    *exec.Cmd
	waited                 chan error
	login                  string // user@127.0.0.1
	rsh                    string // the -e command rsync runs
}

func (r *rsyncSSH) name() string { return RsyncSSH }

func (r *rsyncSSH) start(ctx context.Context, sc *school, work string) error {
	if err := r.init(sc, filepath.Join(work, "tree")); err != nil {
		return err
	}
	hostKey, clientKey := filepath.Join(work, "host_ed25519"), filepath.Join(work, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		p, err := run(ctx, "", nil, r.keygen, "-q", "-t", "ed25519", "-N", "", "-f", k)
		if err != nil {
			return err
		}
		if p.code != 0 {
			return p.failed("ssh-keygen")
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		return err
	}
	auth := filepath.Join(work, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		// sshd running as root needs its privilege-separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return err
		}
	}
	if r.sshdPort, err = freePort(); err != nil {
		return err
	}
	u, err := user.Current()
	if err != nil {
		return err
	}
	// Sessions get an empty home: Debian's bash sources ~/.bashrc for an
	// ssh command, and a developer's .bashrc (pyenv, nvm) would otherwise
	// add a second of CPU to every rsync. ds-backup's accounts had none.
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
SetEnv HOME=%s
HostKey %s
AuthorizedKeysFile %s
PidFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200
LogLevel ERROR
`, r.sshdPort, home, hostKey, auth, filepath.Join(work, "sshd.pid"))
	confPath := filepath.Join(work, "sshd_config")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	r.cmd = exec.Command(r.sshd, "-D", "-e", "-f", confPath)
	logFile, err := os.Create(filepath.Join(work, "sshd.log"))
	if err != nil {
		return err
	}
	r.cmd.Stderr = logFile
	if err := r.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start sshd: %w", err)
	}
	r.waited = make(chan error, 1)
	go func() { r.waited <- r.cmd.Wait(); logFile.Close() }()
	if err := waitListening(r.sshdPort, r.waited, filepath.Join(work, "sshd.log")); err != nil {
		return err
	}
	if r.relay, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return err
	}
	r.relayWG.Add(1)
	go r.serveRelay()
	r.login = u.Username + "@127.0.0.1"
	r.rsh = fmt.Sprintf("%s -F /dev/null -p %d -i %s -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
		r.ssh, r.relay.Addr().(*net.TCPAddr).Port, clientKey)
	// One login proves the set-up before the first night.
	p, err := run(ctx, "", nil, r.ssh, append(strings.Fields(r.rsh)[1:], r.login, "true")...)
	if err != nil {
		return err
	}
	if p.code != 0 {
		return p.failed("ssh " + r.login + " (see " + filepath.Join(work, "sshd.log") + ")")
	}
	return nil
}

// serveRelay forwards each connection to sshd and counts both directions.
func (r *rsyncSSH) serveRelay() {
	defer r.relayWG.Done()
	for {
		c, err := r.relay.Accept()
		if err != nil {
			return
		}
		r.relayWG.Add(1)
		go func() {
			defer r.relayWG.Done()
			defer c.Close()
			s, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.sshdPort))
			if err != nil {
				return
			}
			defer s.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				n, _ := io.Copy(dst, src)
				r.wire.Add(n)
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(s, c)
			go pipe(c, s)
			<-done
			<-done
		}()
	}
}

func (r *rsyncSSH) beginNight() error         { r.wire.Store(0); return nil }
func (r *rsyncSSH) nightWire() (int64, error) { return r.wire.Load(), nil }

func (r *rsyncSSH) backup(ctx context.Context, l *laptop, k int) (int64, time.Duration, error) {
	chain, prev := r.current(l)
	args := append([]string{"-a", "--delete", "-e", r.rsh}, rsyncFilters()...)
	if prev != "" {
		args = append(args, "--link-dest="+filepath.Join(r.tree, chain, prev))
	}
	dst := filepath.Join(r.tree, chain, nightDir(k))
	args = append(args, l.journal+"/", r.login+":"+dst+"/")
	p, err := run(ctx, "", nil, r.bin, args...)
	if err != nil {
		return 0, 0, err
	}
	if p.code != 0 {
		return 0, 0, p.failed("rsync over ssh " + l.name)
	}
	r.done(l, chain, k)
	return 0, p.cpu, nil
}

// serverCPU is sshd's, which includes every session (and the rsync it ran)
// once sshd has reaped it.
func (r *rsyncSSH) serverCPU() time.Duration { return procCPU(r.cmd.Process.Pid) }

func (r *rsyncSSH) disk() (int64, error) { return diskUsage(r.tree) }

func (r *rsyncSSH) state(*laptop) (int64, error) { return 0, nil }

// restoreWhole pulls the newest snapshot folder back over SSH, as a
// technician restoring a laptop from ds-backup would.
func (r *rsyncSSH) restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error) {
	return r.pull(ctx, r.newest(l)+"/", dir+"/", dir)
}

func (r *rsyncSSH) restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error) {
	dst := filepath.Join(dir, "data")
	return r.pull(ctx, r.night0(l, rel), dst, dst)
}

func (r *rsyncSSH) pull(ctx context.Context, src, dst, landed string) (string, time.Duration, error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dst)), 0o755); err != nil {
		return "", 0, err
	}
	p, err := run(ctx, "", nil, r.bin, "-a", "-e", r.rsh, r.login+":"+src, dst)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("rsync over ssh from " + src)
	}
	return landed, p.wall, nil
}

func (r *rsyncSSH) stop() error {
	if r.relay != nil {
		r.relay.Close()
		r.relayWG.Wait()
		r.relay = nil
	}
	stopDaemon(r.cmd, r.waited)
	r.cmd = nil
	return nil
}

// freePort is a TCP port on loopback that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until something accepts on port, or the process
// whose exit waited reports has died.
func waitListening(port int, waited chan error, logPath string) error {
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-waited:
			waited <- err
			return fmt.Errorf("the server exited (%v); see %s", err, logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the server does not answer on port " + strconv.Itoa(port) + "; see " + logPath)
		}
	}
}
