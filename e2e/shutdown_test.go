package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
)

// TestSIGTERMUnderLoad: laptops upload, staff run admin commands and
// children load the restore page while xs-backupd gets SIGTERM. The daemon
// lets what is in progress finish, exits 0 within its grace period without
// a panic, and after a restart every snapshot a laptop was told about is
// there; every laptop's next run completes.
func TestSIGTERMUnderLoad(t *testing.T) {
	data := t.TempDir()
	d := StartDaemon(t, data)
	const laptops = 4 // the default admission grants 4 sessions at once
	states, srcs := make([]string, laptops), make([]string, laptops)
	for i := range laptops {
		states[i], srcs[i] = t.TempDir(), t.TempDir()
		o := journalgen.Small(uint64(100 + i))
		o.MediaBytes = 4 << 20 // tens of MiB each: uploads are in flight at the signal
		if _, err := journalgen.Generate(srcs[i], o); err != nil {
			t.Fatal(err)
		}
		if _, e, code := register(t, d, states[i], fmt.Sprintf("SHC5%02d", i)); code != 0 {
			t.Fatalf("register: %s", e)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	told := map[int]string{} // laptop -> snapshot it was told is committed
	for i := range laptops {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, errOut, code := xo(t, states[i], "run", "--source", srcs[i], "--json")
			if code != 0 && !strings.Contains(out+errOut, "shutting down") && !strings.Contains(out+errOut, "restarted") && code != 3 {
				// Cut off by the stop, a laptop must hear why (and retry
				// later), never "internal error: context canceled".
				t.Errorf("laptop %d: exit %d %s %s", i, code, out, errOut)
			}
			if code == 0 && (strings.Contains(out, `"outcome": "done"`) || strings.Contains(out, `"outcome":"done"`)) {
				mu.Lock()
				told[i] = out
				mu.Unlock()
			}
		}(i)
	}
	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	load.Add(2)
	go func() { // staff
		defer load.Done()
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			admin(t, data, "users", "--json")
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() { // the restore page
		defer load.Done()
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			if resp, err := http.Get("http://" + d.PageAddr + "/"); err == nil {
				resp.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	d.Cmd.Process.Signal(syscall.SIGTERM)
	err := d.Cmd.Wait()
	took := time.Since(start)
	close(stopLoad)
	load.Wait()
	wg.Wait()
	if err != nil {
		t.Fatalf("xs-backupd after SIGTERM under load: %v (after %v)", err, took)
	}
	if took > 25*time.Second {
		t.Fatalf("xs-backupd took %v to stop", took)
	}
	t.Logf("stopped in %v; %d of %d laptops finished their backup before or during the stop, the others were told the server is shutting down", took, len(told), laptops)
	// Restart where the laptops know it: every acknowledged snapshot is there.
	d2 := StartDaemon(t, data, "--listen", d.Addr)
	for i := range laptops {
		serial := fmt.Sprintf("SHC5%02d", i)
		n := snapshotCount(t, d2, serial)
		if _, ok := told[i]; ok && n == 0 {
			t.Errorf("%s was told its backup is done, but the server has no snapshot", serial)
		}
		runBackup(t, states[i], srcs[i], "--force")
		restoreAll(t, states[i], srcs[i])
	}
}
