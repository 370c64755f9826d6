package server_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// Run a school server in this process (here on loopback, with staff
// approving each laptop), let a laptop register, approve it as staff do
// with xs-admin approve, and see its backup in the daemon's store.
func ExampleNewDaemon() {
	tmp, err := os.MkdirTemp("", "xs-server-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	cfg := server.DefaultConfig() // every setting has a working default
	cfg.Data = filepath.Join(tmp, "data")
	cfg.Listen = "127.0.0.1:0"                   // any free port
	cfg.Metrics, cfg.RestorePage.Listen = "", "" // no HTTP listeners
	cfg.Reserve = 0                              // no free-space reserve: runs on any disk
	cfg.Registration = "approve"
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	d, err := server.NewDaemon(ctx, cfg, nil) // nil: no logging
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
	defer func() {
		cancel() // Run shuts down in order and closes the store
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}()

	// A laptop registers (xo-backup register) and must wait for staff.
	journal := filepath.Join(tmp, "datastore")
	os.MkdirAll(journal, 0o755)
	os.WriteFile(filepath.Join(journal, "version"), []byte("6"), 0o644)
	laptop := agent.State{Dir: filepath.Join(tmp, "laptop")}
	reg, err := agent.Register(ctx, laptop, agent.RegisterOptions{Server: d.Addr.String(), Serial: "SHC12345678"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved at registration:", reg.Approved)
	_, err = agent.Snapshots(ctx, laptop)
	fmt.Println("waits for staff:", errors.Is(err, proto.ErrNotApproved))

	// Staff approve it (what xs-admin approve does through the admin socket).
	staff := &admin.Service{S: d.Store, Live: true}
	if _, err := staff.Approve(ctx, admin.ApproveRequest{Serial: "SHC12345678"}); err != nil {
		log.Fatal(err)
	}
	res, err := agent.Run(ctx, laptop, agent.RunOptions{Source: journal, PowerSupplyDir: filepath.Join(tmp, "no-battery"), Host: "xo-ana"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("laptop's run:", res.Outcome)

	u, err := d.Store.UserBySerial("SHC12345678")
	if err != nil {
		log.Fatal(err)
	}
	for _, sn := range d.Store.Snapshots(u.ID) {
		fmt.Printf("snapshot from %s: %d file, %d bytes\n", sn.Host, sn.Files, sn.Size)
	}
	// Output:
	// approved at registration: false
	// waits for staff: true
	// laptop's run: done
	// snapshot from xo-ana: 1 file, 1 bytes
}

// Read xs-backup.toml: settings left out keep their defaults, sizes and
// durations take units.
func ExampleLoadConfig() {
	dir, err := os.MkdirTemp("", "xs-server-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "xs-backup.toml")
	os.WriteFile(path, []byte(`
data = "/library/xs-backup"
registration = "approve"
reserve = "1GiB"

[quota]
hard = "2GB"

[retention]
keep_within_days = 14

[mothership]
address = "mothership.example.org:7457"
school = "school-a"
rate = "2Mbit"
every = "3h"
`), 0o644)

	cfg, err := server.LoadConfig(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("data:", cfg.Data, "registration:", cfg.Registration)
	fmt.Println("listen (default):", cfg.Listen)
	fmt.Println("reserve:", int64(cfg.Reserve), "hard quota:", int64(cfg.Quota.Hard))
	fmt.Println("keep within days:", cfg.Retention.KeepWithinDays, "keep monthly (default):", cfg.Retention.KeepMonthly)
	fmt.Println("off-site rate (bytes/s):", int64(cfg.Mothership.Rate), "every:", time.Duration(cfg.Mothership.Every))

	// A value that makes no sense is refused with the setting named.
	os.WriteFile(path, []byte("registration = \"maybe\"\n"), 0o644)
	_, err = server.LoadConfig(path)
	fmt.Println("refused:", err != nil)
	// Output:
	// data: /library/xs-backup registration: approve
	// listen (default): :7457
	// reserve: 1073741824 hard quota: 2000000000
	// keep within days: 14 keep monthly (default): -1
	// off-site rate (bytes/s): 250000 every: 3h0m0s
	// refused: true
}
