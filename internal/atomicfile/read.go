package atomicfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrTooLarge: ReadSmall found a file over its cap.
var ErrTooLarge = fmt.Errorf("file too large")

// ReadSmall reads a small file that someone else may have put there (a
// USB stick's receipts): only a regular file, reached without following a
// symbolic link, of at most max bytes. A named pipe does not block the
// read, and a link to /dev/zero does not fill memory.
func ReadSmall(path string, max int64) ([]byte, error) {
	return readRegular(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, max, false)
}

// ReadCapped reads the file at path (following links: a configuration in
// /etc may point elsewhere), at most max bytes of it; a longer one fails
// with ErrTooLarge. A regular file or a character device (--config
// /dev/null) is read; a named pipe there does not block the program.
func ReadCapped(path string, max int64) ([]byte, error) {
	return readRegular(path, os.O_RDONLY|syscall.O_NONBLOCK, max, true)
}

func readRegular(path string, flag int, max int64, devices bool) ([]byte, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a file", path)
	}
	if !st.Mode().IsRegular() && !(devices && st.Mode()&os.ModeCharDevice != 0) {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, st.Mode().Type())
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, path, st.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is more than %d bytes", ErrTooLarge, path, max)
	}
	return b, nil
}
