package bucket

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := Bucket{Burst: 3, Every: time.Minute}
	for i := 0; i < 3; i++ {
		if !b.Allow(t0) {
			t.Fatalf("token %d of a burst of 3 refused", i)
		}
	}
	if b.Allow(t0) || b.Allow(t0.Add(59*time.Second)) {
		t.Fatal("a fourth token without waiting")
	}
	if !b.Allow(t0.Add(61*time.Second)) || b.Allow(t0.Add(62*time.Second)) {
		t.Fatal("one token a minute")
	}
	if !b.full(t0.Add(time.Hour)) {
		t.Fatal("not full after an hour")
	}
	var k Keyed[string]
	k.Burst, k.Every = 1, time.Hour
	if !k.Allow("a", t0) || k.Allow("a", t0) || !k.Allow("b", t0) {
		t.Fatal("keyed buckets are not separate")
	}
	for i := 0; i < 5000; i++ {
		k.Allow(string(rune(i)), t0)
	}
	for i := 0; i < 1024; i++ {
		k.Allow("c", t0.Add(2*time.Hour))
	}
	if n := k.Len(); n > 100 {
		t.Fatalf("keyed buckets keep %d keys", n)
	}
}
