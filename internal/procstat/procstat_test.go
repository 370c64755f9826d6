package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	// A command name with spaces and a ')' of its own.
	stat := "4242 (xo backup) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 12 3 20 0 1 0 5 1 1 0 0"
	if d, err := parse(stat, false); err != nil || d != 3250*time.Millisecond {
		t.Fatalf("own time: %v, %v; want 3.25 s", d, err)
	}
	if d, err := parse(stat, true); err != nil || d != 3400*time.Millisecond {
		t.Fatalf("with children: %v, %v; want 3.4 s", d, err)
	}
	for _, bad := range []string{"", "4242 no parenthesis", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 ten 11 12 13"} {
		if _, err := parse(bad, true); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestCPUOfThisProcess(t *testing.T) {
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	d, err := CPU(os.Getpid(), false)
	if err != nil || d <= 0 {
		t.Fatalf("CPU of this process: %v, %v", d, err)
	}
	if s := Self(); s < d-50*time.Millisecond {
		t.Fatalf("Self %v, /proc %v", s, d)
	}
	if _, err := CPU(-1, false); err == nil {
		t.Fatal("CPU of pid -1 read")
	}
}
