package server

import (
	"fmt"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/journal"
)

// The restore page's listing cache never holds more than its budget, keeps
// what was used last, and refuses a listing larger than the whole cache.
func TestListingCacheIsBounded(t *testing.T) {
	entries := func(n int) []journal.Entry {
		var e []journal.Entry
		for i := 0; i < n; i++ {
			e = append(e, journal.Entry{UID: fmt.Sprintf("uid-%d", i), Title: fmt.Sprintf("Document %d", i)})
		}
		return e
	}
	one := listingCost(entries(100))
	c := newListingCache(3*one + one/2)
	root := func(i int) chunk.ID { return chunk.Sum([]byte{byte(i)}) }
	for i := 0; i < 10; i++ {
		c.put(root(i), entries(100))
		if _, ok := c.get(root(0)); i < 3 && !ok {
			t.Fatalf("listing 0 evicted after %d puts", i)
		}
		if c.bytes() > c.max {
			t.Fatalf("cache holds %d bytes, budget %d", c.bytes(), c.max)
		}
	}
	if _, ok := c.get(root(0)); !ok {
		t.Fatal("the most recently used listing was evicted")
	}
	if _, ok := c.get(root(5)); ok {
		t.Fatal("an old listing outlived the budget")
	}
	c.put(root(99), entries(1000))
	if _, ok := c.get(root(99)); ok {
		t.Fatal("a listing larger than the cache was kept")
	}
}
