package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

func TestMain(m *testing.M) {
	if os.Getenv("XS_CRASH_CHILD") == "1" {
		crashChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// roundSource writes the Journal as it is on day round (deterministic).
func roundSource(dir string, round int) error {
	if _, err := journalgen.Generate(dir, journalgen.Small(1)); err != nil {
		return err
	}
	for d := 1; d <= round; d++ {
		if err := journalgen.Mutate(dir, 1, d); err != nil {
			return err
		}
	}
	return nil
}

// crashChild backs up rounds of a changing Journal, printing "ACK round
// snapshot" after each acknowledged commit, and kills itself with SIGKILL at
// the n-th time it reaches the hook point named in XS_CRASH_POINT.
func crashChild() {
	dir, point := os.Getenv("XS_CRASH_DIR"), os.Getenv("XS_CRASH_POINT")
	at, _ := strconv.Atoi(os.Getenv("XS_CRASH_AT"))
	first, _ := strconv.Atoi(os.Getenv("XS_CRASH_FIRST"))
	hits := 0
	hook := func(p string) {
		if p == point {
			hits++
			if hits == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	ctx := context.Background()
	opts := store.Options{Reserve: -1, PackSize: 128 << 10, JobBatch: 7, Hook: hook}
	if addr := os.Getenv("XS_CRASH_S3"); addr != "" {
		r, err := s3.New(s3.Config{Endpoint: addr, Bucket: os.Getenv("XS_CRASH_BUCKET"), AccessKey: s3test.AccessKey,
			SecretKey: s3test.SecretKey, Insecure: true, PathStyle: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, "s3:", err)
			os.Exit(2)
		}
		opts.Remote = r
	}
	s, err := store.Open(ctx, dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	u, err := s.UserBySerial("SHC1")
	if err != nil {
		u, err = s.AddUser(ctx, store.NewUser{Serial: "SHC1", Approved: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, "add user:", err)
			os.Exit(2)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	for round := first; round < first+3; round++ {
		src, _ := os.MkdirTemp(os.Getenv("XS_CRASH_TMP"), "src")
		if err := roundSource(src, round); err != nil {
			fmt.Fprintln(os.Stderr, "source:", err)
			os.Exit(2)
		}
		tg := s.Target(u.ID, store.CommitInfo{})
		if _, err := backup.Run(ctx, src, tg, backup.Options{Params: s.Params(), Exclude: backup.JournalExclude}); err != nil {
			fmt.Fprintln(os.Stderr, "backup:", err)
			os.Exit(2)
		}
		fmt.Fprintf(out, "ACK %d %s\n", round, tg.Last().ID)
		out.Flush()
		if snaps := s.Snapshots(u.ID); len(snaps) > 4 {
			fmt.Fprintf(out, "DELETING %s\n", snaps[0].ID)
			out.Flush()
			if err := s.DeleteSnapshot(ctx, u.ID, snaps[0].ID); err != nil {
				fmt.Fprintln(os.Stderr, "delete:", err)
				os.Exit(2)
			}
			// Collect and compact every pack with garbage, so that the
			// GC and compaction points are reached too.
			if _, err := s.GC(ctx, store.GCOptions{CompactBelow: 1}); err != nil {
				fmt.Fprintln(os.Stderr, "gc:", err)
				os.Exit(2)
			}
		}
		os.RemoveAll(src)
	}
	s.Close()
}

func TestCrashAtInjectedPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop skipped in -short mode")
	}
	crashLoop(t, nil, store.HookPoints[:len(store.HookPoints)-2], func() store.Options { return store.Options{} })
}

// On an object store: the same crashes, plus crashes around each pack
// upload; after each, the store reopens clean (staged packs resolved) and
// at the end a store rebuilt from the bucket alone holds every
// acknowledged snapshot.
func TestS3CrashAtInjectedPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop skipped in -short mode")
	}
	srv := s3test.Start(t)
	env := []string{"XS_CRASH_S3=" + srv.Addr, "XS_CRASH_BUCKET=" + srv.Bucket}
	acked := crashLoop(t, env, store.HookPoints, func() store.Options { return store.Options{Remote: srv.Remote(t, "")} })
	ctx := context.Background()
	s, err := store.OpenForRepair(ctx, t.TempDir(), store.Options{Reserve: -1, Remote: srv.Remote(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	checkClean(t, s)
	u, err := s.UserBySerial("SHC1")
	if err != nil {
		t.Fatal(err)
	}
	have := map[store.SnapshotID]bool{}
	for _, sn := range s.Snapshots(u.ID) {
		have[sn.ID] = true
	}
	for id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged snapshot %s is not in the bucket", id)
		}
	}
}

func crashLoop(t *testing.T, env []string, points []string, opts func() store.Options) map[store.SnapshotID]int {
	dir := t.TempDir()
	acked := map[store.SnapshotID]int{}
	round := 0
	var missed []string // points whose child ran to the end
	for i, point := range points {
		at := 1 + i%3
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), env...), "XS_CRASH_CHILD=1", "XS_CRASH_DIR="+dir, "XS_CRASH_POINT="+point,
			"XS_CRASH_AT="+strconv.Itoa(at), "XS_CRASH_TMP="+t.TempDir(), "XS_CRASH_FIRST="+strconv.Itoa(round))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		killed := false
		if ee, ok := err.(*exec.ExitError); ok {
			ws := ee.Sys().(syscall.WaitStatus)
			killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
			if !killed {
				t.Fatalf("child at %s failed: %v\n%s", point, err, stderr.String())
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if !killed {
			missed = append(missed, point)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(stdout)), "\n") {
			var r int
			var id string
			if _, err := fmt.Sscanf(line, "ACK %d %s", &r, &id); err == nil {
				acked[store.SnapshotID(id)] = r
				round = max(round, r+1)
			} else if _, err := fmt.Sscanf(line, "DELETING %s", &id); err == nil {
				delete(acked, store.SnapshotID(id))
			}
		}
		t.Logf("point %s #%d: killed=%v, %d snapshots acknowledged so far", point, at, killed, len(acked))

		// After each crash: every acknowledged snapshot is there, intact,
		// and the counts equal a recount.
		s := openStore(t, dir, opts())
		checkClean(t, s)
		u, err := s.UserBySerial("SHC1")
		if err != nil {
			t.Fatal(err)
		}
		have := map[store.SnapshotID]bool{}
		for _, sn := range s.Snapshots(u.ID) {
			have[sn.ID] = true
		}
		for id, r := range acked {
			if !have[id] {
				t.Fatalf("acknowledged snapshot %s (round %d) lost after crash at %s", id, r, point)
			}
		}
		// Spot-check the newest acknowledged snapshot byte for byte.
		newest := store.SnapshotID("")
		for id := range acked {
			if id > newest {
				newest = id
			}
		}
		if newest != "" {
			sn, _ := s.Snapshot(u.ID, newest)
			src := filepath.Join(t.TempDir(), "src")
			if err := roundSource(src, acked[newest]); err != nil {
				t.Fatal(err)
			}
			restoreAndCompare(t, s, sn, src)
		}
		s.Close()
	}
	if len(missed) > 0 {
		t.Fatalf("%d of %d children were not killed: the hook points %v are not reached", len(missed), len(points), missed)
	}
	return acked
}
