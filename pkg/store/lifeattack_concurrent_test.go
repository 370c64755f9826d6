package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestLifeAttackTwoLifecyclesAtOnce: staff run `xs-admin lifecycle` while
// the nightly run is going (or two staff run it). Both compute retention's
// verdicts from the same snapshot list; the second then tries to delete
// snapshots the first already deleted. Each run must end without an error
// (a snapshot already gone is what it wanted), and nothing must be deleted
// twice.
func TestLifeAttackTwoLifecyclesAtOnce(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, t.TempDir(), store.Options{Now: clk.Now, ScrubDays: -1})
	var users []*store.User
	for i := 0; i < 6; i++ {
		users = append(users, addUser(t, s, fmt.Sprintf("SHCTWO%d", i)))
	}
	srcs := make([]string, len(users))
	for i := range srcs {
		srcs[i] = t.TempDir()
	}
	var failures []string
	for round := 0; round < 4 && len(failures) == 0; round++ {
		for d := 0; d < 12; d++ {
			for i, u := range users {
				replaceFile(t, s, u, srcs[i], uint64(round*1000+d*10+i), 4<<10)
			}
			clk.Add(24 * time.Hour)
		}
		at := clk.Now().AddDate(0, 2, 0)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Lifecycle(ctx, store.LifecycleOptions{Now: at})
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		clk.Add(62 * 24 * time.Hour)
	}
	if len(failures) > 0 {
		t.Fatalf("two lifecycles at once: %d failed, first: %s", len(failures), failures[0])
	}
	checkClean(t, s)
}
