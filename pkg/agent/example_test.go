package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// A laptop's whole life with its school server: register once, let the
// timer's run back the Journal up (a second run the same day does nothing),
// list the backups and bring a lost file back. The school server runs in
// this process on loopback; on a laptop it is xs-backupd on the school
// server.
func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-agent-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	addr, stop := exampleServer(filepath.Join(tmp, "server"))
	defer stop()

	journal := filepath.Join(tmp, "datastore")
	entry := filepath.Join(journal, "1f", "1f2e3d4c-0000-4000-8000-000000000001")
	os.MkdirAll(entry, 0o755)
	os.WriteFile(filepath.Join(journal, "version"), []byte("6"), 0o644)
	os.WriteFile(filepath.Join(entry, "data"), []byte("my first TurtleArt project\n"), 0o644)

	// The laptop's state: its key, the pinned server key, the file cache.
	// agent.DefaultStateDir() on a Sugar laptop.
	st := agent.State{Dir: filepath.Join(tmp, "state")}
	reg, err := agent.Register(ctx, st, agent.RegisterOptions{Server: addr, Serial: "SHC12345678", Nickname: "Ana"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("registered:", reg.Serial, "approved:", reg.Approved)

	opts := agent.RunOptions{
		Source:         journal,                          // default: agent.DefaultSource()
		PowerSupplyDir: filepath.Join(tmp, "no-battery"), // no battery: never "low"
		Host:           "xo-ana",
	}
	res, err := agent.Run(ctx, st, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first run:", res.Outcome, "files:", res.Backup.Files)
	res, err = agent.Run(ctx, st, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("second run:", res.Outcome, res.Skip)

	snaps, err := agent.Snapshots(ctx, st)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("backups on the server:", len(snaps))

	// Restore one entry's data from the latest backup into a folder.
	out := filepath.Join(tmp, "restored")
	rr, _, err := agent.Restore(ctx, st, agent.RestoreOptions{
		Target: out,
		Paths:  []string{"1f/1f2e3d4c-0000-4000-8000-000000000001/data"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored files:", rr.Files)
	b, _ := os.ReadFile(filepath.Join(out, "1f", "1f2e3d4c-0000-4000-8000-000000000001", "data"))
	fmt.Print(string(b))
	// Output:
	// registered: SHC12345678 approved: true
	// first run: done files: 2
	// second run: skipped done-today
	// backups on the server: 1
	// restored files: 1
	// my first TurtleArt project
}

// Before registration the timer's run ends at once, without an error (the
// timer must not fail every five minutes); what needs the server says why.
func ExampleRun_notRegistered() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "xs-agent-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	st := agent.State{Dir: tmp}

	res, err := agent.Run(ctx, st, agent.RunOptions{Source: tmp, PowerSupplyDir: filepath.Join(tmp, "no-battery")})
	fmt.Println(res.Outcome, res.Skip, err)
	_, err = agent.Snapshots(ctx, st)
	fmt.Println(errors.Is(err, agent.ErrNotRegistered))
	// Output:
	// skipped not-registered <nil>
	// true
}

// exampleServer runs a school server (xs-backupd's daemon) in this
// process, on a free loopback port, with open registration.
func exampleServer(dir string) (addr string, stop func()) {
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.RestorePage.Listen = "127.0.0.1:0", dir, "", ""
	cfg.Reserve = 0 // no free-space reserve: the example runs on any disk
	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready:
	case err := <-done:
		log.Fatal(err)
	}
	return d.Addr.String(), func() {
		cancel()
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
}
