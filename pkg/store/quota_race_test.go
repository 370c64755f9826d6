package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// The hard quota holds under concurrency: 16 uploads of 1 MiB at once
// against a 5 MiB quota store at most 5 MiB (it was checked in one
// transaction and charged in another: 16 MiB got in).
func TestHardQuotaUnderParallelUploads(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), store.Options{DefaultQuota: store.Quota{Hard: 5 << 20}})
	u := addUser(t, s, "QUOTA1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 9))
			data := make([]byte, 1<<20)
			for k := range data {
				data[k] = byte(r.Uint32())
			}
			b := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
			err := s.Put(ctx, u.ID, []blob.Blob{b})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrOverQuota):
				refused++
			default:
				t.Errorf("upload %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	us, err := s.Usage(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d uploads stored, %d refused; usage %d bytes of a %d-byte hard quota", ok, refused, us.Bytes, 5<<20)
	if us.Bytes > 5<<20 || ok > 5 {
		t.Fatalf("hard quota crossed: %d uploads stored, usage %d bytes", ok, us.Bytes)
	}
	if ok < 4 {
		t.Fatalf("only %d uploads got in under a quota that fits 5", ok)
	}
	checkClean(t, s)
}
