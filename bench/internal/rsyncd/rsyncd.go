// Package rsyncd runs rsync's daemon for the benchmarks that compare
// against it.
package rsyncd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Start runs an rsync daemon on a free loopback port with one writable
// module at root, logging to logPath, and returns its port and the function
// that stops it.
func Start(module, root, logPath string) (int, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ids := ""
	if os.Geteuid() == 0 { // a root daemon would otherwise write as nobody
		ids = "uid = 0\ngid = 0\n"
	}
	conf := fmt.Sprintf("use chroot = no\nlog file = %s\nmax connections = 0\n[%s]\npath = %s\nread only = no\nnumeric ids = yes\n%s",
		logPath, module, root, ids)
	confPath := logPath + ".conf"
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command("rsync", "--daemon", "--no-detach", "--config", confPath, "--port", strconv.Itoa(port), "--address", "127.0.0.1")
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start the rsync daemon (is rsync installed?): %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-waited
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return port, stop, nil
		}
		select {
		case err := <-waited:
			return 0, nil, fmt.Errorf("the rsync daemon exited: %v (see %s)", err, logPath)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return 0, nil, fmt.Errorf("the rsync daemon does not listen on %d (see %s)", port, logPath)
		}
	}
}
