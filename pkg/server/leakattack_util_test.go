package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"
)

// Slack a months-long daemon may show over a baseline after an operation
// repeated hundreds of times and the daemon left to settle: a few
// goroutines and descriptors of timers, caches and pools that come and go,
// and a heap that caches bounded state. Growth proportional to the
// repetitions is a leak.
const (
	laSlackGoroutines = 10
	laSlackFDs        = 5
	laSlackHeap       = 16 << 20
)

// laSample is one measurement of what this process holds.
type laSample struct {
	goroutines int
	fds        int
	heap       uint64 // HeapInuse after two GCs
}

func (s laSample) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, heap %.1f MiB", s.goroutines, s.fds, float64(s.heap)/(1<<20))
}

// laFDs counts this process's open descriptors (/proc/self/fd).
func laFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents) - 1 // the directory's own descriptor
}

// laThreads is this process's OS thread count (/proc/self/status).
func laThreads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return -1
}

// laMeasure samples the process after a full collection.
func laMeasure(t testing.TB) laSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return laSample{goroutines: runtime.NumGoroutine(), fds: laFDs(t), heap: ms.HeapInuse}
}

// laWithin reports whether now is within the slack of base.
func laWithin(base, now laSample) bool {
	return now.goroutines <= base.goroutines+laSlackGoroutines &&
		now.fds <= base.fds+laSlackFDs &&
		now.heap <= base.heap+laSlackHeap
}

// laSettle polls for up to settle until the process is back near base and
// returns the last sample.
func laSettle(t testing.TB, base laSample, settle time.Duration) laSample {
	end := time.Now().Add(settle)
	for {
		now := laMeasure(t)
		if laWithin(base, now) || time.Now().After(end) {
			return now
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// laFDTargets lists what this process's descriptors point at, grouped and
// counted (sockets, pipes, anon inodes, files by directory).
func laFDTargets() string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	count := map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(l, "socket:"):
			l = "socket:[...]"
		case strings.HasPrefix(l, "pipe:"):
			l = "pipe:[...]"
		case strings.HasPrefix(l, "anon_inode:"):
		default:
			l = filepath.Base(filepath.Dir(l)) + "/" + filepath.Base(l)
		}
		count[l]++
	}
	var lines []string
	for k, n := range count {
		lines = append(lines, fmt.Sprintf("%4d %s", n, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// laCheck asserts that the process came back near base after reps
// repetitions of what, and dumps where the goroutines and descriptors are
// when it did not.
func laCheck(t testing.TB, what string, reps int, base laSample, settle time.Duration) {
	t.Helper()
	now := laSettle(t, base, settle)
	t.Logf("%s ×%d: baseline %v; after %v", what, reps, base, now)
	if laWithin(base, now) {
		return
	}
	t.Errorf("%s ×%d leaks: goroutines %d → %d (+%d, %.2f per repetition), fds %d → %d (+%d), heap %.1f → %.1f MiB (+%.1f MiB, %.1f KiB per repetition)",
		what, reps, base.goroutines, now.goroutines, now.goroutines-base.goroutines, float64(now.goroutines-base.goroutines)/float64(reps),
		base.fds, now.fds, now.fds-base.fds,
		float64(base.heap)/(1<<20), float64(now.heap)/(1<<20), (float64(now.heap)-float64(base.heap))/(1<<20),
		(float64(now.heap)-float64(base.heap))/1024/float64(reps))
	if now.goroutines > base.goroutines+laSlackGoroutines {
		fmt.Fprintf(os.Stderr, "=== %s: goroutines after %d repetitions\n", t.Name(), reps)
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}
	if now.fds > base.fds+laSlackFDs {
		fmt.Fprintf(os.Stderr, "=== %s: open descriptors after %d repetitions\n%s\n", t.Name(), reps, laFDTargets())
	}
	if now.heap > base.heap+laSlackHeap {
		p := filepath.Join(os.TempDir(), "leakattack-"+strings.ReplaceAll(t.Name(), "/", "_")+".heap")
		if f, err := os.Create(p); err == nil {
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			fmt.Fprintf(os.Stderr, "=== %s: heap profile after %d repetitions in %s (go tool pprof -top -inuse_space)\n", t.Name(), reps, p)
		}
	}
}

// laRepeat runs op reps times (stopping at the first failure), timing it,
// and logs a sample after each quarter of them (the trend tells a leak
// from a cache filling up).
func laRepeat(t testing.TB, reps int, op func(i int)) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range reps {
		op(i)
		if t.Failed() {
			t.FailNow()
		}
		if q := max(reps/4, 1); (i+1)%q == 0 {
			t.Logf("after %d: %v", i+1, laMeasure(t))
		}
	}
	return time.Since(start)
}
