package proto

import (
	"math"
	"testing"
	"time"
)

// TestBigAttackHugeDeclaredWorkDoesNotShortenComeBack: the bytes a laptop
// says it will send (Hello's Work.Bytes, an int64 the server takes as
// given) feed the bulk lane's wait estimate as float64 seconds, converted
// to a time.Duration. When the laptops holding the bulk places declare
// near-MaxInt64 bytes (a broken or hostile client, or a sparse file of
// exabytes on a filesystem that allows one), the estimate is far past what
// a Duration can hold; converted unchecked it wraps (on amd64 to a
// negative Duration) and is raised to the 1 s floor. The laptops waiting
// are then told to come back in 1 s, again and again: the hello storm the
// server-issued slots exist to prevent.
//
// Expectation: a laptop waiting behind bigger declared work is never told
// to come back sooner than it is behind smaller (but still hours of) work;
// both get MaxComeBack.
func TestBigAttackHugeDeclaredWorkDoesNotShortenComeBack(t *testing.T) {
	comeBack := func(declared int64) time.Duration {
		a := newAdmission(AdmissionConfig{MaxSessions: 4, StartSessions: 3})
		a.byteRate = 1e6 // measured: 1 MB/s through the school's link
		now := time.Now()
		u := uint64(1)
		for ; ; u++ {
			ok, e := a.arrive(now, admitReq{user: u, work: Work{Bytes: declared}})
			if !ok {
				a.leave(now, e, true) // this one was only to fill the lane
				break
			}
			if u > 16 {
				t.Fatal("the bulk lane never filled")
			}
		}
		ok, e := a.arrive(now, admitReq{user: u + 1, work: Work{Bytes: 100 << 20}})
		if ok {
			t.Fatal("granted above the limit")
		}
		due, _ := a.leave(now, e, false)
		return due.Sub(now)
	}
	hours := comeBack(10 << 30)     // 10 GiB each: hours at 1 MB/s
	huge := comeBack(math.MaxInt64) // "exabytes"
	cfg := AdmissionConfig{}
	cfg.setDefaults()
	t.Logf("come back in %v behind 10 GiB sessions, %v behind MaxInt64 ones (MaxComeBack %v)", hours, huge, cfg.MaxComeBack)
	if hours != cfg.MaxComeBack {
		t.Fatalf("behind hours of work the laptop is told %v, want MaxComeBack %v", hours, cfg.MaxComeBack)
	}
	if huge < hours {
		t.Fatalf("behind sessions declaring %d bytes the laptop is told to come back in %v, sooner than the %v behind 10 GiB ones: the wait estimate overflowed", int64(math.MaxInt64), huge, hours)
	}
}
