package proto

import (
	"context"
	"testing"
	"time"
)

// TestAdmissionGrantAsTheLaptopHangsUp: a held hello's place is given at
// the moment its laptop hangs up (the release that frees the place and the
// cancellation race). Either the request says granted, and the caller
// starts the session or gives the place back, or the place is not taken:
// a grant the request dropped was a place counted running for ever (seen
// in CI: a vanished laptop's place, admission at one running session with
// no laptop, and the next laptop sent away).
func TestAdmissionGrantAsTheLaptopHangsUp(t *testing.T) {
	a := newAdmission(AdmissionConfig{MaxSessions: 2, StartSessions: 2, Hold: 5 * time.Second})
	ctx := context.Background()
	if g := a.request(ctx, admitReq{user: 1}, time.Now); !g.Granted {
		t.Fatal(g)
	}
	if g := a.request(ctx, admitReq{user: 2}, time.Now); !g.Granted {
		t.Fatal(g)
	}
	granted := 0
	for i := range 1000 {
		user := uint64(100 + i)
		hctx, cancel := context.WithCancel(ctx)
		got := make(chan Grant, 1)
		go func() { got <- a.request(hctx, admitReq{user: user}, time.Now) }()
		for a.status(false).Held == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		// Free a place and hang up at the same moment.
		released := make(chan struct{})
		go func() { a.release(time.Now(), 2); close(released) }()
		cancel()
		g := <-got
		<-released
		if g.Granted {
			granted++
			a.release(time.Now(), user) // the caller's session ends, or it gives the place back
		}
		st := a.status(false)
		if st.Running != 1 {
			t.Fatalf("round %d: a place given as the laptop hung up (granted %v) leaves %d running, want 1 (laptop 1)", i, g.Granted, st.Running)
		}
		// Laptop 2 takes its place again for the next round.
		for a.status(false).Held != 0 {
			time.Sleep(50 * time.Microsecond)
		}
		if g := a.request(ctx, admitReq{user: 2}, time.Now); !g.Granted {
			t.Fatalf("round %d: laptop 2 again: %+v", i, g)
		}
	}
	t.Logf("%d of 1000 requests were granted as they hung up", granted)
}
