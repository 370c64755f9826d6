// Command demo shows xs-backup working end to end on this machine: a local
// xs-backupd, three laptops' Journals (two share the same books) backed up
// over QUIC by the real xo-backup, an edit, a second round, a restore
// checked byte for byte, and what the server stores. Run it with `make demo`.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

func main() {
	bin := flag.String("bin", "bin", "directory with xs-backupd, xo-backup and xs-admin")
	keep := flag.Bool("keep", false, "keep the demo's files afterwards")
	flag.Parse()
	if err := run(*bin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func run(bin string, keep bool) error {
	work, err := os.MkdirTemp("", "xs-backup-demo")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	fmt.Println("== xs-backup demo in", work)
	data := filepath.Join(work, "server")
	daemon := exec.Command(filepath.Join(bin, "xs-backupd"), "--config", "", "--listen", "127.0.0.1:0", "--data", data, "--metrics", "", "--page", "127.0.0.1:0", "--max-sessions", "2")
	stderr, _ := daemon.StderrPipe()
	if err := daemon.Start(); err != nil {
		return fmt.Errorf("start xs-backupd (run `make build` first): %w", err)
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listen=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("xs-backupd did not start")
	}
	fmt.Printf("xs-backupd listening on %s (QUIC), store in %s\n\n", addr, data)

	names := []string{"ana", "bongani", "chen"}
	var total int64
	for i, n := range names {
		src := filepath.Join(work, n, "datastore")
		o := journalgen.Small(uint64(i + 1))
		o.Entries, o.MediaBytes, o.BookBytes = 20, 256<<10, 1<<20
		if _, err := journalgen.Generate(src, o); err != nil {
			return err
		}
		total += dirSize(src)
		if out, err := xo(bin, work, n, "register", "--server", addr, "--serial", fmt.Sprintf("SHC%04dDEMO", i), "--nickname", n); err != nil {
			return fmt.Errorf("register %s: %v\n%s", n, err, out)
		}
	}
	fmt.Printf("Three laptops registered; their Journals hold %s (the books are the same for everyone).\n\n", cli.Bytes(total))

	round := func(title string, force bool) error {
		fmt.Println("--", title)
		for _, n := range names {
			args := []string{"run", "--source", filepath.Join(work, n, "datastore"), "--json"}
			if force {
				args = append(args, "--force")
			}
			out, err := xo(bin, work, n, args...)
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", n, err, out)
			}
			var s map[string]any
			json.Unmarshal([]byte(out), &s)
			fmt.Printf("  %-8s %3.0f files  read %9s  uploaded %9s in %3.0f new chunks  (%9s on the wire, handshake included)  %4.0f ms\n", n, s["files"],
				cli.Bytes(int64(s["bytes_read"].(float64))), cli.Bytes(int64(s["bytes_sent"].(float64))), s["chunks_new"],
				cli.Bytes(int64(s["wire_bytes_sent"].(float64))), s["duration_ms"])
		}
		fmt.Printf("  server store now %s\n\n", cli.Bytes(dirSize(filepath.Join(data, "packs"))))
		return nil
	}
	if err := round("First backup of every laptop", false); err != nil {
		return err
	}
	if err := round("Second run, nothing changed (the file cache means no file is read)", true); err != nil {
		return err
	}
	if err := journalgen.Mutate(filepath.Join(work, "bongani", "datastore"), 2, 1); err != nil {
		return err
	}
	if err := round("bongani edited a document and made a new one", true); err != nil {
		return err
	}

	fmt.Println("-- bongani's laptop is reflashed: restore the whole Journal from the server")
	restored := filepath.Join(work, "bongani-new", "datastore")
	out, err := xo(bin, work, "bongani", "restore", "--all", "--to", restored)
	if err != nil {
		return fmt.Errorf("restore: %v\n%s", err, out)
	}
	fmt.Print("  ", out)
	if err := dircmp.Compare(filepath.Join(work, "bongani", "datastore"), restored, backup.JournalExclude); err != nil {
		return fmt.Errorf("restored Journal differs: %w", err)
	}
	fmt.Println("  restored Journal is identical to the original (Xapian index excluded, Sugar rebuilds it)")
	fmt.Println()
	adm := exec.Command(filepath.Join(bin, "xs-admin"), "--data", data, "users")
	adm.Stdout, adm.Stderr = os.Stdout, os.Stderr
	fmt.Println("-- xs-admin users (through the running daemon)")
	if err := adm.Run(); err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("-- a teacher looks for chen's documents by title: xs-admin ls SHC0002DEMO")
	ls := exec.Command(filepath.Join(bin, "xs-admin"), "--data", data, "ls", "SHC0002DEMO")
	ls.Stdout, ls.Stderr = os.Stdout, os.Stderr
	if err := ls.Run(); err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("-- chen gets a link to the restore page: xo-backup restore-link")
	out, err = xo(bin, work, "chen", "restore-link", "--no-open")
	if err != nil {
		return fmt.Errorf("restore-link: %v\n%s", err, out)
	}
	fmt.Print("  ", strings.ReplaceAll(out, "\n", "\n  "))
	fmt.Printf("\n%s of Journals, 9 snapshots, stored in %s of pack files.\n", cli.Bytes(total), cli.Bytes(dirSize(filepath.Join(data, "packs"))))
	fmt.Println("Demo finished.")
	return nil
}

func xo(bin, work, laptop string, args ...string) (string, error) {
	state := filepath.Join(work, laptop, "state")
	cmd := exec.Command(filepath.Join(bin, "xo-backup"), append([]string{"--state", state}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimLeft(string(out), "\n"), err
}
