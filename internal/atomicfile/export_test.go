package atomicfile

// SetDefaultFS makes WriteFile use fsys until the returned function is
// called. Tests that use it must not run in parallel.
func SetDefaultFS(fsys FS) (restore func()) {
	old := defaultFS
	defaultFS = fsys
	return func() { defaultFS = old }
}
