package backup_test

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bigAttack2NeedDisk skips the test when the temporary directory's file
// system has less than 20 GiB free (these tests make multi-GiB sparse
// files and, where a restore writes zeros, up to 1 GiB of real data).
func bigAttack2NeedDisk(t *testing.T) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(os.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < 20<<30 {
		t.Skipf("only %d MiB free under %s; these tests want 20 GiB", free>>20, os.TempDir())
	}
}

// bigAttack2Sparse creates path as a sparse file of size bytes, with
// regions of random data (seeded) of regionLen bytes at each offset.
func bigAttack2Sparse(t *testing.T, path string, size int64, seed uint64, regionLen int, offsets ...int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	buf := make([]byte, regionLen)
	for _, off := range offsets {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// bigAttack2Blocks is the disk space a file really takes.
func bigAttack2Blocks(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// bigAttack2Region hashes n bytes of path at off.
func bigAttack2Region(t *testing.T, path string, off, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// bigAttack2Mem samples the Go heap in use while a backup runs; stop
// returns its peak and the process's peak resident set (VmHWM).
func bigAttack2Mem() (stop func() (heapPeak, hwm int64)) {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tk.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		wg.Wait()
		return int64(peak), bigAttack2VmHWM()
	}
}

func bigAttack2VmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return -1
}
