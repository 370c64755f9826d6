package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kaWatch holds every file open in a state directory by the process pid
// (fanotify permission events: the open waits for the answer) and kills
// pid at its kill-th open (1-based; 0 never), before that open returns. It
// records the paths opened.
type kaWatch struct {
	fd    int
	dir   string
	pid   int
	kill  int
	mu    sync.Mutex
	seen  []string
	stop  chan struct{}
	ended chan struct{}
}

// kaWatchDir starts watching dir, or skips the test where fanotify's
// permission events are not available (they need CAP_SYS_ADMIN).
func kaWatchDir(t *testing.T, dir string) *kaWatch {
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		t.Skipf("fanotify permission events are not available here (%v): needs root", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD|unix.FAN_ONDIR, unix.AT_FDCWD, dir); err != nil {
		unix.Close(fd)
		t.Skipf("fanotify mark: %v", err)
	}
	w := &kaWatch{fd: fd, dir: dir, stop: make(chan struct{}), ended: make(chan struct{})}
	go w.loop()
	return w
}

// arm sets the process watched and the open it is killed at.
func (w *kaWatch) arm(pid, kill int) {
	w.mu.Lock()
	w.pid, w.kill, w.seen = pid, kill, nil
	w.mu.Unlock()
}

func (w *kaWatch) opened() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.seen...)
}

func (w *kaWatch) loop() {
	defer close(w.ended)
	buf := make([]byte, 4096)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 20); err != nil || n == 0 {
			continue
		}
		n, err := unix.Read(w.fd, buf)
		if err != nil {
			continue
		}
		for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= n; {
			m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			off += int(m.Event_len)
			if m.Fd < 0 {
				continue
			}
			p, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", m.Fd))
			w.mu.Lock()
			if int(m.Pid) == w.pid && w.pid != 0 {
				name := filepath.Base(p)
				if p == w.dir {
					name = "(the directory)"
				}
				w.seen = append(w.seen, name)
				if len(w.seen) == w.kill {
					syscall.Kill(w.pid, syscall.SIGKILL)
				}
			}
			w.mu.Unlock()
			r := unix.FanotifyResponse{Fd: m.Fd, Response: unix.FAN_ALLOW}
			unix.Write(w.fd, (*[unsafe.Sizeof(r)]byte)(unsafe.Pointer(&r))[:])
			unix.Close(int(m.Fd))
		}
	}
}

func (w *kaWatch) close() {
	close(w.stop)
	<-w.ended
	unix.Close(w.fd)
}

// TestKillAttackRunKilledAtEachStateFileOpen: the timer's backup run (a
// real process) is SIGKILLed at each file it opens in its state directory
// in turn - reading last.json or the cache, taking the lock, creating the
// temporary file of the cache, last.json, clock.json or the TLS session
// (killed there, it is left behind, empty), opening the directory to sync
// a rename - held at that open by fanotify, so each point is hit exactly.
// The Journal changes before each run and after each kill. After each:
// what the kill left counts the day only for a committed snapshot, the
// next timer run backs up, its snapshot restores byte for byte, and no
// temporary file is left in the state directory. Needs root (fanotify).
func TestKillAttackRunKilledAtEachStateFileOpen(t *testing.T) {
	w := kaNewWorld(t, "KILL-POINTS")
	watch := kaWatchDir(t, w.st.Dir)
	defer watch.close()
	// An uncut first run, then an uncut one watched, which lists the
	// opens of a run with a change to send.
	c := kaStart(t, "run", kaRunEnv(w.st, w.src, w.psu, w.day(0), false)...)
	if finished, end := c.wait(t); !finished || end != "end done " {
		t.Fatalf("the uncut run: %q", end)
	}
	w.change(t, 700)
	c = kaStart(t, "run", kaRunEnv(w.st, w.src, w.psu, w.day(1), false)...)
	watch.arm(c.cmd.Process.Pid, 0)
	if finished, end := c.wait(t); !finished || end != "end done " {
		t.Fatalf("the watched run: %q", end)
	}
	points := watch.opened()
	t.Logf("a run opens, in its state directory: %s", strings.Join(points, " "))
	if len(points) < 8 {
		t.Fatalf("the watched run opened only %q in its state directory", points)
	}
	for k := 1; k <= len(points); k++ {
		i := 1 + k
		w.change(t, 10*k)
		before := kaCopy(t, w.src)
		snsBefore := kaSnapshots(t, w.d, w.serial)
		lastBefore := w.st.LastRun()
		c := kaStart(t, "run", kaRunEnv(w.st, w.src, w.psu, w.day(i), false)...)
		watch.arm(c.cmd.Process.Pid, k)
		finished, end := c.wait(t)
		seen := watch.opened()
		watch.arm(0, 0)
		what := fmt.Sprintf("killed at open %d", k)
		if len(seen) >= k {
			what += " (" + seen[k-1] + ")"
		}
		sns := kaSnapshots(t, w.d, w.serial)
		committed := len(sns) > len(snsBefore)
		t.Logf("%s: finished=%v %q committed=%v; left: %q", what, finished, end, committed, kaStrays(t, w.st))
		if committed {
			kaRestoreEquals(t, w.st, string(sns[len(sns)-1].ID), before, what+": the snapshot the killed run committed")
		}
		if last := w.st.LastRun(); (last.Snapshot != lastBefore.Snapshot || !last.Time.Equal(lastBefore.Time)) && (!committed || !kaHas(sns, last.Snapshot)) {
			t.Fatalf("%s: last.json counts the day (backup %q) though the server holds no such new backup", what, last.Snapshot)
		}
		w.change(t, 10*k+1)
		time.Sleep(time.Millisecond)
		w.nextRun(t, i, committed, what)
	}
}
