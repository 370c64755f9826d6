package server

import (
	"container/list"
	"sync"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/journal"
)

// listingCache keeps the Journal listings of recently viewed snapshots, so
// that pages and downloads do not read and parse a whole Journal each
// time. It is bounded by the bytes its listings hold (estimated from their
// strings), least recently used first out; a listing larger than the whole
// cache is not kept. A snapshot never changes, so a listing never
// goes stale.
type listingCache struct {
	max int64 // bytes held at most

	mu    sync.Mutex // guards the fields below
	n     int64      // bytes held
	order *list.List // of *listing, most recent first
	byID  map[chunk.ID]*list.Element
}

type listing struct {
	root chunk.ID
	ents []journal.Entry
	cost int64
}

// listingCost estimates the memory of a listing.
func listingCost(ents []journal.Entry) int64 {
	n := int64(256)
	for _, e := range ents {
		n += 256 + int64(len(e.UID)+len(e.Title)+len(e.Activity)+len(e.MimeType)+len(e.DataPath)+len(e.PreviewPath)+len(e.Layout))
		for k, v := range e.Metadata {
			n += 64 + int64(len(k)+len(v))
		}
		for _, pr := range e.Problems {
			n += 16 + int64(len(pr))
		}
	}
	return n
}

func newListingCache(max int64) *listingCache {
	return &listingCache{max: max, order: list.New(), byID: map[chunk.ID]*list.Element{}}
}

func (c *listingCache) get(root chunk.ID) ([]journal.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[root]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*listing).ents, true
}

func (c *listingCache) put(root chunk.ID, ents []journal.Entry) {
	cost := listingCost(ents)
	if cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[root]; ok {
		return
	}
	for c.n+cost > c.max {
		el := c.order.Back()
		l := el.Value.(*listing)
		c.order.Remove(el)
		delete(c.byID, l.root)
		c.n -= l.cost
	}
	c.byID[root] = c.order.PushFront(&listing{root: root, ents: ents, cost: cost})
	c.n += cost
}

func (c *listingCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
