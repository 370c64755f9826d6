package admin

import (
	"context"
	"slices"
	"time"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/offsite"
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
		if !r.Status {
			return nil, errkind.Errorf(errkind.BadRequest, "replication runs in the daemon, and this store is not served by one")
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
		for _, sn := range s.S.Snapshots(u.ID) {
			if sn.Origin == nil || sn.Origin.User == 0 {
				continue
			}
			row := byLaptop[sn.Origin.User]
			if row == nil {
				row = &SchoolRow{Name: sn.Origin.Serial, User: sn.Origin.User}
				byLaptop[sn.Origin.User] = row
			}
			row.Snapshots++
			if sn.Time.After(row.Latest) {
				row.Latest, row.Name = sn.Time, sn.Origin.Serial
			}
		}
		var out []SchoolRow
		for _, row := range byLaptop {
			out = append(out, *row)
		}
		slices.SortFunc(out, func(a, b SchoolRow) int { return cmpString(a.Name, b.Name) })
		return out, nil
	}
	var out []SchoolRow
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

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SyncNow is Service.SyncNow.
func (c *Client) SyncNow(ctx context.Context, r SyncRequest) (*SyncResult, error) {
	return do(ctx, c, (*Service).SyncNow, r)
}

// Schools is Service.Schools.
func (c *Client) Schools(ctx context.Context, r SchoolsRequest) ([]SchoolRow, error) {
	return do(ctx, c, (*Service).Schools, r)
}
