package admin

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// SyncRequest runs replication to the mothership now or, with Status, only
// reports what is not off-site yet (Service.SyncNow).
type SyncRequest struct {
	Status bool `json:"status,omitempty"`
}

// SyncResult is the output of `xs-admin sync`.
type SyncResult struct {
	// Report is what the run did (nil for Status).
	Report *offsite.Report `json:"report,omitempty"`
	// Lag is what is not off-site after it.
	Lag offsite.Lag `json:"lag"`
}

// SchoolsRequest lists the schools of a mothership or, with School, that
// school's laptops (Service.Schools).
type SchoolsRequest struct {
	School string `json:"school,omitempty"`
}

// SchoolRow is one line of `xs-admin schools`: a school, or with a school
// named, one of its laptops.
type SchoolRow struct {
	Name      string `json:"name"`
	Approved  bool   `json:"approved,omitempty"`
	Laptops   int    `json:"laptops,omitempty"`
	Snapshots int    `json:"snapshots"`
	// Latest is the time of the newest snapshot replicated (as made at
	// the school).
	Latest time.Time `json:"latest,omitzero"`
	Usage  int64     `json:"usage_bytes,omitempty"`
	// User is the laptop's user ID at the school (laptop rows).
	User uint64 `json:"user,omitempty"`
}

func (SyncRequest) Op() string    { return "sync" }
func (SchoolsRequest) Op() string { return "schools" }

// SyncNow runs or previews replication. Running it needs the daemon (it
// holds the connection to the mothership); the status is also read from a
// stopped one's store.
func (s *Service) SyncNow(ctx context.Context, r SyncRequest) (*SyncResult, error) {
	if s.Sync == nil {
		if !r.Status && s.Live {
			return nil, fmt.Errorf("this server replicates to no mothership: its configuration has no [mothership] section (address and key); add one and restart xs-backupd")
		}
		if !r.Status {
			return nil, errkind.Errorf(errkind.BadRequest, "replication runs in the daemon, and this store is not served by one: start xs-backupd")
		}
		st, err := offsite.LoadState(s.S.Dir())
		if err != nil {
			return nil, err
		}
		return &SyncResult{Lag: st.Lag(s.S)}, nil
	}
	rep, lag, err := s.Sync(ctx, r.Status)
	if err != nil {
		return nil, err
	}
	return &SyncResult{Report: rep, Lag: lag}, nil
}

// Schools lists the schools replicating here (accounts with replicated
// snapshots, or registered as schools), or one school's laptops.
func (s *Service) Schools(ctx context.Context, r SchoolsRequest) ([]SchoolRow, error) {
	if r.School != "" {
		u, err := s.user(r.School)
		if err != nil {
			return nil, err
		}
		byLaptop := map[uint64]*SchoolRow{}
		latest := map[uint64]*store.Snapshot{}
		for _, sn := range s.S.Snapshots(u.ID) {
			if sn.Origin == nil || sn.Origin.User == 0 {
				continue
			}
			row := byLaptop[sn.Origin.User]
			if row == nil {
				row = &SchoolRow{Name: sn.Origin.Serial, User: sn.Origin.User}
				byLaptop[sn.Origin.User] = row
			}
			// The laptop's latest by its commit order, not by a school
			// clock that may have gone back.
			row.Snapshots++
			if latest[sn.Origin.User] == nil || store.CompareOrder(sn, latest[sn.Origin.User]) > 0 {
				latest[sn.Origin.User] = sn
				row.Latest, row.Name = sn.Time, sn.Origin.Serial
			}
		}
		out := []SchoolRow{}
		for _, row := range byLaptop {
			out = append(out, *row)
		}
		slices.SortFunc(out, func(a, b SchoolRow) int { return strings.Compare(a.Name, b.Name) })
		return out, nil
	}
	out := []SchoolRow{} // [] in JSON, never null
	for _, u := range s.S.Users() {
		sns := s.S.Snapshots(u.ID)
		laptops := map[uint64]bool{}
		row := SchoolRow{Name: u.Serial, Approved: u.Approved}
		for _, sn := range sns {
			if sn.Origin == nil {
				continue
			}
			if sn.Origin.User != 0 {
				laptops[sn.Origin.User] = true
			}
			row.Snapshots++
			if sn.Time.After(row.Latest) {
				row.Latest = sn.Time
			}
		}
		if row.Snapshots == 0 && len(sns) > 0 {
			continue // a laptop of this server, not a school
		}
		row.Laptops = len(laptops)
		if us, err := s.S.Usage(ctx, u.ID); err == nil {
			row.Usage = us.Bytes
		}
		out = append(out, row)
	}
	return out, nil
}

// SyncNow is Service.SyncNow.
func (c *Client) SyncNow(ctx context.Context, r SyncRequest) (*SyncResult, error) {
	return do(ctx, c, (*Service).SyncNow, r)
}

// Schools is Service.Schools.
func (c *Client) Schools(ctx context.Context, r SchoolsRequest) ([]SchoolRow, error) {
	return do(ctx, c, (*Service).Schools, r)
}

// BundleExportRequest writes a bundle to a directory (a USB stick): on a
// school server, everything the mothership lacks according to the receipts
// seen so far (those in To are read first); on a mothership, with School,
// the recovery bundle that rebuilds that school's server
// (Service.BundleExport).
type BundleExportRequest struct {
	To string `json:"to"`
	// PieceSize splits the bundle into pieces of at most this many bytes.
	PieceSize int64 `json:"piece_size,omitempty"`
	// Receipts are more receipt files to read first.
	Receipts []string `json:"receipts,omitempty"`
	// School: on a school server, its name (the configuration's
	// [mothership] school); on a mothership, the school to write a
	// recovery bundle for.
	School string `json:"school"`
	// Recovery asks a mothership for School's recovery bundle.
	Recovery bool `json:"recovery,omitempty"`
	// Mothership is the mothership's public key in hex (the
	// configuration's [mothership] key), if staff set it: only receipts it
	// signed are read.
	Mothership string `json:"mothership,omitempty"`
}

// BundleImportRequest imports a school's bundle on a mothership and writes
// its receipt (Service.BundleImport).
type BundleImportRequest struct {
	From []string `json:"from"`
	// ReceiptTo is where the receipt goes (default: beside the bundle).
	ReceiptTo string `json:"receipt_to,omitempty"`
}

// RecoveryKitRequest seals the server key with a new recovery passphrase
// (Service.RecoveryKit).
type RecoveryKitRequest struct {
	School string `json:"school"`
}

func (BundleExportRequest) Op() string { return "bundle-export" }
func (BundleImportRequest) Op() string { return "bundle-import" }
func (RecoveryKitRequest) Op() string  { return "recovery-kit" }

func (s *Service) serverKey() (ed25519.PrivateKey, error) {
	b, err := atomicfile.ReadCapped(filepath.Join(s.S.Dir(), offsite.KeyFile), proto.MaxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("read the server key: %w", err)
	}
	key, ok := proto.DecodeKey(b)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a server key", errkind.ErrDamaged, offsite.KeyFile)
	}
	return key, nil
}

// BundleExport writes a bundle (see BundleExportRequest).
func (s *Service) BundleExport(ctx context.Context, r BundleExportRequest) (*offsite.ExportResult, error) {
	if r.To == "" || r.School == "" {
		return nil, fmt.Errorf("%w: a bundle needs a directory to go to and the school's name", ErrInvalid)
	}
	key, err := s.serverKey()
	if err != nil {
		return nil, err
	}
	if r.Recovery {
		u, err := s.user(r.School)
		if err != nil {
			return nil, err
		}
		return offsite.ExportRecovery(ctx, s.S, u, key, r.To, r.PieceSize)
	}
	st, err := offsite.LoadState(s.S.Dir())
	if err != nil {
		return nil, err
	}
	var ms ed25519.PublicKey
	if r.Mothership != "" {
		b, err := hex.DecodeString(strings.TrimSpace(r.Mothership))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: the mothership's key must be %d hex digits", ErrInvalid, 2*ed25519.PublicKeySize)
		}
		ms = b
	}
	return offsite.Export(ctx, s.S, st, offsite.ExportOptions{Dir: r.To, PieceSize: r.PieceSize, Receipts: r.Receipts,
		School: r.School, Key: key, KeyDir: s.S.Dir(), Mothership: ms})
}

// BundleImport imports a school's bundle (see BundleImportRequest).
func (s *Service) BundleImport(ctx context.Context, r BundleImportRequest) (*BundleImportResult, error) {
	if len(r.From) == 0 {
		return nil, fmt.Errorf("%w: name the bundle's pieces or the directory holding them", ErrInvalid)
	}
	key, err := s.serverKey()
	if err != nil {
		return nil, err
	}
	done, refused, err := offsite.ImportEach(ctx, s.S, offsite.ImportOptions{Paths: r.From, Key: key, ReceiptDir: r.ReceiptTo, DataDir: s.S.Dir()})
	if err != nil {
		return nil, err
	}
	if len(done) == 0 && len(refused) > 0 {
		return nil, refused[0]
	}
	res := &BundleImportResult{Imported: done}
	for _, e := range refused {
		res.Refused = append(res.Refused, e.Error())
	}
	return res, nil
}

// BundleImportResult is the output of `xs-admin import`: the bundles
// imported, and why others found beside them were refused.
type BundleImportResult struct {
	Imported []*offsite.ImportResult `json:"imported"`
	Refused  []string                `json:"refused,omitempty"`
}

// RecoveryKit seals the server key with a new passphrase; the result shows
// the passphrase once.
func (s *Service) RecoveryKit(_ context.Context, r RecoveryKitRequest) (*offsite.Kit, error) {
	if r.School == "" {
		return nil, fmt.Errorf("%w: the recovery kit needs the school's name ([mothership] school)", ErrInvalid)
	}
	key, err := s.serverKey()
	if err != nil {
		return nil, err
	}
	return offsite.MakeKit(s.S.Dir(), r.School, key)
}

// BundleExport is Service.BundleExport.
func (c *Client) BundleExport(ctx context.Context, r BundleExportRequest) (*offsite.ExportResult, error) {
	return do(ctx, c, (*Service).BundleExport, r)
}

// BundleImport is Service.BundleImport.
func (c *Client) BundleImport(ctx context.Context, r BundleImportRequest) (*BundleImportResult, error) {
	return do(ctx, c, (*Service).BundleImport, r)
}

// RecoveryKit is Service.RecoveryKit.
func (c *Client) RecoveryKit(ctx context.Context, r RecoveryKitRequest) (*offsite.Kit, error) {
	return do(ctx, c, (*Service).RecoveryKit, r)
}
