package offsite

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/manifest"
	"github.com/xs-backup/xs-backup/pkg/offsite/bundle"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// metaCommits is the bundle record listing the snapshots to commit, after
// every blob.
const metaCommits = "commits"

// maxCommits caps the commits record of a bundle.
const maxCommits = 1 << 20

// commitRec is one snapshot in a bundle.
type commitRec struct {
	// User is the laptop's user ID (recovery bundles; the origin's).
	User uint64              `json:"user,omitempty"`
	Root chunk.ID            `json:"root"`
	Info manifest.CommitInfo `json:"info"`
}

// Receipt is what a mothership writes when it has imported a school's
// bundle: every snapshot of that school it holds, signed with its key. It
// goes back to the school on the next trip; the school's next export then
// carries only what the mothership still lacks.
type Receipt struct {
	Version int `json:"version"`
	// School is the school's name and SchoolKey its server's public key.
	School    string            `json:"school"`
	SchoolKey ed25519.PublicKey `json:"school_key"`
	// Mothership is the key that signed the receipt.
	Mothership ed25519.PublicKey `json:"mothership"`
	// Bundle is the ID of the bundle imported, Imported when.
	Bundle   string    `json:"bundle"`
	Imported time.Time `json:"imported"`
	// Snapshots are "user/snapshot" of every snapshot of the school the
	// mothership holds; Registry the root of its newest registry copy.
	Snapshots []string `json:"snapshots"`
	Registry  chunk.ID `json:"registry"`
	Sig       []byte   `json:"sig,omitempty"`
}

func (r *Receipt) signed() []byte {
	c := *r
	c.Sig = nil
	b, _ := json.Marshal(&c)
	return append([]byte("xs-backup receipt v1\n"), b...)
}

// maxReceipt caps a receipt file: it lists the school's snapshots the
// mothership holds (about 60 bytes each).
const maxReceipt = 64 << 20

// ReadReceipt reads and verifies a receipt file: signed by mothership (nil:
// any key, which the caller then pins), for the school with key school.
func ReadReceipt(path string, mothership, school ed25519.PublicKey) (*Receipt, error) {
	b, err := atomicfile.ReadSmall(path, maxReceipt)
	if errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: receipt %s is larger than %d MiB", errkind.ErrBadRequest, path, maxReceipt>>20)
	}
	if err != nil {
		return nil, err
	}
	var r Receipt
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: receipt %s does not decode: %v", errkind.ErrDamaged, path, err)
	}
	switch {
	case r.Version != 1:
		return nil, fmt.Errorf("%w: receipt %s has version %d, this software reads 1", errkind.ErrBadRequest, path, r.Version)
	case len(r.Mothership) != ed25519.PublicKeySize || !ed25519.Verify(r.Mothership, r.signed(), r.Sig):
		return nil, fmt.Errorf("%w: receipt %s is damaged or forged: its signature does not match", errkind.ErrDamaged, path)
	case mothership != nil && !mothership.Equal(r.Mothership):
		return nil, fmt.Errorf("%w: receipt %s was signed by %s, not by this school's mothership %s", errkind.ErrPermission, path,
			proto.Fingerprint(r.Mothership), proto.Fingerprint(mothership))
	case !school.Equal(r.SchoolKey):
		return nil, fmt.Errorf("%w: receipt %s is for another school (%s, key %s)", errkind.ErrPermission, path, r.School, proto.Fingerprint(r.SchoolKey))
	}
	return &r, nil
}

// ApplyReceipt records in state what the receipt confirms.
func (s *State) ApplyReceipt(r *Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Mothership == nil {
		s.Mothership = r.Mothership
	}
	for _, k := range r.Snapshots {
		if _, ok := s.Confirmed[k]; !ok {
			s.Confirmed[k] = r.Imported
		}
	}
	s.Registry, s.Receipt = r.Registry, r.Bundle
}

// ExportOptions say what Export writes.
type ExportOptions struct {
	// Dir is where the bundle's pieces go (a USB stick). Receipts found
	// there (receipt-*.json) are read first.
	Dir string
	// PieceSize splits the bundle into pieces of at most this many bytes
	// (several sticks); 0: one piece.
	PieceSize int64
	// Receipts are more receipt files to read first.
	Receipts []string
	// School, Key and KeyDir: the school's name, its server key (which
	// signs the bundle), and where its sealed key lies (see Options).
	School string
	Key    ed25519.PrivateKey
	KeyDir string
	Now    func() time.Time
	// Mothership is the mothership's public key as its staff gave it (the
	// configuration's [mothership] key), if known: only receipts it
	// signed are read. Without it, the first receipt (which must answer a
	// bundle this school made) pins its signer.
	Mothership ed25519.PublicKey
}

// ExportResult says what Export did.
type ExportResult struct {
	Bundle   string   `json:"bundle"`
	Files    []string `json:"files"`
	Bytes    int64    `json:"bytes"`
	Base     string   `json:"base,omitempty"`
	Receipts []string `json:"receipts_read,omitempty"`
	*Report
}

// Export writes a signed bundle of everything the mothership does not have
// according to the receipts seen so far (those in opts.Dir and
// opts.Receipts are read first): every snapshot not confirmed, the chunks
// of those not reachable from confirmed ones, and the registry. opts.Dir
// (the stick's directory) must exist.
func Export(ctx context.Context, st *store.Store, state *State, opts ExportOptions) (*ExportResult, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pub := opts.Key.Public().(ed25519.PublicKey)
	res := &ExportResult{}
	found, _ := filepath.Glob(filepath.Join(opts.Dir, "receipt-*.json"))
	// A stick that goes round several schools carries their receipts too:
	// those found on it that name another school are left alone (a receipt
	// named by hand must be this school's).
	found = slices.DeleteFunc(found, func(p string) bool { return !receiptNames(p, pub) })
	for _, p := range append(found, opts.Receipts...) {
		state.mu.Lock()
		pinned := state.Mothership
		state.mu.Unlock()
		if opts.Mothership != nil {
			pinned = opts.Mothership
		}
		r, err := ReadReceipt(p, pinned, pub)
		if err != nil {
			return nil, err
		}
		state.mu.Lock()
		_, made := state.Exported[r.Bundle]
		delete(state.Exported, r.Bundle)
		state.mu.Unlock()
		if pinned == nil && !made {
			// The first receipt pins its signer: it must answer a bundle
			// this school made, or whoever carried the stick could mark
			// every snapshot off-site with a key of their own.
			return nil, fmt.Errorf("%w: receipt %s answers bundle %s, which this school did not make (or made before this version kept a list): it cannot be the mothership's first receipt; remove it from the stick, export again and bring back that bundle's receipt", errkind.ErrPermission, filepath.Base(p), r.Bundle)
		}
		state.ApplyReceipt(r)
		res.Receipts = append(res.Receipts, p)
	}
	if len(res.Receipts) > 0 {
		if err := state.Save(st); err != nil {
			return nil, err
		}
	}
	conf := state.confirmedCopy()
	known, err := reachable(ctx, st, conf)
	if err != nil {
		return nil, err
	}
	state.mu.Lock()
	base := state.Receipt
	state.mu.Unlock()
	fw, err := bundle.CreateFiles(opts.Dir, "xs-"+opts.School, opts.PieceSize,
		bundle.Header{Kind: bundle.KindSchool, For: opts.School, Base: base, Created: opts.Now().UTC()}, opts.Key)
	if err != nil {
		return nil, err
	}
	sink := &bundleSink{w: fw.Writer, known: known, written: map[blob.Ref]bool{}}
	rep, err := Replicate(ctx, st, sink, state, Options{School: opts.School, KeyDir: opts.KeyDir, Now: opts.Now, NoConfirm: true})
	if err == nil {
		var b []byte
		if b, err = json.Marshal(sink.commits); err == nil {
			err = fw.Meta(metaCommits, b)
		}
	}
	if err != nil {
		fw.Abort()
		return nil, err
	}
	h := fw.Header()
	res.Bytes = fw.Written()
	if res.Files, err = fw.Close(); err != nil {
		return nil, err
	}
	res.Bundle, res.Base, res.Report = h.IDString(), base, rep
	state.mu.Lock()
	if state.Exported == nil {
		state.Exported = map[string]time.Time{}
	}
	state.Exported[h.IDString()] = opts.Now().UTC()
	state.mu.Unlock()
	if err := state.Save(st); err != nil {
		return res, fmt.Errorf("the bundle is written, but this school's off-site state could not be saved: %w", err)
	}
	return res, nil
}

// reachable returns every blob reachable from the confirmed snapshots st
// still has.
func reachable(ctx context.Context, st *store.Store, conf map[string]time.Time) (map[blob.Ref]bool, error) {
	known := map[blob.Ref]bool{}
	for _, u := range st.Users() {
		for _, sn := range st.Snapshots(u.ID) {
			if _, ok := conf[snapKey(u.ID, sn.ID)]; !ok {
				continue
			}
			if err := markTree(ctx, st, sn.Root, known); err != nil {
				return nil, err
			}
		}
	}
	return known, nil
}

func markTree(ctx context.Context, st *store.Store, id chunk.ID, known map[blob.Ref]bool) error {
	ref := blob.Ref{Type: blob.Tree, ID: id}
	if known[ref] {
		return nil
	}
	t, err := st.ReadTree(ctx, id)
	if err != nil {
		return nil // damaged here: not known, so sent again if needed
	}
	for i := range t.Entries {
		e := &t.Entries[i]
		switch e.Type {
		case manifest.File:
			for _, c := range e.Chunks {
				known[blob.Ref{Type: blob.Chunk, ID: c}] = true
			}
		case manifest.Dir:
			if err := markTree(ctx, st, e.Subtree, known); err != nil {
				return err
			}
		}
	}
	known[ref] = true
	return nil
}

// bundleSink writes what a replication sends into a bundle.
type bundleSink struct {
	w       *bundle.Writer
	known   map[blob.Ref]bool
	written map[blob.Ref]bool
	mu      sync.Mutex // guards commits
	commits []commitRec
}

func (k *bundleSink) Need(_ context.Context, refs []blob.Ref) ([]bool, error) {
	out := make([]bool, len(refs))
	for i, r := range refs {
		out[i] = !k.known[r] && !k.written[r]
	}
	return out, nil
}

func (k *bundleSink) Put(_ context.Context, blobs []blob.Blob) error {
	for i := range blobs {
		if k.written[blobs[i].Ref] {
			continue
		}
		if err := k.w.Blob(blobs[i]); err != nil {
			return err
		}
		k.written[blobs[i].Ref] = true
	}
	return nil
}

func (k *bundleSink) Commit(_ context.Context, root chunk.ID, info manifest.CommitInfo) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.commits = append(k.commits, commitRec{Root: root, Info: info})
	return nil
}

// ImportOptions say what Import reads and where its receipt goes.
type ImportOptions struct {
	// Paths are the bundle's pieces, or directories holding them.
	Paths []string
	// Key is the mothership's key: it signs the receipt.
	Key ed25519.PrivateKey
	// ReceiptDir is where the receipt is written (default: the directory
	// of the first piece, so that it travels back on the same stick).
	ReceiptDir string
	// DataDir holds the record of imported bundles (replays are refused).
	DataDir string
	Now     func() time.Time
}

// ImportResult says what Import did.
type ImportResult struct {
	Bundle    string `json:"bundle"`
	School    string `json:"school"`
	Snapshots int    `json:"snapshots"`
	Blobs     int    `json:"blobs"`
	Bytes     int64  `json:"bytes"`
	Receipt   string `json:"receipt"`
}

// importLog is the mothership's record of the bundles it imported, per
// school, in DataDir/offsite/imported-<school>.json.
type importLog struct {
	Bundles map[string]time.Time `json:"bundles"`
	Newest  time.Time            `json:"newest_created"`
}

var importMu sync.Mutex // one import at a time in this process

// Import verifies a school's bundle (every piece, the signature of a school
// registered here, every blob's hash) and ingests it: blobs first, then —
// once the whole bundle has been read, checked, and every snapshot found
// complete — its snapshots. A damaged, truncated, reordered, replayed or
// foreign bundle is refused and nothing of it becomes visible. It writes a
// signed receipt listing every snapshot of the school the mothership holds.
func Import(ctx context.Context, st *store.Store, opts ImportOptions) (*ImportResult, error) {
	importMu.Lock()
	defer importMu.Unlock()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	set, err := bundle.ScanPieces(opts.Paths...)
	if err != nil {
		return nil, err
	}
	if len(set) != 1 {
		var ids []string
		for _, s := range set {
			ids = append(ids, s.IDString())
		}
		return nil, fmt.Errorf("%w: the paths hold %d bundles (%s): import one at a time", errkind.ErrBadRequest, len(set), strings.Join(ids, ", "))
	}
	ps := set[0]
	if err := ps.Check(); err != nil {
		return nil, err
	}
	var school *store.User
	var log *importLog
	trust := func(h *bundle.Header) error {
		if h.Kind != bundle.KindSchool {
			return fmt.Errorf("%w: this is a %q bundle; a mothership imports school bundles", errkind.ErrBadRequest, h.Kind)
		}
		u, err := st.UserByKey(h.Signer)
		if err != nil {
			return fmt.Errorf("%w: the bundle was signed by a school this mothership does not know (key %s, says it is %q)", errkind.ErrPermission, h.Fingerprint(), h.For)
		}
		switch {
		case u.Revoked:
			return fmt.Errorf("%w: school %s is revoked here", errkind.ErrRevoked, u.Serial)
		case !u.Approved:
			return fmt.Errorf("%w: school %s waits for approval here", errkind.ErrNotApproved, u.Serial)
		case h.For != u.Serial:
			return fmt.Errorf("%w: the bundle says it is from %q but its key is school %s's", errkind.ErrPermission, h.For, u.Serial)
		}
		l, err := loadImportLog(opts.DataDir, u.Serial)
		if err != nil {
			return err
		}
		if when, ok := l.Bundles[h.IDString()]; ok {
			return fmt.Errorf("%w: bundle %s of %s was already imported on %s", errkind.ErrExists, h.IDString(), u.Serial, when.Local().Format(time.DateTime))
		}
		// A bundle dated before the newest imported is not refused: the
		// school's clock may have gone back since (a server without a
		// network, after a power cut). A replay of one already imported
		// is refused above, and what an older bundle holds is here already.
		school, log = u, l
		return nil
	}
	// First pass: the whole bundle is checked before anything is stored.
	rc, err := ps.Open()
	if err != nil {
		return nil, err
	}
	h, _, err := bundle.Verify(rc, trust)
	rc.Close()
	if err != nil {
		return nil, err
	}
	res := &ImportResult{Bundle: h.IDString(), School: school.Serial}
	rc, err = ps.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var batch []blob.Blob
	var size int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.Put(ctx, school.ID, batch); err != nil {
			return err
		}
		res.Blobs += len(batch)
		res.Bytes += int64(size)
		batch, size = nil, 0
		return nil
	}
	var commits []commitRec
	_, err = bundle.Read(rc, trust, func(b blob.Blob) error {
		batch = append(batch, b)
		size += len(b.Data)
		if size >= batchBytes {
			return flush()
		}
		return nil
	}, func(name string, data []byte) error {
		if name != metaCommits {
			return nil
		}
		if err := json.Unmarshal(data, &commits); err != nil {
			return fmt.Errorf("%w: the bundle's list of snapshots does not decode: %v", errkind.ErrDamaged, err)
		}
		if len(commits) > maxCommits {
			return fmt.Errorf("%w: the bundle lists more than %d snapshots", errkind.ErrTooLarge, maxCommits)
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	// Every snapshot must be complete before any becomes visible.
	for _, c := range commits {
		if c.Info.Origin == nil {
			return nil, fmt.Errorf("%w: a snapshot in the bundle does not say where it was made", errkind.ErrBadRequest)
		}
		if missing, err := lacking(ctx, st, school.ID, c.Root); err != nil || missing > 0 {
			if err == nil {
				err = fmt.Errorf("%w: snapshot %s of laptop %s needs %d blob(s) that neither the bundle nor this mothership has: the bundle was made against a receipt this mothership did not write (import the bundles made before it first, or make a new export)",
					errkind.ErrNotHeld, c.Info.Origin.Snapshot, c.Info.Origin.Serial, missing)
			}
			return nil, err
		}
	}
	// All or nothing: a commit refused half way (an origin the store will
	// not take, the quota, a full disk) takes back the ones this import
	// made, so that none of the bundle is visible.
	var made []store.SnapshotID
	for _, c := range commits {
		before := len(st.Snapshots(school.ID))
		sn, err := st.Commit(ctx, school.ID, c.Root, c.Info)
		if err != nil {
			for _, id := range made {
				if derr := st.DeleteSnapshot(context.WithoutCancel(ctx), school.ID, id); derr != nil {
					err = fmt.Errorf("%w; taking back the snapshots this import made failed too (%v): delete them by hand", err, derr)
					break
				}
			}
			return nil, fmt.Errorf("snapshot %s of %s: %w", c.Info.Origin.Snapshot, c.Info.Origin.Serial, err)
		}
		if len(st.Snapshots(school.ID)) > before {
			if c.Info.Origin.User != 0 { // the registry is no laptop's backup (as in Export's count)
				res.Snapshots++
			}
			made = append(made, sn.ID)
		}
	}
	log.Bundles[h.IDString()] = opts.Now().UTC()
	if h.Created.After(log.Newest) {
		log.Newest = h.Created
	}
	if err := saveImportLog(opts.DataDir, school.Serial, log); err != nil {
		return nil, err
	}
	dir := opts.ReceiptDir
	if dir == "" {
		dir = filepath.Dir(ps.Pieces[0].Path)
	}
	rcpt := MakeReceipt(st, school, opts.Key, h.IDString(), opts.Now())
	b, _ := json.MarshalIndent(rcpt, "", " ")
	res.Receipt = filepath.Join(dir, "receipt-"+school.Serial+"-"+h.IDString()+".json")
	if err := atomicfile.WriteFile(res.Receipt, b, 0o644); err != nil {
		return nil, fmt.Errorf("the bundle is imported, but its receipt could not be written: %w", err)
	}
	return res, nil
}

// MakeReceipt makes a signed receipt of what the mothership st holds for
// school.
func MakeReceipt(st *store.Store, school *store.User, key ed25519.PrivateKey, bundleID string, now time.Time) *Receipt {
	r := &Receipt{Version: 1, School: school.Serial, SchoolKey: school.PublicKey, Mothership: key.Public().(ed25519.PublicKey),
		Bundle: bundleID, Imported: now.UTC()}
	var reg *store.Snapshot
	for _, sn := range st.Snapshots(school.ID) {
		o := sn.Origin
		if o == nil {
			continue
		}
		if o.User == 0 {
			if reg == nil || newerRegistry(sn, reg) {
				reg, r.Registry = sn, sn.Root
			}
			continue
		}
		r.Snapshots = append(r.Snapshots, snapKey(store.UserID(o.User), store.SnapshotID(o.Snapshot)))
	}
	slices.Sort(r.Snapshots)
	r.Sig = ed25519.Sign(key, r.signed())
	return r
}

// lacking counts the blobs of the tree root that user does not hold (at
// least 1 when a directory of it is not stored at all).
func lacking(ctx context.Context, st *store.Store, user store.UserID, root chunk.ID) (int, error) {
	var refs []blob.Ref
	err := eachBlob(ctx, st, root, map[blob.Ref]bool{}, func(r blob.Ref) error {
		refs = append(refs, r)
		return nil
	})
	missingTree := 0
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		missingTree = 1
	}
	need, err := st.Need(ctx, user, refs)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, x := range need {
		if x {
			n++
		}
	}
	return max(n, missingTree), nil
}

func importLogPath(dataDir, school string) string {
	return filepath.Join(dataDir, "offsite", "imported-"+school+".json")
}

// maxImportLog caps the import log read: an entry is ~60 bytes, a bundle a
// night for a thousand years is 22 MB.
const maxImportLog = 64 << 20

func loadImportLog(dataDir, school string) (*importLog, error) {
	l := &importLog{Bundles: map[string]time.Time{}}
	b, err := atomicfile.ReadSmall(importLogPath(dataDir, school), maxImportLog)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, fmt.Errorf("%w: the record of bundles imported from %s: %v", errkind.ErrDamaged, school, err)
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("%w: the record of bundles imported from %s does not decode: %v", errkind.ErrDamaged, school, err)
	}
	if l.Bundles == nil {
		l.Bundles = map[string]time.Time{}
	}
	return l, nil
}

func saveImportLog(dataDir, school string, l *importLog) error {
	p := importLogPath(dataDir, school)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(l, "", " ")
	return atomicfile.WriteFile(p, b, 0o640)
}

// receiptNames reports whether the receipt file at p is for the school with
// key school (a file that does not decode is taken as its, so that reading
// it says what is wrong).
func receiptNames(p string, school ed25519.PublicKey) bool {
	if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() {
		return false // a pipe, a link, a directory: no receipt at all
	}
	b, err := atomicfile.ReadSmall(p, maxReceipt)
	if err != nil {
		return true
	}
	var r struct {
		SchoolKey ed25519.PublicKey `json:"school_key"`
	}
	if json.Unmarshal(b, &r) != nil {
		return true
	}
	return r.SchoolKey.Equal(school)
}

// ImportEach imports every bundle whose pieces are among opts.Paths, one
// after the other: a stick that went round several schools, or that still
// holds last trip's bundle beside this one. Each is verified and imported on
// its own (as Import), and one refused does not stop the others: refused
// holds why, by bundle. err is set only when the paths cannot be read.
func ImportEach(ctx context.Context, st *store.Store, opts ImportOptions) (done []*ImportResult, refused []error, err error) {
	sets, err := bundle.ScanPieces(opts.Paths...)
	if err != nil {
		return nil, nil, err
	}
	if len(sets) == 0 {
		return nil, nil, fmt.Errorf("%w: no bundle pieces (*%s) in %s", errkind.ErrNotFound, bundle.PieceExt, strings.Join(opts.Paths, ", "))
	}
	for _, set := range sets {
		o := opts
		o.Paths = nil
		for _, p := range set.Pieces {
			o.Paths = append(o.Paths, p.Path)
		}
		res, err := Import(ctx, st, o)
		if err != nil {
			refused = append(refused, fmt.Errorf("bundle %s: %w", set.IDString(), err))
			continue
		}
		done = append(done, res)
	}
	return done, refused, nil
}
