package proto

import (
	"context"
	"sort"
	"sync"
	"time"
)

// fixedWindow is the admission xs-backup had before it measured anything,
// kept only so that the school-morning benchmark can run old against new in
// the same run (ServerConfig.FixedWindow); the daemon never uses it.
//
// It hands out backup sessions. At most Capacity run at once; a
// laptop that cannot start now gets a slot: a time to come back, in the
// earliest slot window that still has room, and a reservation that the
// window keeps a place for it. Windows are SlotLength long and hold Capacity
// reservations each, so a crowd that arrives together is spread evenly over
// the following windows instead of retrying in waves.
//
// Requests that arrive within batchDelay of each other are decided together,
// in fairness order: laptops holding a reservation that is due first, then
// the longest since their last good backup (never backed up first).
type fixedWindow struct {
	capacity   int
	slotLen    time.Duration
	batchDelay time.Duration
	now        func() time.Time

	mu       sync.Mutex     // guards the fields below
	active   map[uint64]int // user -> sessions in progress
	nActive  int
	reserved map[uint64]time.Time // user -> slot time
	windows  map[int64]int        // window index -> reservations in it
	queue    []*fixedReq
	timer    bool // a batch is scheduled
	issued   int64
}

type fixedReq struct {
	user       uint64
	lastBackup time.Time
	reply      chan Grant
}

func newFixedWindow(capacity int, slotLen, batchDelay time.Duration, now func() time.Time) *fixedWindow {
	return &fixedWindow{capacity: capacity, slotLen: slotLen, batchDelay: batchDelay, now: now,
		active: map[uint64]int{}, reserved: map[uint64]time.Time{}, windows: map[int64]int{}}
}

// FixedWindow configures the old fixed-window admission (see
// ServerConfig.FixedWindow).
type FixedWindow struct {
	Capacity   int
	SlotLength time.Duration
}

func (a *fixedWindow) request(_ context.Context, r admitReq, _ func() time.Time) Grant {
	return a.ask(r.user, r.lastBackup)
}

func (a *fixedWindow) release(_ time.Time, user uint64) { a.end(user) }

func (a *fixedWindow) tick(time.Time, sample) {}

func (a *fixedWindow) status(bool) AdmissionStatus {
	active, waiting, issued := a.stats()
	return AdmissionStatus{Limit: a.capacity, Running: active, Waiting: waiting, Issued: issued}
}

// ask asks for a session; the Grant says granted or when to come back.
func (a *fixedWindow) ask(user uint64, lastBackup time.Time) Grant {
	r := &fixedReq{user: user, lastBackup: lastBackup, reply: make(chan Grant, 1)}
	a.mu.Lock()
	a.queue = append(a.queue, r)
	if !a.timer {
		a.timer = true
		time.AfterFunc(a.batchDelay, a.decide)
	}
	a.mu.Unlock()
	return <-r.reply
}

func (a *fixedWindow) window(t time.Time) int64 { return t.UnixNano() / int64(a.slotLen) }

func (a *fixedWindow) decide() {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.queue
	a.queue, a.timer = nil, false
	now := a.now()
	a.expire(now)
	due := func(r *fixedReq) bool {
		t, ok := a.reserved[r.user]
		return ok && !now.Before(t.Add(-a.slotLen/2))
	}
	sort.SliceStable(q, func(i, j int) bool {
		di, dj := due(q[i]), due(q[j])
		if di != dj {
			return di
		}
		return q[i].lastBackup.Before(q[j].lastBackup)
	})
	for _, r := range q {
		r.reply <- a.decideOne(r, now)
	}
}

// expire drops reservations whose laptop never came (two windows late).
func (a *fixedWindow) expire(now time.Time) {
	for u, t := range a.reserved {
		if now.After(t.Add(2 * a.slotLen)) {
			a.unreserve(u)
		}
	}
}

func (a *fixedWindow) unreserve(user uint64) {
	if t, ok := a.reserved[user]; ok {
		w := a.window(t)
		if a.windows[w]--; a.windows[w] <= 0 {
			delete(a.windows, w)
		}
		delete(a.reserved, user)
	}
}

func (a *fixedWindow) decideOne(r *fixedReq, now time.Time) Grant {
	if a.active[r.user] > 0 {
		// A second connection of a laptop that already has a session.
		a.active[r.user]++
		a.nActive++
		return Grant{Granted: true}
	}
	if t, ok := a.reserved[r.user]; ok {
		if now.Before(t.Add(-a.slotLen / 2)) {
			return Grant{Slot: t} // early: the reservation stands
		}
		a.unreserve(r.user)
		if a.nActive < a.capacity {
			return a.grant(r.user)
		}
		// Sessions ran over: the earliest window with room, again reserved.
		return a.reserve(r.user, now)
	}
	// Keep places for reservations that are due now and not yet claimed.
	owed := 0
	cur := a.window(now)
	for u, t := range a.reserved {
		if w := a.window(t); w <= cur && a.active[u] == 0 {
			owed++
		}
	}
	if a.nActive+owed < a.capacity {
		return a.grant(r.user)
	}
	return a.reserve(r.user, now)
}

func (a *fixedWindow) grant(user uint64) Grant {
	a.active[user]++
	a.nActive++
	return Grant{Granted: true}
}

func (a *fixedWindow) reserve(user uint64, now time.Time) Grant {
	w := a.window(now) + 1
	for a.windows[w] >= a.capacity {
		w++
	}
	pos := a.windows[w]
	a.windows[w]++
	// Spread the window's reservations evenly across it.
	t := time.Unix(0, w*int64(a.slotLen)+int64(pos)*int64(a.slotLen)/int64(a.capacity)).UTC()
	a.reserved[user] = t
	a.issued++
	return Grant{Slot: t}
}

// end ends a session.
func (a *fixedWindow) end(user uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active[user] > 0 {
		a.nActive--
		if a.active[user]--; a.active[user] == 0 {
			delete(a.active, user)
		}
	}
}

// stats returns sessions active, reservations waiting, slots issued.
func (a *fixedWindow) stats() (active, waiting int, issued int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nActive, len(a.reserved), a.issued
}
