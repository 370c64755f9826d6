package proto

import (
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestFixedWindowSpreadsAndIsFair(t *testing.T) {
	start := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: start}
	a := newFixedWindow(2, time.Minute, 20*time.Millisecond, clk.now)
	// Ten laptops at 8:00; laptop i last backed up i days ago (0: never).
	grants := make([]Grant, 10)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := time.Time{}
			if i > 0 {
				last = start.AddDate(0, 0, -i)
			}
			grants[i] = a.ask(uint64(i+1), last)
		}()
	}
	wg.Wait()
	// The never-backed-up laptop and the one with the oldest backup start now.
	if !grants[0].Granted || !grants[9].Granted {
		t.Fatalf("fairness: never-backed-up and oldest should start first: %+v", grants)
	}
	perWindow := map[int64]int{}
	var prevSlot time.Time
	for i := 8; i >= 1; i-- { // older backups get earlier slots
		g := grants[i]
		if g.Granted {
			t.Fatalf("laptop %d granted beyond capacity", i)
		}
		if !g.Slot.After(start) || g.Slot.Before(prevSlot) {
			t.Fatalf("laptop %d slot %v not after %v", i, g.Slot, prevSlot)
		}
		prevSlot = g.Slot
		perWindow[a.window(g.Slot)]++
	}
	for w, n := range perWindow {
		if n > 2 {
			t.Fatalf("window %d holds %d reservations, capacity 2", w, n)
		}
	}
	if len(perWindow) != 4 {
		t.Fatalf("8 waiting laptops over %d windows, want 4", len(perWindow))
	}
	// Coming back early returns the same reservation.
	if g := a.ask(9, start.AddDate(0, 0, -8)); g.Granted || !g.Slot.Equal(grants[8].Slot) {
		t.Fatalf("early return: %+v, want slot %v", g, grants[8].Slot)
	}
	// A newcomer cannot take the places reserved for the next window.
	a.end(1)
	a.end(10)
	clk.set(grants[8].Slot)
	if g := a.ask(99, time.Time{}); g.Granted {
		t.Fatal("a newcomer took a reserved place")
	}
	// Laptops at their slot get in.
	for _, i := range []int{8, 7} {
		if g := a.ask(uint64(i+1), time.Time{}); !g.Granted {
			t.Fatalf("laptop %d refused at its slot: %+v", i, g)
		}
	}
	active, waiting, issued := a.stats()
	if active != 2 || issued != 9 || waiting != 7 {
		t.Fatalf("stats: %d active, %d waiting, %d issued", active, waiting, issued)
	}
}
