//go:build linux && (amd64 || arm64 || riscv64 || loong64)

package backup

import "golang.org/x/sys/unix"

const sysFstatat = unix.SYS_NEWFSTATAT
