package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/xs-backup/xs-backup/pkg/store/internal/fsys"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// mirrorFS is the store's file system when its packs are on a Remote: the
// directory as usual, but every metadata file written (store config,
// users, snapshots) is also put to the Remote under meta/, and removed
// there when it is removed, so that a store can be rebuilt from the bucket
// alone. The copy is made when the file is renamed into place, so a
// metadata write (a commit, say) succeeds only once the bucket has it.
type mirrorFS struct {
	FS
	remote Remote
}

const metaTimeout = 2 * time.Minute

func (m *mirrorFS) Rename(oldname, newname string) error {
	if err := m.FS.Rename(oldname, newname); err != nil {
		return err
	}
	if !metaName(newname) {
		return nil
	}
	return m.put(newname)
}

func (m *mirrorFS) put(name string) error {
	b, err := fsys.ReadFile(m.FS, name, 1<<20)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), metaTimeout)
	defer cancel()
	sum := sha256.Sum256(b)
	if err := m.remote.Put(ctx, remoteMetaPrefix+name, strings.NewReader(string(b)), int64(len(b)), hex.EncodeToString(sum[:])); err != nil {
		return fmt.Errorf("copy %s to %s: %w", name, describeRemote(m.remote), remoteErr(err))
	}
	return nil
}

func (m *mirrorFS) Remove(name string) error {
	if err := m.FS.Remove(name); err != nil {
		return err
	}
	if !metaName(name) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), metaTimeout)
	defer cancel()
	if err := m.remote.Delete(ctx, remoteMetaPrefix+name); err != nil {
		return fmt.Errorf("remove the copy of %s from %s: %w", name, describeRemote(m.remote), remoteErr(err))
	}
	return nil
}

// localMeta lists the metadata files in the store's directory.
func localMeta(fs FS) ([]string, error) {
	var names []string
	if f, err := fs.OpenFile(configName, os.O_RDONLY, 0); err == nil {
		f.Close()
		names = append(names, configName)
	}
	users, err := fs.ReadDir("users")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range users {
		if n := "users/" + e.Name(); metaName(n) {
			names = append(names, n)
		}
	}
	dirs, err := fs.ReadDir("snapshots")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, d := range dirs {
		ents, err := fs.ReadDir("snapshots/" + d.Name())
		if err != nil {
			continue
		}
		for _, e := range ents {
			if n := "snapshots/" + d.Name() + "/" + e.Name(); metaName(n) {
				names = append(names, n)
			}
		}
	}
	return names, nil
}

// fetchMeta rebuilds the metadata of a store from the Remote's copy when
// the directory holds no store yet but the bucket does: a school server
// whose disk was lost opens its store again from the bucket alone (the
// index is then rebuilt by Repair).
func (s *Store) fetchMeta(ctx context.Context) error {
	base := s.fsys.(*mirrorFS).FS
	if f, err := base.OpenFile(configName, os.O_RDONLY, 0); err == nil {
		f.Close()
		return nil
	}
	objs, err := s.opts.Remote.List(ctx, remoteMetaPrefix)
	if err != nil {
		return fmt.Errorf("list the metadata in %s: %w", describeRemote(s.opts.Remote), remoteErr(err))
	}
	haveConfig := false
	for _, o := range objs {
		haveConfig = haveConfig || o.Name == remoteMetaPrefix+configName
	}
	if !haveConfig {
		return nil // a new store
	}
	// The config last, so that an interrupted fetch starts again.
	for _, last := range []bool{false, true} {
		for _, o := range objs {
			name := strings.TrimPrefix(o.Name, remoteMetaPrefix)
			if !metaName(name) || (name == configName) != last {
				continue
			}
			if o.Size > 1<<20 {
				return fmt.Errorf("%w: %s in %s is %d bytes", ErrCorrupt, o.Name, describeRemote(s.opts.Remote), o.Size)
			}
			b := make([]byte, o.Size)
			n, err := s.opts.Remote.ReadAt(ctx, o.Name, b, 0)
			if err != nil {
				return fmt.Errorf("fetch %s from %s: %w", o.Name, describeRemote(s.opts.Remote), remoteErr(err))
			}
			if err := fsys.WriteFileAtomic(base, name, b[:n]); err != nil {
				return fmt.Errorf("restore %s from %s: %w", name, describeRemote(s.opts.Remote), err)
			}
		}
	}
	return nil
}

// syncMeta makes the Remote's copy of the metadata match the directory
// (a crash may have come between a local write and its copy).
func (s *Store) syncMeta(ctx context.Context) error {
	m := s.fsys.(*mirrorFS)
	local, err := localMeta(m.FS)
	if err != nil {
		return fmt.Errorf("list metadata: %w", err)
	}
	objs, err := s.opts.Remote.List(ctx, remoteMetaPrefix)
	if err != nil {
		return fmt.Errorf("list the metadata in %s: %w", describeRemote(s.opts.Remote), remoteErr(err))
	}
	there := map[string]ObjectInfo{}
	for _, o := range objs {
		there[strings.TrimPrefix(o.Name, remoteMetaPrefix)] = o
	}
	if _, ok := there[configName]; ok {
		err := sameStore(ctx, m.FS, s.dir, s.opts.Remote)
		if errors.Is(err, errDamagedCopy) {
			delete(there, configName) // put again below
		} else if err != nil {
			return err
		}
	}
	for _, name := range local {
		b, err := fsys.ReadFile(m.FS, name, 1<<20)
		if err != nil {
			continue // a damaged file: Open reports it
		}
		sum := sha256.Sum256(b)
		if o, ok := there[name]; ok && o.Size == int64(len(b)) && (o.SHA256 == "" || o.SHA256 == hex.EncodeToString(sum[:])) {
			delete(there, name)
			continue
		}
		delete(there, name)
		if err := m.put(name); err != nil {
			return err
		}
	}
	// Copies of files removed here (deleted snapshots) go too.
	for name := range there {
		if metaName(name) && name != configName {
			if err := s.opts.Remote.Delete(ctx, remoteMetaPrefix+name); err != nil {
				return fmt.Errorf("remove the copy of %s from %s: %w", name, describeRemote(s.opts.Remote), remoteErr(err))
			}
		}
	}
	return nil
}

var scrubMetaKey = []byte{pMeta, 's', 'c', 'r', 'u', 'b', 'm', 'e', 't', 'a'}

// scrubMetaCopies reads back the bucket's copies of 1/Days of the user and
// snapshot files (all with All), a different part each night, and puts
// again each that differs from its file: a copy that rotted in the bucket
// would otherwise be what a rebuild from the bucket alone finds (the open
// compares the copies' sizes only). It returns how many it put again.
func (s *Store) scrubMetaCopies(ctx context.Context, opts ScrubOptions) (int, error) {
	m, ok := s.fsys.(*mirrorFS)
	if !ok {
		return 0, nil
	}
	names, err := localMeta(m.FS)
	if err != nil {
		return 0, fmt.Errorf("list metadata: %w", err)
	}
	var turn uint64
	s.view(func(txn *badger.Txn) error {
		if v, ok, _ := get(txn, scrubMetaKey); ok && len(v) == 8 {
			turn = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	put := 0
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return put, err
		}
		h := fnv.New64a()
		h.Write([]byte(name))
		if !opts.All && h.Sum64()%uint64(opts.Days) != turn%uint64(opts.Days) {
			continue
		}
		mine, err := fsys.ReadFile(m.FS, name, 1<<20)
		if err != nil {
			continue // a damaged file: Open reported it
		}
		theirs := make([]byte, len(mine)+1)
		n, err := s.opts.Remote.ReadAt(ctx, remoteMetaPrefix+name, theirs, 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return put, fmt.Errorf("read the copy of %s in %s: %w", name, describeRemote(s.opts.Remote), remoteErr(err))
		}
		if err == nil && bytes.Equal(mine, theirs[:n]) {
			continue
		}
		if err := m.put(name); err != nil {
			return put, err
		}
		put++
	}
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, turn+1)
	s.update(ctx, func(txn *badger.Txn) error { return txn.Set(scrubMetaKey, b) })
	return put, nil
}

// highName records the highest pack number ever created, so that a
// listing that lags behind the last uploads never makes the store reuse
// a number (and overwrite an object).
const highName = "packs/high"

func (s *Store) highSeq() uint64 {
	b, err := fsys.ReadFile(s.fsys, highName, 64)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (s *Store) recordHighSeq(seq uint64) error {
	// A listing that lagged at Open (and no packs/high: a store rebuilt
	// from the bucket) must not make a new pack replace an object.
	ctx, cancel := context.WithTimeout(context.Background(), metaTimeout)
	defer cancel()
	if _, err := s.opts.Remote.Stat(ctx, pack.Name(seq)); err == nil {
		return pack.ErrSeqTaken
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", describeRemote(s.opts.Remote), remoteErr(err))
	}
	if err := s.fsys.MkdirAll("packs", 0o750); err != nil {
		return err
	}
	return fsys.WriteFileAtomic(s.fsys, highName, []byte(strconv.FormatUint(seq, 10)+"\n"))
}

// flushRemote seals the pack being written and uploads every sealed pack
// that is not in the bucket yet; it returns once they all are. Without a
// Remote it does nothing. It takes putMu: the caller must hold neither
// putMu nor refMu.
func (s *Store) flushRemote(ctx context.Context) error {
	if s.pio.remote == nil {
		return nil
	}
	s.putMu.Lock()
	err := s.packs.Roll()
	s.putMu.Unlock()
	if err != nil {
		return s.diskErr(err)
	}
	if err := s.pio.waitUploads(ctx); err != nil {
		return fmt.Errorf("packs are not stored in the bucket yet, so nothing was acknowledged: %w", err)
	}
	return nil
}

// sameStore fails when remote already holds the metadata of another store
// than the one in dir: a bucket (prefix) holds one store, never two mixed.
func sameStore(ctx context.Context, local FS, dir string, remote Remote) error {
	st, err := remote.Stat(ctx, remoteMetaPrefix+configName)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", describeRemote(remote), remoteErr(err))
	}
	mine, err := fsys.ReadFile(local, configName, 1<<16)
	if err != nil {
		return fmt.Errorf("read store config: %w", err)
	}
	theirs := make([]byte, min(st.Size, 1<<16))
	n, err := remote.ReadAt(ctx, remoteMetaPrefix+configName, theirs, 0)
	if err != nil {
		return fmt.Errorf("read %s%s from %s: %w", remoteMetaPrefix, configName, describeRemote(remote), remoteErr(err))
	}
	if !bytes.Equal(mine, theirs[:n]) {
		// Another store's configuration, or this one's copy damaged: a
		// store is told by what its file says, not by its bytes.
		var a, b storeConfig
		if json.Unmarshal(mine, &a) == nil && (json.Unmarshal(theirs[:n], &b) != nil || a.Format == b.Format && a.Created.Equal(b.Created) && a.Params == b.Params) {
			return errDamagedCopy
		}
		return fmt.Errorf("%w: %s holds another store than the one in %s (its %s differs); give each store its own bucket or prefix", ErrInvalid, describeRemote(remote), dir, configName)
	}
	return nil
}

// errDamagedCopy: the bucket's copy of the store's configuration does not
// read as any store's (or is this store's, written otherwise): it is put
// again from the local file.
var errDamagedCopy = errors.New("the bucket's copy of the store configuration is damaged")
