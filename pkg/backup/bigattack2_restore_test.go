package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestBigAttack2SparseFileRestoresSameSizeAndBytes: a 1 GiB sparse file
// (zeros with three 2 MiB random stretches, one crossing no chunk-size
// boundary in particular, one ending the file) is backed up into a real
// store and restored into an empty directory.
//
// Expectation: the restored file has the same size and the same bytes
// (whole-file hash and the random stretches compared), the restore's heap
// stays under 200 MiB. The disk space the restored file takes is measured
// and logged: it tells whether a restore keeps the holes (an 8 GiB image of
// zeros then costs nothing) or writes real zeros (it costs 8 GiB).
func TestBigAttack2SparseFileRestoresSameSizeAndBytes(t *testing.T) {
	if raceEnabled {
		t.Skip("a test of scale, not of races: make unit runs it without the race detector")
	}
	bigAttack2NeedDisk(t)
	s := openStore(t)
	u := addUser(t, s, "SHCBIG2002")
	src := t.TempDir()
	const size = 1 << 30
	offs := []int64{4096 + 3, 600<<20 + 99, size - 2<<20}
	big := filepath.Join(src, "lesson.mkv")
	bigAttack2Sparse(t, big, size, 2, 2<<20, offs...)
	time.Sleep(30 * time.Millisecond)
	res := mustRun(t, s, u, src, backup.Options{})

	sn, err := s.Snapshot(u.ID, store.SnapshotID(res.Snapshot))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	stop := bigAttack2Mem()
	start := time.Now()
	rr, err := s.Restore(context.Background(), sn, out, store.RestoreOptions{})
	took := time.Since(start)
	heap, hwm := stop()
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	got := filepath.Join(out, "lesson.mkv")
	fi, err := os.Stat(got)
	if err != nil {
		t.Fatalf("restored file: %v (result %+v)", err, rr)
	}
	srcDisk, gotDisk := bigAttack2Blocks(t, big), bigAttack2Blocks(t, got)
	t.Logf("restore of 1 GiB sparse: %v, heap peak %d MiB, VmHWM %d MiB; disk used: source %d MiB, restored %d MiB (holes kept: %v)",
		took.Round(time.Millisecond), heap>>20, hwm>>20, srcDisk>>20, gotDisk>>20, gotDisk < size/2)
	if fi.Size() != size {
		t.Fatalf("restored size %d, want %d", fi.Size(), size)
	}
	for _, off := range offs {
		if bigAttack2Region(t, got, off, 2<<20) != bigAttack2Region(t, big, off, 2<<20) {
			t.Errorf("restored bytes at %d differ", off)
		}
	}
	if bigAttack2Region(t, got, 0, size) != bigAttack2Region(t, big, 0, size) {
		t.Errorf("restored file's hash differs from the source's")
	}
	if heap > 200<<20 {
		t.Errorf("restore heap peaked at %d MiB (want under 200 MiB)", heap>>20)
	}
}
