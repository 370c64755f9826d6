package restore

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// A progress file (Options.ResumeFile) lists the files a restore wrote
// whole, each with what lstat said of it right after: its inode, size,
// modification and change times. A restore of the same snapshot into the
// same target, run again after an interruption, does not fetch and write
// again a file that is still exactly as the first run left it. The change
// time is what makes that safe: any write, truncation, chmod or rename of
// the file since sets it to the kernel's clock, which nothing can set back.
// A file the list does not name, or names with other figures, is restored
// as usual.
//
// The format is text: a header line binding the list to one snapshot and
// one target, then one line per file (inode, size, times, quoted path).
// A line cut short by a crash, and anything after it, is ignored.

const (
	resumeMagic = "xs-backup restore progress v1"
	// maxResumeFile caps what is read of a progress file: a Journal of
	// 100,000 files lists in about 10 MB.
	maxResumeFile = 64 << 20
)

type doneStat struct {
	ino                uint64
	size, mtime, ctime int64
}

type resumeLog struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer // lines reach f a few hundred at a time
	name string
	done map[string]doneStat
	err  error // the first write that failed: the list stops growing
}

// resumeBuffer is how much of the list waits in memory: what a restore
// killed outright (not cut off: that writes the list out) fetches again,
// at most a few hundred files, against a write(2) for every file.
const resumeBuffer = 16 << 10

// resumeHeader is the progress file's first line for a restore of root into target.
func resumeHeader(root chunk.ID, target string) string {
	return fmt.Sprintf("%s %x %s\n", resumeMagic, root[:], strconv.Quote(target))
}

// openResume reads the progress file name when it belongs to a restore of
// root into target, and starts it over otherwise.
func openResume(name string, root chunk.ID, target string) (*resumeLog, error) {
	if abs, err := filepath.Abs(target); err == nil {
		target = abs
	}
	head := resumeHeader(root, target)
	l := &resumeLog{name: name, done: map[string]doneStat{}}
	good := 0 // bytes of whole lines (the file is cut there: lines added after a torn one would be lost)
	if f, err := os.Open(name); err == nil {
		b, err := io.ReadAll(io.LimitReader(f, maxResumeFile))
		f.Close()
		if err == nil {
			l.done, good = parseResume(b, head)
		}
	}
	flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if len(l.done) == 0 {
		flag |= os.O_TRUNC
	} else if err := os.Truncate(name, int64(good)); err != nil {
		return nil, fmt.Errorf("restore progress file: %w", err)
	}
	f, err := os.OpenFile(name, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("restore progress file: %w", err)
	}
	if len(l.done) == 0 {
		if _, err := f.WriteString(head); err != nil {
			f.Close()
			return nil, fmt.Errorf("restore progress file: %w", err)
		}
	}
	l.f, l.w = f, bufio.NewWriterSize(f, resumeBuffer)
	return l, nil
}

// parseResume reads the files a progress file lists, if its header is head,
// and how many bytes of it are whole lines.
func parseResume(b []byte, head string) (map[string]doneStat, int) {
	done := map[string]doneStat{}
	if !bytes.HasPrefix(b, []byte(head)) {
		return done, 0
	}
	good := len(head)
	for good < len(b) {
		nl := bytes.IndexByte(b[good:], '\n')
		if nl < 0 {
			break // cut short
		}
		p, st, ok := parseResumeLine(string(b[good : good+nl]))
		if !ok {
			break
		}
		done[p] = st
		good += nl + 1
	}
	return done, good
}

func parseResumeLine(line string) (string, doneStat, bool) {
	f := strings.SplitN(line, " ", 5)
	if len(f) != 5 {
		return "", doneStat{}, false
	}
	var st doneStat
	var err error
	if st.ino, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return "", doneStat{}, false
	}
	for i, v := range []*int64{&st.size, &st.mtime, &st.ctime} {
		if *v, err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return "", doneStat{}, false
		}
	}
	p, err := strconv.Unquote(f[4])
	if err != nil || !fs.ValidPath(p) || p == "." {
		return "", doneStat{}, false
	}
	return p, st, true
}

func statOf(fi fs.FileInfo) (doneStat, bool) {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return doneStat{}, false
	}
	return doneStat{ino: uint64(sys.Ino), size: fi.Size(), mtime: fi.ModTime().UnixNano(),
		ctime: int64(sys.Ctim.Sec)*1e9 + int64(sys.Ctim.Nsec)}, true
}

// same reports whether p under root is still the file the interrupted run
// wrote whole for e.
func (l *resumeLog) same(root *os.Root, p string, e *manifest.Entry) bool {
	if l == nil {
		return false
	}
	want, ok := l.done[p]
	if !ok || want.size != e.Size || want.mtime != e.MTime {
		return false
	}
	fi, err := root.Lstat(p)
	if err != nil {
		return false
	}
	got, ok := statOf(fi)
	return ok && got == want && fi.Mode().Perm() == e.Mode.Perm()
}

// record adds p, just written whole as name in the directory root, to
// the list.
func (l *resumeLog) record(root *os.Root, name, p string) {
	if l == nil {
		return
	}
	fi, err := root.Lstat(name)
	if err != nil {
		return
	}
	st, ok := statOf(fi)
	if !ok {
		return
	}
	line := fmt.Sprintf("%d %d %d %d %s\n", st.ino, st.size, st.mtime, st.ctime, strconv.Quote(p))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		_, l.err = l.w.WriteString(line)
	}
}

// close ends the list; a restore that wrote everything removes it.
func (l *resumeLog) close(whole bool) {
	if l == nil {
		return
	}
	if whole {
		l.f.Close()
		os.Remove(l.name)
		return
	}
	l.mu.Lock()
	if l.err == nil {
		l.err = l.w.Flush() // what the next run need not fetch again (a full disk: fetched again)
	}
	l.mu.Unlock()
	l.f.Close()
}
