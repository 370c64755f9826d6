package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestShutdownUnderFiftyBackups stops a daemon (the context SIGTERM
// cancels in xs-backupd) while 50 laptops back up at once, staff call the
// admin socket and children load the restore page. Run returns nil within
// the grace period, every laptop hears either "done" or a refusal it can
// act on (never "internal error: context canceled"), TestMain's goleak
// finds no goroutine left behind, and after a restart on the same data
// every snapshot a laptop was told about is there and restores.
func TestShutdownUnderFiftyBackups(t *testing.T) {
	if testing.Short() {
		t.Skip("50 laptops")
	}
	const laptops = 50
	data := t.TempDir()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve = "127.0.0.1:0", data, "", 0
	cfg.RestorePage.Listen = "127.0.0.1:0"
	d, stop := runDaemon(t, cfg)
	stopped := make(chan error, 1)
	var stopOnce sync.Once
	defer stopOnce.Do(func() { stop() })

	ls := make([]*laptop, laptops)
	for i := range ls {
		ls[i] = newLaptop(t, d, fmt.Sprintf("SHCT%03d", i), uint64(500+i))
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		told = map[int]string{} // laptop -> snapshot it was told is committed
		cut  int
	)
	started := make(chan struct{}, laptops)
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			res, err := agent.Run(context.Background(), l.st, agent.RunOptions{Source: l.src, Force: true, MaxSlotWait: time.Minute})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && res.Outcome == agent.Done:
				told[i] = res.Backup.Snapshot
			case err == nil:
				cut++ // told to come back later
			case proto.KindOf(err) == proto.KindShutdown || errors.Is(err, proto.ErrUnreachable) ||
				strings.Contains(err.Error(), "shutting down") || strings.Contains(err.Error(), "restarted"):
				cut++
			default:
				t.Errorf("%s: cut off by the stop with %v (kind %v): a laptop must hear that the server is stopping", l.serial, err, proto.KindOf(err))
			}
		}()
	}

	// Staff and children keep the other two doors busy until the stop.
	ac, err := admin.Dial(filepath.Join(data, admin.DefaultSocket))
	if err != nil {
		t.Fatal(err)
	}
	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	var adminOK, pageOK int
	load.Add(2)
	go func() {
		defer load.Done()
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			if _, err := ac.Users(context.Background(), admin.UsersRequest{}); err == nil {
				adminOK++
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		defer load.Done()
		hc := &http.Client{Timeout: 5 * time.Second}
		defer hc.CloseIdleConnections()
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			if resp, err := hc.Get("http://" + d.PageAddr.String() + "/"); err == nil {
				resp.Body.Close()
				pageOK++
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for range laptops {
		<-started
	}
	// Stop once some backups are committed and others are in flight.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(told)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	inFlight := d.Server.Admission(true)
	begin := time.Now()
	go stopOnce.Do(func() { stopped <- stop() })
	var runErr error
	select {
	case runErr = <-stopped:
	case <-time.After(server.ShutdownGrace + 10*time.Second):
		t.Fatalf("Run did not return %v after the stop", server.ShutdownGrace+10*time.Second)
	}
	took := time.Since(begin)
	close(stopLoad)
	load.Wait()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("Run after the stop under load: %v", runErr)
	}
	t.Logf("stopped in %v with %d sessions admitted and %d waiting; %d laptops done, %d told to come back; %d admin calls and %d page loads answered",
		took.Round(time.Millisecond), inFlight.Running, inFlight.Waiting, len(told), cut, adminOK, pageOK)
	if adminOK == 0 || pageOK == 0 {
		t.Errorf("the admin socket (%d answers) and the restore page (%d) were not under load", adminOK, pageOK)
	}

	// The store is closed: calls say so, never panic.
	if _, err := d.Store.UserBySerial(ls[0].serial); !errors.Is(err, store.ErrClosed) {
		t.Errorf("store after Run: %v, want ErrClosed", err)
	}

	// Restart on the same data and address: what was acknowledged is there.
	cfg2 := cfg
	cfg2.Listen = d.Addr.String()
	d2, stop2 := runDaemon(t, cfg2)
	defer func() {
		if err := stop2(); err != nil {
			t.Error(err)
		}
	}()
	for i, snap := range told {
		u, err := d2.Store.UserBySerial(ls[i].serial)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range d2.Store.Snapshots(u.ID) {
			found = found || string(s.ID) == snap
		}
		if !found {
			t.Errorf("%s was told %s is committed; after the restart the server does not have it", ls[i].serial, snap)
		}
	}
	// A few laptops finish afterwards and restore byte for byte.
	for _, l := range []*laptop{ls[0], ls[laptops/2], ls[laptops-1]} {
		res := l.run(t)
		l.restoreAndCompare(t, res.Backup.Snapshot)
	}
}
