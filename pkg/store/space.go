package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"
)

// Space is what the store takes on its disk and what is left there.
type Space struct {
	// PackBytes is the size of the pack files; IndexBytes the Badger
	// index's (LSM tree and value log, as Badger last measured them).
	PackBytes  int64 `json:"pack_bytes"`
	IndexBytes int64 `json:"index_bytes"`
	// Free is the space available to the store on its file system;
	// Reserve the part of it writes never take (Options.Reserve; 0 when
	// the check is disabled).
	Free    int64 `json:"free_bytes"`
	Reserve int64 `json:"reserve_bytes"`
}

// Space reports the store's size and the free space on its file system.
// It reads no pack: it lists the pack directories (one stat per pack file)
// and asks the file system, so a caller that polls it often (a /metrics
// scrape) should keep the answer for a few seconds.
func (s *Store) Space() (Space, error) {
	if s.closed.Load() {
		return Space{}, ErrClosed
	}
	sp := Space{Reserve: max(s.opts.Reserve, 0)}
	free, err := s.fsys.Free()
	if err != nil {
		return sp, err
	}
	sp.Free = int64(min(free, 1<<62))
	if s.db != nil {
		lsm, vlog := s.db.Size()
		sp.IndexBytes = lsm + vlog
	}
	if s.pio != nil && s.pio.remote != nil {
		// Packs in the bucket (one listing) and those staged here; a
		// bucket that does not answer soon is an error, not a hang.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sizes, err := s.pio.sizes(ctx)
		if err != nil {
			return sp, err
		}
		for _, n := range sizes {
			sp.PackBytes += max(n, 0)
		}
		return sp, nil
	}
	dirs, err := s.fsys.ReadDir("packs")
	if errors.Is(err, os.ErrNotExist) {
		return sp, nil
	}
	if err != nil {
		return sp, err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		ents, err := s.fsys.ReadDir("packs/" + d.Name())
		if err != nil {
			return sp, err
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".pack") {
				continue
			}
			if fi, err := e.Info(); err == nil { // a pack compaction just removed is not an error
				sp.PackBytes += fi.Size()
			}
		}
	}
	return sp, nil
}
