package server_test

import (
	"syscall"
	"testing"
)

type syscallStatfs struct{}

// free is the space free on the file system holding dir.
func (syscallStatfs) free(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
