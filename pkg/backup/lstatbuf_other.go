//go:build !(linux && (amd64 || arm64 || riscv64 || 386 || arm))

package backup

// lstatBuf is lstat of the NUL-terminated path in buf into info.
func lstatBuf(info *scanInfo, buf []byte, name string) error {
	return lstatInto(info, string(buf[:len(buf)-1]), name)
}
