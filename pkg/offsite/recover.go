package offsite

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/offsite/bundle"
	"github.com/xs-backup/xs-backup/pkg/offsite/kit"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// KeyFile is the server key's file in the data directory.
const KeyFile = "server.key"

// Kit is what `xs-admin recovery-kit` gives the school's staff to keep.
type Kit struct {
	School string `json:"school"`
	// Passphrase opens the sealed server key; it is shown once and kept
	// nowhere on the server.
	Passphrase string `json:"passphrase"`
	// ServerKey is the fingerprint of the server key it seals.
	ServerKey string `json:"server_key"`
	// Sealed is where the sealed key was written (it goes to the
	// mothership with the next sync or export).
	Sealed string `json:"sealed"`
	// Mothership is the mothership's public key in hex, once known (the
	// first sync pins it): recovery checks the bundle against it.
	Mothership string `json:"mothership,omitempty"`
}

// MakeKit seals the server key kept in dataDir with a new recovery
// passphrase, writes the sealed key and the public key beside it (the
// registry carries both off-site), and returns the passphrase. A new kit
// replaces the old one: the old passphrase then opens only copies made
// before.
func MakeKit(dataDir, school string, key ed25519.PrivateKey) (*Kit, error) {
	raw, err := atomicfile.ReadCapped(filepath.Join(dataDir, KeyFile), proto.MaxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("read the server key: %w", err)
	}
	pass, err := kit.NewPassphrase()
	if err != nil {
		return nil, err
	}
	sealed, err := kit.Seal(pass, school, raw)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dataDir, RegSealed)
	if err := atomicfile.WriteFile(p, sealed, 0o600); err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	if err := atomicfile.WriteFile(filepath.Join(dataDir, RegPub), []byte(hex.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return nil, err
	}
	rk, err := kit.RecoveryKey(pass, school)
	if err != nil {
		return nil, err
	}
	rpub := hex.EncodeToString(rk.Public().(ed25519.PublicKey))
	if err := atomicfile.WriteFile(filepath.Join(dataDir, RegRecovery), []byte(rpub+"\n"), 0o644); err != nil {
		return nil, err
	}
	k := &Kit{School: school, Passphrase: pass, ServerKey: bundle.Fingerprint(pub), Sealed: p}
	if st, err := LoadState(dataDir); err == nil && st.Mothership != nil {
		k.Mothership = hex.EncodeToString(st.Mothership)
	}
	return k, nil
}

// metaLaptop switches a recovery bundle's blobs to the next laptop.
const metaLaptop = "laptop"

// metaRegistrySeq carries the school's number of the registry copy a
// recovery bundle holds: the rebuilt school numbers its next copies after
// it.
const metaRegistrySeq = "registry-seq"

// ExportRecovery writes, on a mothership, a bundle that rebuilds school's
// server: its registry (laptops, keys, settings, the sealed server key),
// then every snapshot the mothership holds, each chunk once. It is signed by
// the mothership's key, which the school's recovery kit names.
func ExportRecovery(ctx context.Context, st *store.Store, school *store.User, key ed25519.PrivateKey, dir string, pieceSize int64) (*ExportResult, error) {
	reg, order, byLaptop := schoolSnapshots(st, school)
	if reg == nil {
		return nil, fmt.Errorf("%w: the mothership has no copy of %s's registry (laptops and keys): the school never completed a sync or export", errkind.ErrNotFound, school.Serial)
	}
	fw, err := bundle.CreateFiles(dir, "xs-recovery-"+school.Serial, pieceSize,
		bundle.Header{Kind: bundle.KindRecovery, For: school.Serial, Created: time.Now().UTC()}, key)
	if err != nil {
		return nil, err
	}
	res, err := writeRecovery(ctx, st, fw.Writer, reg, order, byLaptop)
	if err != nil {
		fw.Abort()
		return nil, err
	}
	h := fw.Header()
	res.Bytes = fw.Written()
	if res.Files, err = fw.Close(); err != nil {
		return nil, err
	}
	res.Bundle = h.IDString()
	return res, nil
}

// fetchRecovery downloads the school's recovery bundle from the mothership
// into a temporary file beside the data directory and returns its path.
func fetchRecovery(ctx context.Context, opts RecoverOptions) (string, error) {
	key, err := kit.RecoveryKey(opts.Passphrase, opts.School)
	if err != nil {
		return "", err
	}
	parent := filepath.Dir(filepath.Clean(opts.DataDir))
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(parent, ".xs-recovery-*.xsb")
	if err != nil {
		return "", err
	}
	_, err = proto.FetchRecovery(ctx, opts.Addr, key, opts.Mothership, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		if errors.Is(err, proto.ErrServerKeyChanged) {
			return "", &mothershipKeyErr{opts.Addr, "the key given for it: check the mothership's address and key in the recovery kit"}
		}
		if errors.Is(err, errkind.ErrNotRegistered) {
			return "", fmt.Errorf("%w: the mothership knows no recovery key of %s for this passphrase (a wrong passphrase or school name, or the school's kit never reached it: then ask its staff for a recovery bundle on a stick)", errkind.ErrPermission, opts.School)
		}
		return "", fmt.Errorf("fetch the recovery bundle: %w", err)
	}
	return f.Name(), nil
}

// RecoveryFor finds, on a mothership, the school whose registry names the
// recovery key pub, and writes its recovery bundle, signed with key, to w.
// It fails with errkind.ErrNotRegistered before writing anything for a key
// no school has.
func RecoveryFor(ctx context.Context, st *store.Store, pub ed25519.PublicKey, key ed25519.PrivateKey, w io.Writer) error {
	want := hex.EncodeToString(pub)
	for _, u := range st.Users() {
		reg, order, byLaptop := schoolSnapshots(st, u)
		if reg == nil {
			continue
		}
		e, err := st.Lookup(ctx, reg.Root, RegRecovery)
		if err != nil {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(st.FileReader(ctx, e), 4096))
		if err != nil || strings.TrimSpace(string(b)) != want {
			continue
		}
		bw, err := bundle.NewWriter(w, bundle.Header{Kind: bundle.KindRecovery, For: u.Serial, Created: time.Now().UTC()}, key)
		if err != nil {
			return err
		}
		if _, err := writeRecovery(ctx, st, bw, reg, order, byLaptop); err != nil {
			return err
		}
		return bw.Close()
	}
	return errkind.Errorf(errkind.NotRegistered, "no school here has this recovery key")
}

// newerRegistry reports whether the registry copy a is newer than b: by
// the school's number (Origin.Seq), then the order the mothership received
// them (Seq), then the school's clock. Not by the clock first: a clock that
// went back dates the newest registry years ago.
func newerRegistry(a, b *store.Snapshot) bool {
	if c := cmp.Compare(a.Origin.Seq, b.Origin.Seq); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(a.Seq, b.Seq); c != 0 {
		return c > 0
	}
	return !a.Origin.Time.Before(b.Origin.Time)
}

// schoolSnapshots sorts a school account's snapshots: its newest registry,
// and each laptop's snapshots.
func schoolSnapshots(st *store.Store, school *store.User) (reg *store.Snapshot, order []uint64, byLaptop map[uint64][]*store.Snapshot) {
	byLaptop = map[uint64][]*store.Snapshot{}
	for _, sn := range st.Snapshots(school.ID) {
		o := sn.Origin
		if o == nil {
			continue
		}
		if o.User == 0 {
			if reg == nil || newerRegistry(sn, reg) {
				reg = sn
			}
			continue
		}
		if byLaptop[o.User] == nil {
			order = append(order, o.User)
		}
		byLaptop[o.User] = append(byLaptop[o.User], sn)
	}
	return reg, order, byLaptop
}

func writeRecovery(ctx context.Context, st *store.Store, w *bundle.Writer, reg *store.Snapshot, order []uint64, byLaptop map[uint64][]*store.Snapshot) (*ExportResult, error) {
	res := &ExportResult{Report: &Report{}}
	// The sealed key first: a wrong passphrase is found before the new
	// server writes anything.
	for _, name := range []string{RegSealed, RegPub, RegStore, RegUsers} {
		e, err := st.Lookup(ctx, reg.Root, name)
		if err != nil {
			if name == RegSealed || name == RegPub {
				continue // no recovery kit was made: the key must come from elsewhere
			}
			return nil, fmt.Errorf("registry file %s: %w", name, err)
		}
		b, err := io.ReadAll(io.LimitReader(st.FileReader(ctx, e), 64<<20))
		if err != nil {
			return nil, fmt.Errorf("registry file %s: %w", name, err)
		}
		if err := w.Meta(name, b); err != nil {
			return nil, err
		}
	}
	if err := w.Meta(metaRegistrySeq, []byte(strconv.FormatInt(reg.Origin.Seq, 10))); err != nil {
		return nil, err
	}
	written := map[blob.Ref]bool{}
	var commits []commitRec
	for _, user := range order {
		if err := w.Meta(metaLaptop, []byte(strconv.FormatUint(user, 10))); err != nil {
			return nil, err
		}
		for _, sn := range byLaptop[user] {
			err := eachBlob(ctx, st, sn.Root, written, func(r blob.Ref) error {
				b, err := st.ReadStored(ctx, r)
				if err != nil {
					return fmt.Errorf("snapshot %s of %s: %w", sn.Origin.Snapshot, sn.Origin.Serial, err)
				}
				res.Report.Blobs++
				res.Report.Bytes += int64(len(b.Data))
				return w.Blob(b)
			})
			if err != nil {
				return nil, err
			}
			o := *sn.Origin
			commits = append(commits, commitRec{User: user, Root: sn.Root, Info: manifest.CommitInfo{Host: sn.Host, Source: sn.Source, Origin: &o}})
			res.Report.Snapshots++
		}
	}
	b, err := json.Marshal(commits)
	if err != nil {
		return nil, err
	}
	return res, w.Meta(metaCommits, b)
}

// eachBlob calls fn for every blob of the tree root not in done, children
// before their directory.
func eachBlob(ctx context.Context, st *store.Store, root chunk.ID, done map[blob.Ref]bool, fn func(blob.Ref) error) error {
	ref := blob.Ref{Type: blob.Tree, ID: root}
	if done[ref] {
		return nil
	}
	t, err := st.ReadTree(ctx, root)
	if err != nil {
		return fmt.Errorf("directory %s: %w", root, err)
	}
	for i := range t.Entries {
		e := &t.Entries[i]
		switch e.Type {
		case manifest.File:
			for _, c := range e.Chunks {
				cr := blob.Ref{Type: blob.Chunk, ID: c}
				if done[cr] {
					continue
				}
				done[cr] = true
				if err := fn(cr); err != nil {
					return err
				}
			}
		case manifest.Dir:
			if err := eachBlob(ctx, st, e.Subtree, done, fn); err != nil {
				return err
			}
		}
	}
	done[ref] = true
	return fn(ref)
}

// RecoverOptions say how to rebuild a school server.
type RecoverOptions struct {
	// DataDir is the new server's data directory: empty or absent.
	DataDir string
	// Paths are the recovery bundle's pieces, or directories holding them.
	Paths []string
	// Addr, instead of Paths, fetches the bundle from the mothership over
	// the network, authenticated by the recovery key derived from the
	// passphrase (the school registered it with its registry).
	Addr string
	// Mothership is the key that must have signed the bundle (from the
	// recovery kit or the mothership's staff).
	Mothership ed25519.PublicKey
	// School is the school's name; Passphrase the recovery passphrase of
	// its kit, which opens the sealed server key.
	School     string
	Passphrase string
	// Store are the options the new store opens with (Params are taken
	// from the bundle).
	Store store.Options
}

// RecoverResult says what Recover rebuilt.
type RecoverResult struct {
	School    string `json:"school"`
	Users     int    `json:"users"`
	Snapshots int    `json:"snapshots"`
	Blobs     int    `json:"blobs"`
	Bytes     int64  `json:"bytes"`
	ServerKey string `json:"server_key"`
}

// dirEntries lists dir's entries but an empty lost+found: the data
// directory of a rebuilt server is often a new file system's root.
func dirEntries(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.Name() == "lost+found" && e.IsDir() {
			if in, err := os.ReadDir(filepath.Join(dir, e.Name())); err == nil && len(in) == 0 {
				continue
			}
		}
		out = append(out, e.Name())
	}
	return out
}

// Recover rebuilds a school server in an empty data directory from a
// mothership's recovery bundle: the same server key (opened with the
// recovery passphrase), every laptop registration with its key, aliases,
// policies and quota, and every snapshot with its ID and time. Laptops then
// back up to it without registering again. The bundle is verified whole
// before anything is written; the passphrase is checked first of all.
func Recover(ctx context.Context, opts RecoverOptions) (res *RecoverResult, err error) {
	if ents := dirEntries(opts.DataDir); len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s is not empty: a server is rebuilt into an empty data directory", errkind.ErrExists, opts.DataDir)
	}
	// A failed rebuild leaves the directory empty again, ready for the
	// next try (it was empty before).
	defer func() {
		if err != nil {
			for _, name := range dirEntries(opts.DataDir) {
				os.RemoveAll(filepath.Join(opts.DataDir, name))
			}
		}
	}()
	if err := kit.CheckPassphrase(opts.Passphrase); err != nil {
		return nil, err
	}
	if len(opts.Paths) == 0 && opts.Addr == "" {
		return nil, fmt.Errorf("%w: name the recovery bundle's pieces or the mothership's address", errkind.ErrBadRequest)
	}
	var open func() (io.ReadCloser, error)
	switch {
	case len(opts.Paths) > 0:
		sets, err := bundle.ScanPieces(opts.Paths...)
		if err != nil {
			return nil, err
		}
		if len(sets) != 1 {
			return nil, fmt.Errorf("%w: the paths hold %d bundles: give the pieces of one recovery bundle", errkind.ErrBadRequest, len(sets))
		}
		ps := sets[0]
		if err := ps.Check(); err != nil {
			return nil, err
		}
		open = ps.Open
	case opts.Addr != "":
		// Download the bundle first (it is read twice: verified whole,
		// then applied), next to the data directory.
		f, err := fetchRecovery(ctx, opts)
		if err != nil {
			return nil, err
		}
		defer os.Remove(f)
		open = func() (io.ReadCloser, error) { return os.Open(f) }
	}
	trust := func(h *bundle.Header) error {
		if err := bundle.Trust(bundle.KindRecovery, opts.Mothership)(h); err != nil {
			return err
		}
		if opts.School != "" && h.For != opts.School {
			return fmt.Errorf("%w: this recovery bundle is for %q, not %q", errkind.ErrBadRequest, h.For, opts.School)
		}
		return nil
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	h, _, err := bundle.Verify(rc, trust)
	rc.Close()
	if err != nil {
		return nil, err
	}
	school := h.For
	res = &RecoverResult{School: school}
	if err := os.MkdirAll(opts.DataDir, 0o750); err != nil {
		return nil, err
	}
	var st *store.Store
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	var cur store.UserID
	var batch []blob.Blob
	var size int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if st == nil || cur == 0 {
			return fmt.Errorf("%w: the recovery bundle has blobs before its registry", errkind.ErrDamaged)
		}
		if err := st.Put(ctx, cur, batch); err != nil {
			return err
		}
		res.Blobs += len(batch)
		res.Bytes += int64(size)
		batch, size = nil, 0
		return nil
	}
	var commits []commitRec
	var keyFile []byte
	var registrySeq int64
	rc, err = open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	_, err = bundle.Read(rc, trust, func(b blob.Blob) error {
		batch = append(batch, b)
		size += len(b.Data)
		if size >= batchBytes {
			return flush()
		}
		return nil
	}, func(name string, data []byte) error {
		if err := flush(); err != nil {
			return err
		}
		switch name {
		case RegStore:
			if keyFile == nil {
				return fmt.Errorf("%w: the recovery bundle has no sealed server key: the school never made a recovery kit, so its laptops must register again with a new key", errkind.ErrNotFound)
			}
			var info RegistryInfo
			if err := json.Unmarshal(data, &info); err != nil {
				return fmt.Errorf("%w: the registry's %s does not decode: %v", errkind.ErrDamaged, name, err)
			}
			o := opts.Store
			// A revoked laptop, one waiting for approval or one over its
			// hard quota gets its backups back too.
			o.Params, o.Rebuild = info.Params, true
			s, err := store.Open(ctx, opts.DataDir, o)
			if err != nil {
				return err
			}
			st = s
		case RegUsers:
			if st == nil {
				return fmt.Errorf("%w: the recovery bundle lists laptops before the store's settings", errkind.ErrDamaged)
			}
			var users []*store.User
			if err := json.Unmarshal(data, &users); err != nil {
				return fmt.Errorf("%w: the registry's %s does not decode: %v", errkind.ErrDamaged, name, err)
			}
			for _, u := range users {
				if u == nil {
					return fmt.Errorf("%w: the registry's %s holds an empty record", errkind.ErrDamaged, name)
				}
				if _, err := st.ImportUser(ctx, u); err != nil {
					return fmt.Errorf("laptop %s: %w", u.Serial, err)
				}
				res.Users++
			}
		case RegSealed:
			k, err := kit.Open(opts.Passphrase, school, data)
			if err != nil {
				return err
			}
			keyFile = k
		case metaRegistrySeq:
			n, err := strconv.ParseInt(string(data), 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("%w: the bundle's registry number is %q", errkind.ErrDamaged, data)
			}
			registrySeq = n
		case metaLaptop:
			id, err := strconv.ParseUint(string(data), 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("%w: a laptop record of the bundle is %q", errkind.ErrDamaged, data)
			}
			cur = store.UserID(id)
		case metaCommits:
			if err := json.Unmarshal(data, &commits); err != nil || len(commits) > maxCommits {
				return fmt.Errorf("%w: the bundle's list of snapshots does not decode", errkind.ErrDamaged)
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: the recovery bundle has no registry", errkind.ErrDamaged)
	}
	if keyFile == nil {
		return nil, fmt.Errorf("%w: the recovery bundle has no sealed server key: the school never made a recovery kit, so its laptops must register again with a new key", errkind.ErrNotFound)
	}
	serverKey, ok := proto.DecodeKey(keyFile)
	if !ok {
		return nil, fmt.Errorf("%w: the sealed server key does not hold a key", errkind.ErrDamaged)
	}
	res.ServerKey = bundle.Fingerprint(serverKey.Public().(ed25519.PublicKey))
	// Each laptop holds every blob of its snapshots (a chunk that many
	// laptops share came once, under the first of them), then the snapshots
	// are committed with their IDs and times.
	for _, c := range commits {
		if c.Info.Origin == nil {
			return nil, fmt.Errorf("%w: a snapshot of the bundle does not say where it was made", errkind.ErrDamaged)
		}
		user := store.UserID(c.User)
		var refs []blob.Ref
		if err := eachBlob(ctx, st, c.Root, map[blob.Ref]bool{}, func(r blob.Ref) error { refs = append(refs, r); return nil }); err != nil {
			return nil, err
		}
		missing, err := st.Adopt(ctx, user, refs)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s of %s: %w", c.Info.Origin.Snapshot, c.Info.Origin.Serial, err)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%w: snapshot %s of %s lacks %d blob(s) in the bundle", errkind.ErrDamaged, c.Info.Origin.Snapshot, c.Info.Origin.Serial, len(missing))
		}
		if _, err := st.Commit(ctx, user, c.Root, c.Info); err != nil {
			return nil, fmt.Errorf("snapshot %s of %s: %w", c.Info.Origin.Snapshot, c.Info.Origin.Serial, err)
		}
		res.Snapshots++
	}
	if err := atomicfile.WriteFile(filepath.Join(opts.DataDir, KeyFile), keyFile, 0o600); err != nil {
		return nil, err
	}
	// What the mothership has is confirmed: the next sync sends only what
	// laptops back up from now on.
	state, err := LoadState(opts.DataDir)
	if err != nil {
		return nil, err
	}
	for _, c := range commits {
		state.Confirmed[snapKey(store.UserID(c.User), store.SnapshotID(c.Info.Origin.Snapshot))] = time.Now().UTC()
	}
	state.Mothership, state.RegistrySeq = opts.Mothership, registrySeq
	if err := state.Save(nil); err != nil {
		return nil, err
	}
	return res, nil
}
