//go:build linux && (386 || arm)

package backup

import "golang.org/x/sys/unix"

// fstatat64: unix.Stat_t is the kernel's struct stat64 on these.
const sysFstatat = unix.SYS_FSTATAT64
