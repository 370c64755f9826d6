//go:build linux && (amd64 || arm64 || riscv64)

package backup

import "golang.org/x/sys/unix"

// newfstatat, as the syscall package's Lstat on these (loong64 uses statx
// there: it keeps syscall.Lstat).
const sysFstatat = unix.SYS_NEWFSTATAT
