package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"golang.org/x/sys/unix"
)

// probeIndex opens each table file the index's manifest lists as Badger's
// own open does, but in this goroutine. Badger opens its tables in
// goroutines of its own, where a table whose footer is damaged (a file cut
// short, a block of it lost) panics and ends the whole process, daemon or
// staff tool, before any recover can turn the panic into ErrIndexDamaged
// and the advice to rebuild the index. A table Badger would only skip (its
// index fails its checksum) is damage too: the index would go on without
// its entries. Files the manifest does not list (left by a crash while
// Badger wrote them, which it removes when it opens) are not looked at.
func probeIndex(dir string) error {
	// Under Badger's own directory lock (shared): while another process
	// has the index open for writing, its compactions delete tables the
	// manifest read here may still list; Badger's open then reports the
	// lock, which is not damage.
	d, err := os.Open(dir)
	if err != nil {
		return nil // Badger's open says what is wrong
	}
	defer d.Close()
	if unix.Flock(int(d.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil {
		return nil
	}
	defer unix.Flock(int(d.Fd()), unix.LOCK_UN)
	mf, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new index, or one Badger will report itself
	}
	if err != nil {
		return nil // Badger's open says what is wrong (permissions, ...)
	}
	defer mf.Close()
	m, err := replayManifest(mf)
	if err != nil {
		return fmt.Errorf("%w: its manifest: %v", ErrIndexDamaged, err)
	}
	for id, tm := range m.Tables {
		name := table.NewFilename(id, dir)
		if err := probeTable(name, tm.Compression); err != nil {
			return fmt.Errorf("%w: table %s does not open (%s)", ErrIndexDamaged, filepath.Base(name), strings.Join(strings.Fields(err.Error()), " "))
		}
	}
	return nil
}

func replayManifest(f *os.File) (m badger.Manifest, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s", firstLine(r))
		}
	}()
	m, _, err = badger.ReplayManifestFile(f, 0, badger.DefaultOptions(""))
	return m, err
}

func probeTable(name string, c options.CompressionType) (err error) {
	mf, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return err // listed and gone: Badger fails on it too
	}
	if err != nil && !errors.Is(err, z.NewFile) {
		if errors.Is(err, fs.ErrPermission) {
			return nil // not damage: Badger's open reports it as it is
		}
		return err
	}
	// OpenTable closes the file itself only when it cannot stat it or
	// parse its name (ours come from table.NewFilename), or with
	// OnTableRead checks: here it never does, so it is closed once, here.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s", firstLine(r))
		}
		mf.Close(-1)
	}()
	_, err = table.OpenTable(mf, table.Options{ReadOnly: true, BlockSize: 4 << 10, Compression: c,
		ChkMode: options.OnBlockRead})
	return err
}

// firstLine is a panic's value in one line (Badger's carry pages of debug
// output).
func firstLine(r any) string {
	s := fmt.Sprint(r)
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "==") {
			return l
		}
	}
	return "it does not read"
}
