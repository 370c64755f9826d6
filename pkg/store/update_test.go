package store

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestUpdateOutlastsHotKeys: many transactions read and write the same key at
// once, the worst case of a book every laptop uploads in the same minute.
// Every one must get through (a conflict is retried, never returned to the
// laptop as "Transaction Conflict") and none may be lost.
func TestUpdateOutlastsHotKeys(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir(), Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := []byte("test/hot-counter")
	const workers, each = 256, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				errs <- s.update(context.Background(), func(txn *badger.Txn) error {
					var n uint64
					it, err := txn.Get(key)
					if err == nil {
						v, err := it.ValueCopy(nil)
						if err != nil {
							return err
						}
						n = binary.LittleEndian.Uint64(v)
					} else if err != badger.ErrKeyNotFound {
						return err
					}
					return txn.Set(key, binary.LittleEndian.AppendUint64(nil, n+1))
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n uint64
	s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := it.ValueCopy(nil)
		n = binary.LittleEndian.Uint64(v)
		return nil
	})
	if n != workers*each {
		t.Fatalf("counter = %d after %d increments: updates were lost", n, workers*each)
	}
	if s.conflicts.Load() == 0 {
		t.Fatal("no conflicts happened: the test did not exercise the retry path")
	}
	t.Logf("%d increments, %d conflicts retried", n, s.conflicts.Load())
}
