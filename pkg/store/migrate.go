package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// MigrateReport says what a migration moved.
type MigrateReport struct {
	// Packs moved by this run, and packs found already moved (a resumed
	// migration); Bytes moved by this run.
	Packs, AlreadyThere int
	Bytes               int64
	// Meta is how many metadata files were copied.
	Meta int
}

// MigrateProgress is called after each pack.
type MigrateProgress func(done, total int, bytes int64)

// lockForMigration takes the lock of the closed store in dir, for a
// migration that works on its files without opening it.
func lockForMigration(dir string) (*Store, error) {
	s := &Store{dir: dir, fsys: DirFS(dir)}
	if err := s.lockDir(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, configName)); err != nil {
		s.lock.Close()
		return nil, fmt.Errorf("%w: no store in %s", ErrNotFound, dir)
	}
	return s, nil
}

// MigrateToRemote moves the pack files of the (closed) store in dir into
// remote, and copies its metadata there: each pack is uploaded, read back
// and hashed, and only then removed from dir. It is resumable: a pack
// already in the bucket with the same hash is not sent again. Once it
// returns, the store must be opened with Options.Remote set to remote.
func MigrateToRemote(ctx context.Context, dir string, remote Remote, progress MigrateProgress) (*MigrateReport, error) {
	s, err := lockForMigration(dir)
	if err != nil {
		return nil, err
	}
	defer s.lock.Close()
	if err := sameStore(ctx, s.fsys, dir, remote); err != nil {
		return nil, err
	}
	rep := &MigrateReport{}
	names, err := localMeta(s.fsys)
	if err != nil {
		return nil, err
	}
	m := &mirrorFS{FS: s.fsys, remote: remote}
	for _, name := range names {
		if err := m.put(name); err != nil {
			return rep, err
		}
		rep.Meta++
	}
	seqs, err := pack.List(s.fsys)
	if err != nil {
		return rep, err
	}
	for i, seq := range seqs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		name := pack.Name(seq)
		f, err := s.fsys.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			return rep, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return rep, err
		}
		size := st.Size()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
			f.Close()
			return rep, fmt.Errorf("read pack %016x: %w", seq, err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		there, err := remote.Stat(ctx, name)
		already := err == nil && there.Size == size && remoteSum(ctx, remote, name, size) == sum
		if !already {
			if err := remote.Put(ctx, name, io.NewSectionReader(f, 0, size), size, sum); err != nil {
				f.Close()
				return rep, fmt.Errorf("upload pack %016x to %s: %w", seq, describeRemote(remote), err)
			}
			if got := remoteSum(ctx, remote, name, size); got != sum {
				f.Close()
				return rep, fmt.Errorf("%w: pack %016x read back from %s does not match the local copy (sha256 %s, want %s); the local copy is kept", ErrCorrupt, seq, describeRemote(remote), got, sum)
			}
			rep.Packs++
			rep.Bytes += size
		} else {
			rep.AlreadyThere++
		}
		f.Close()
		if err := s.fsys.Remove(name); err != nil {
			return rep, err
		}
		s.fsys.SyncDir(name[:len("packs/00")])
		if progress != nil {
			progress(i+1, len(seqs), rep.Bytes)
		}
	}
	return rep, nil
}

// remoteSum reads an object back and returns its hex SHA-256 ("" when it
// cannot be read).
func remoteSum(ctx context.Context, remote Remote, name string, size int64) string {
	h := sha256.New()
	buf := make([]byte, 8<<20)
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		got, err := remote.ReadAt(ctx, name, buf[:n], off)
		if err != nil || int64(got) != n {
			return ""
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MigrateToLocal moves the pack files of the (closed) store in dir from
// remote back into dir: each is downloaded to a temporary file, hashed
// against the hash kept with the object, fsynced and renamed into place;
// once every pack is local, the objects (packs and the metadata copies)
// are deleted from the bucket. It is resumable. Once it returns, the
// store must be opened without a Remote.
func MigrateToLocal(ctx context.Context, dir string, remote Remote, progress MigrateProgress) (*MigrateReport, error) {
	s, err := lockForMigration(dir)
	if err != nil {
		return nil, err
	}
	defer s.lock.Close()
	rep := &MigrateReport{}
	// The bucket must hold this store (a wrong prefix would bring another
	// store's packs over this one's and then delete them from the bucket).
	if err := sameStore(ctx, s.fsys, dir, remote); err != nil {
		return rep, err
	}
	objs, err := remote.List(ctx, "packs/")
	if err != nil {
		return rep, fmt.Errorf("list packs in %s: %w", describeRemote(remote), err)
	}
	var packs []ObjectInfo
	listed := map[uint64]bool{}
	for _, o := range objs {
		var seq uint64
		if _, err := fmt.Sscanf(o.Name, "packs/%02x/%016x.pack", new(uint64), &seq); err == nil && pack.Name(seq) == o.Name {
			packs = append(packs, o)
			listed[seq] = true
		}
	}
	// A listing may leave out the latest uploads: every number up to the
	// highest the store ever made that is neither listed nor here is asked
	// for by name (a number GC gave back is simply not there).
	for seq := uint64(1); seq <= s.highSeq(); seq++ {
		if listed[seq] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(pack.Name(seq)))); err == nil {
			continue
		}
		st, err := remote.Stat(ctx, pack.Name(seq))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("pack %s in %s: %w", pack.Name(seq), describeRemote(remote), err)
		}
		packs = append(packs, ObjectInfo{Name: pack.Name(seq), Size: st.Size})
	}
	for i, o := range packs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		st, err := remote.Stat(ctx, o.Name)
		if err != nil {
			return rep, fmt.Errorf("pack %s in %s: %w", o.Name, describeRemote(remote), err)
		}
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(o.Name))); err == nil && fi.Size() == st.Size &&
			(st.SHA256 == "" || localSHA256(filepath.Join(dir, filepath.FromSlash(o.Name))) == st.SHA256) {
			rep.AlreadyThere++
			continue
		}
		if err := s.fsys.MkdirAll(o.Name[:len("packs/00")], 0o750); err != nil {
			return rep, err
		}
		tmp := o.Name + ".tmp"
		f, err := s.fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return rep, err
		}
		h := sha256.New()
		buf := make([]byte, 8<<20)
		for off := int64(0); off < st.Size; {
			n := min(int64(len(buf)), st.Size-off)
			got, err := remote.ReadAt(ctx, o.Name, buf[:n], off)
			if err == nil && int64(got) != n {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				_, err = f.Write(buf[:n])
			}
			if err != nil {
				f.Close()
				s.fsys.Remove(tmp)
				return rep, fmt.Errorf("download pack %s from %s: %w", o.Name, describeRemote(remote), err)
			}
			h.Write(buf[:n])
			off += n
		}
		if sum := hex.EncodeToString(h.Sum(nil)); st.SHA256 != "" && sum != st.SHA256 {
			f.Close()
			s.fsys.Remove(tmp)
			return rep, fmt.Errorf("%w: pack %s downloaded from %s has sha256 %s, the object says %s", ErrCorrupt, o.Name, describeRemote(remote), sum, st.SHA256)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return rep, err
		}
		f.Close()
		if err := s.fsys.Rename(tmp, o.Name); err != nil {
			return rep, err
		}
		if err := s.fsys.SyncDir(o.Name[:len("packs/00")]); err != nil {
			return rep, err
		}
		rep.Packs++
		rep.Bytes += st.Size
		if progress != nil {
			progress(i+1, len(packs), rep.Bytes)
		}
	}
	// Every pack is here: the bucket's copies go.
	for _, o := range packs {
		if err := remote.Delete(ctx, o.Name); err != nil {
			return rep, fmt.Errorf("delete %s from %s: %w", o.Name, describeRemote(remote), err)
		}
	}
	meta, err := remote.List(ctx, remoteMetaPrefix)
	if err != nil {
		return rep, err
	}
	for _, o := range meta {
		if err := remote.Delete(ctx, o.Name); err != nil {
			return rep, err
		}
		rep.Meta++
	}
	os.Remove(filepath.Join(dir, highName))
	return rep, nil
}

// RemoteStatus describes a store's packs on an object store.
type RemoteStatus struct {
	// Backend is "s3" (a local store's status is {"backend": "local"}).
	Backend string `json:"backend"`
	Remote  string `json:"remote"`
	// Packs and Bytes in the bucket; Staged packs waiting in the
	// directory for their upload.
	Packs  int   `json:"packs"`
	Bytes  int64 `json:"bytes"`
	Staged int   `json:"staged"`
	Meta   int   `json:"meta_files"`
	// UploadError is the last failed background upload of this process
	// (it is tried again by the next commit), "" if none.
	UploadError string `json:"upload_error,omitempty"`
}

// RemoteStatus reports what the store keeps in its Remote (an error
// matching ErrInvalid if it has none).
func (s *Store) RemoteStatus(ctx context.Context) (*RemoteStatus, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.pio.remote == nil {
		return nil, fmt.Errorf("%w: the store keeps its packs in %s, not in an object store", ErrInvalid, s.dir)
	}
	st, err := StatusOf(ctx, s.dir, s.pio.remote)
	if err != nil {
		return nil, err
	}
	s.pio.upMu.Lock()
	if s.pio.lastErr != nil {
		st.UploadError = s.pio.lastErr.Error()
	}
	s.pio.upMu.Unlock()
	return st, nil
}

// StatusOf reports what the store in dir keeps in remote, without opening
// the store (the daemon may have it open).
func StatusOf(ctx context.Context, dir string, remote Remote) (*RemoteStatus, error) {
	st := &RemoteStatus{Backend: "s3", Remote: remote.String()}
	objs, err := remote.List(ctx, "packs/")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", describeRemote(remote), err)
	}
	for _, o := range objs {
		st.Packs++
		st.Bytes += o.Size
	}
	meta, err := remote.List(ctx, remoteMetaPrefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", describeRemote(remote), err)
	}
	st.Meta = len(meta)
	local, err := pack.List(DirFS(dir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	st.Staged = len(local)
	return st, nil
}

// localSHA256 is the hex SHA-256 of the file at path ("" if unreadable).
func localSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
