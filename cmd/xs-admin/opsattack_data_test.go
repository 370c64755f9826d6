package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// opsPolicyStore makes, in dir/data, a store with one laptop and four
// snapshots two days apart in January 2026 (the setting of
// TestStoppedDaemonKeepsTheConfiguredPolicy), and a configuration that
// keeps a year; it returns the data directory and the configuration file.
func opsPolicyStore(t *testing.T, dir string) (string, string) {
	t.Helper()
	ctx := context.Background()
	data := filepath.Join(dir, "data")
	day := time.Date(2026, 1, 1, 10, 0, 0, 0, time.Local)
	s, err := store.Open(ctx, data, store.Options{Reserve: -1, Now: func() time.Time { return day }})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for i := 0; i < 4; i++ {
		os.WriteFile(filepath.Join(src, "diary.txt"), fmt.Appendf(nil, "day %d", i), 0o644)
		if _, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()}); err != nil {
			t.Fatal(err)
		}
		day = day.AddDate(0, 0, 2)
	}
	s.Close()
	conf := filepath.Join(dir, "xs-backup.toml")
	os.WriteFile(conf, fmt.Appendf(nil, "data = %q\nreserve = \"0\"\n[retention]\nkeep_within_days = 365\n", data), 0o644)
	return data, conf
}

// opsXsAdminIn runs xs-admin in the working directory wd.
func opsXsAdminIn(t *testing.T, wd string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "XS_BACKUP_CONFIG=")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// --data naming the configured store by another spelling (a path relative
// to the working directory, or through a symlink such as /var/lib/xs-backup
// -> /library/xs-backup) is the same store, not "another store": it must
// keep the configured retention policy. xs-admin compares the two with
// filepath.Clean only, takes the store for another one and applies the
// built-in policy: retention deletes snapshots the school chose to keep
// (here 3 of 4 with keep_within_days = 365 configured).
func TestOpsAttackSameStoreOtherSpellingKeepsConfiguredPolicy(t *testing.T) {
	dir := t.TempDir()
	data, conf := opsPolicyStore(t, dir)
	link := filepath.Join(t.TempDir(), "xs-backup")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	deleted := func(wd string, args ...string) int {
		t.Helper()
		out, errOut, code := opsXsAdminIn(t, wd, append(args, "--json", "retention", "--dry-run", "--at", "2026-06-01")...)
		var rep store.RetentionReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("retention %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return rep.Deleted
	}
	if n := deleted(dir, "--config", conf); n != 0 {
		t.Fatalf("the configured policy would delete %d; the setting is wrong", n)
	}
	if n := deleted(dir, "--config", conf, "--data", "data"); n != 0 {
		t.Errorf("--data data (relative, the configured store) would delete %d of 4 snapshots: the built-in policy, not the configured one", n)
	}
	if n := deleted(dir, "--config", conf, "--data", link); n != 0 {
		t.Errorf("--data through a symlink to the configured store would delete %d of 4 snapshots: the built-in policy, not the configured one", n)
	}
}

// opsDaemon starts xs-backupd on data as the unprivileged user the
// package's unit uses (here nobody) and reports whether it became ready,
// with its log. It stops the daemon with SIGTERM.
func opsDaemon(t *testing.T, daemon, data string) (bool, string) {
	t.Helper()
	cmd := exec.Command(daemon, "--config", "", "--data", data, "--listen", "127.0.0.1:0", "--metrics", "", "--page", "", "--log-format", "text")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var log strings.Builder
	pr, pw, _ := os.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	lines := make(chan string)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				lines <- string(buf[:n])
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	ready := false
	deadline := time.After(15 * time.Second)
loop:
	for !ready {
		select {
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			log.WriteString(l)
			ready = strings.Contains(log.String(), "xs-backupd ready")
		case <-deadline:
			break loop
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for l := range lines {
			_ = l
		}
	}()
	cmd.Wait()
	return ready, log.String()
}

// The README's own recipe for index problems is "systemctl stop
// xs-backupd; xs-admin check --repair; systemctl start xs-backupd", and
// staff run xs-admin with sudo (the data directory is 0750, owned by the
// daemon's user xs-backup). Run as root with the daemon stopped, xs-admin
// writes files root owns into the store (users/, the rebuilt index), and the
// daemon, which runs as xs-backup, can no longer start: it says the index
// is damaged (permission denied), whose advice is the same repair again.
func TestOpsAttackRootXsAdminLeavesStoreTheDaemonCanOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs xs-admin as root and the daemon as nobody, as the package does")
	}
	top, err := os.MkdirTemp("", "opsattack-own")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(top)
	os.Chmod(top, 0o755)
	daemon := filepath.Join(top, "xs-backupd")
	if out, err := exec.Command("go", "build", "-o", daemon, "../xs-backupd").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(top, "xs-backup")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	os.Chown(data, 65534, 65534)
	// The daemon's first start makes the store, as the service's user.
	if ok, log := opsDaemon(t, daemon, data); !ok {
		t.Fatalf("the daemon did not start on its own new store:\n%s", log)
	}
	// Staff, as root, with the daemon stopped.
	for _, args := range [][]string{{"register", "SHC0042", "--nickname", "ana"}, {"check", "--repair"}} {
		if out, errOut, code := xsAdmin(t, nil, append([]string{"--data", data}, args...)...); code != 0 {
			t.Fatalf("xs-admin %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	var rootOwned []string
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Uid == 0 {
			rel, _ := filepath.Rel(data, p)
			rootOwned = append(rootOwned, rel)
		}
		return nil
	})
	ok, log := opsDaemon(t, daemon, data)
	if !ok {
		t.Errorf("after xs-admin register and check --repair run as root, the daemon (as the store's owner) does not start; files root now owns: %v\n%s", rootOwned, log)
		if strings.Contains(log, "damaged") {
			t.Errorf("and it calls a permission problem damage (whose remedy, a repair as root, does it again)")
		}
	}
}
