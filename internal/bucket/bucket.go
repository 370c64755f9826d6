// Package bucket is a token bucket, alone and keyed, with the clock passed
// in: the rate limits of registrations, new accounts and commits.
package bucket

import (
	"sync"
	"time"
)

// Bucket holds up to Burst tokens and gains one every Every. The zero Burst
// allows nothing; a zero Every never refills. It is not safe for concurrent
// use; Keyed is.
type Bucket struct {
	Burst  int
	Every  time.Duration
	tokens float64
	last   time.Time
	used   bool
}

// Allow takes a token if there is one.
func (b *Bucket) Allow(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *Bucket) refill(now time.Time) {
	if !b.used {
		b.tokens, b.last, b.used = float64(b.Burst), now, true
		return
	}
	if b.Every > 0 && now.After(b.last) {
		b.tokens += float64(now.Sub(b.last)) / float64(b.Every)
	}
	b.tokens = min(b.tokens, float64(b.Burst))
	b.last = now
}

// full reports whether the bucket has refilled completely (and may be forgotten).
func (b *Bucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= float64(b.Burst)
}

// Keyed is one Bucket per key, created full on first use. Full buckets are
// forgotten now and then, so memory follows the keys recently active.
type Keyed[K comparable] struct {
	Burst int
	Every time.Duration

	mu    sync.Mutex // guards m and n
	m     map[K]*Bucket
	calls int
}

// Allow takes a token from key's bucket if there is one.
func (k *Keyed[K]) Allow(key K, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[K]*Bucket{}
	}
	if k.calls++; k.calls%1024 == 0 || len(k.m) > 4096 && k.calls%64 == 0 {
		for key, b := range k.m {
			if b.full(now) {
				delete(k.m, key)
			}
		}
	}
	b, ok := k.m[key]
	if !ok {
		b = &Bucket{Burst: k.Burst, Every: k.Every}
		k.m[key] = b
	}
	return b.Allow(now)
}

// Len is how many keys the limiter remembers.
func (k *Keyed[K]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
