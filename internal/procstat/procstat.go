// Package procstat reads the CPU time of processes on Linux, for the
// benchmarks that measure the real programs from outside them.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc/PID/stat's times: 100 on Linux.
const userHZ = 100

// CPU is process pid's user and system CPU time, read from /proc/PID/stat;
// with children, also that of the children it has waited for.
func CPU(pid int, children bool) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	d, err := parse(string(b), children)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// parse reads utime and stime (and cutime and cstime with children),
// fields 14-17 of proc(5)'s stat, after the command name: that may hold
// spaces and parentheses, so the fields start after its last ')'.
func parse(stat string, children bool) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 > len(stat) {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[i+2:])
	want := []int{11, 12}
	if children {
		want = append(want, 13, 14)
	}
	var ticks int64
	for _, k := range want {
		if k >= len(f) {
			return 0, fmt.Errorf("%d fields after the command name, want more than %d", len(f), k)
		}
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// Self is this process's own user and system CPU time.
func Self() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
