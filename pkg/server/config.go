package server

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/xs-backup/xs-backup/internal/atomicfile"
	"github.com/xs-backup/xs-backup/internal/units"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// DefaultConfigPath is where xs-backupd looks for its configuration.
const DefaultConfigPath = "/etc/xs-backup/xs-backup.toml"

// Size is a byte count that reads "512MiB", "2GB", "1.5 GiB" or a plain number.
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	*s = Size(v)
	return err
}

// ParseSize parses a size with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
func ParseSize(text string) (int64, error) { return units.ParseSize(text) }

// Duration is a time.Duration that reads "90s", "2m", "1h30m" or "3d".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// maxDays is the most whole days a time.Duration holds.
const maxDays = int(math.MaxInt64 / int64(24*time.Hour))

// ParseDuration is time.ParseDuration that also takes whole days ("3d").
func ParseDuration(text string) (time.Duration, error) {
	t := strings.TrimSpace(text)
	if n, ok := strings.CutSuffix(t, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			if days > maxDays {
				return 0, fmt.Errorf("%q is more days than a duration holds (at most %dd, about 290 years)", text, maxDays)
			}
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 90s, 2m, 1h30m, 3d)", text)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q: a duration here cannot be negative (0 takes the default)", text)
	}
	return v, nil
}

// maxConfigBytes caps the configuration file read: the example with every
// setting is a few KiB.
const maxConfigBytes = 1 << 20

// Config is the daemon's configuration. Every field has a working default,
// so the daemon runs with no file at all.
type Config struct {
	// Listen is the UDP address of the backup protocol.
	Listen string `toml:"listen"`
	// Data is the store directory.
	Data string `toml:"data"`
	// Metrics is the HTTP address of /metrics ("" disables it).
	Metrics string `toml:"metrics"`
	// AdminSocket is the unix socket xs-admin uses while the daemon runs
	// (default: admin.sock in the data directory).
	AdminSocket string `toml:"admin_socket"`
	// Registration is "open" (laptops may back up once registered) or
	// "approve" (staff approve each laptop with xs-admin approve).
	Registration string `toml:"registration"`
	// Admission bounds measured admission (proto.AdmissionConfig): how
	// many laptops back up at once is measured, not configured.
	Admission struct {
		// MaxSessions is the most sessions ever allowed at once.
		MaxSessions int `toml:"max_sessions"`
		// SmallBytes: backups expected to send less are small and have
		// places that big first backups never take.
		SmallBytes Size `toml:"small_bytes"`
		// Hold is how long a laptop's request stays open waiting for a
		// place that is about to free.
		Hold Duration `toml:"hold"`
	} `toml:"admission"`
	// Traffic shares the school's network politely (proto.PacingConfig).
	Traffic Traffic `toml:"traffic"`
	// SessionDeadline ends sessions that run longer.
	SessionDeadline Duration `toml:"session_deadline"`
	// MinRate (bytes/s) drops laptops that trickle.
	MinRate Size `toml:"min_rate"`
	// MaxConnections caps open backup connections (registrations have
	// their own small pool; see proto.Limits).
	MaxConnections int `toml:"max_connections"`
	// MaxPending caps the registrations waiting for staff (new laptops and
	// key changes of reflashed laptops); past it registrations are refused
	// as busy until staff look at xs-admin pending.
	MaxPending int `toml:"max_pending"`
	// OpenApprovalsPerHour is how many new laptops open registration
	// approves an hour (all at once if they come together); beyond it they
	// wait for staff, so a flood of made-up serials cannot make accounts.
	OpenApprovalsPerHour int `toml:"open_approvals_per_hour"`
	// Reserve is the free space kept on the data disk (DefaultConfig: 256
	// MiB; 0 keeps none, unlike store.Options.Reserve, where 0 is the
	// default and -1 keeps none).
	Reserve Size `toml:"reserve"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// Quota is the default per-laptop quota (0 = none).
	Quota struct {
		Soft Size `toml:"soft"`
		Hard Size `toml:"hard"`
	} `toml:"quota"`
	// Retention is the default retention policy (xs-admin can override it
	// per laptop). Settings left out keep their defaults: every snapshot
	// of the last 30 days, then the newest of each calendar month.
	Retention store.Policy `toml:"retention"`
	// Lifecycle schedules the nightly retention, expiry, quota and garbage
	// collection run.
	Lifecycle struct {
		// At is the local time of day it runs ("02:30"); "" disables it
		// (xs-admin lifecycle still runs it by hand).
		At string `toml:"at"`
		// PendingExpiry is how long an unfinished backup's uploads are
		// kept for it to resume.
		PendingExpiry Duration `toml:"pending_expiry"`
		// CompactBelow: pack files with less live data than this fraction
		// are rewritten to give the space back.
		CompactBelow float64 `toml:"compact_below"`
		// ScrubDays: every night a share of the pack files is read back
		// and verified, so that each is read every ScrubDays nights; a
		// damaged chunk found is re-sent by the next backup of a laptop
		// that has it. Negative disables the scrub.
		ScrubDays int `toml:"scrub_days"`
	} `toml:"lifecycle"`
	// RestorePage is the students' restore page on the school LAN.
	RestorePage struct {
		// Listen is its HTTP address ("" disables the page).
		Listen string `toml:"listen"`
		// URL is the address laptops put in their links, when the
		// server is reached under another name or through a proxy
		// (default: http://<the host laptops back up to>:<port of listen>).
		URL string `toml:"url"`
		// StaffLink is how long a link made by xs-admin restore-link
		// works (at most 24h; laptops' own links work for an hour).
		StaffLink Duration `toml:"staff_link"`
		// CacheBytes bounds the memory of the Journal listings kept for
		// backups recently viewed; Concurrent bounds the pages and
		// downloads worked on at once, at most half of them (at least
		// one) for one laptop: more get 503 with Retry-After.
		CacheBytes Size `toml:"cache_bytes"`
		Concurrent int  `toml:"concurrent"`
	} `toml:"restore_page"`
	// Hook is passed to the store (store.Options.Hook): crash and fault
	// tests kill the daemon at named points. Not a configuration setting.
	Hook func(point string) `toml:"-"`
	// Now is the server's clock (snapshot times, upload ages, the time a
	// hello tells laptops, admission), default time.Now; the soak test runs
	// weeks on an accelerated clock. Not a configuration setting.
	Now func() time.Time `toml:"-"`
	// FixedWindow replaces measured admission with the old fixed windows
	// (proto.ServerConfig.FixedWindow), for the benchmark's comparison of
	// old against new. Not a configuration setting.
	FixedWindow *proto.FixedWindow `toml:"-"`
	// Limits are each device's fair share of the server (proto.Limits;
	// zero values take its defaults). Not a configuration setting.
	Limits proto.Limits `toml:"-"`
	// Storage says where the pack files live: the data directory (the
	// default) or an S3-compatible object store.
	Storage Storage `toml:"storage"`
	// Role is "school" (laptops back up here: the default) or
	// "mothership" (school servers replicate here; each school is an
	// account registered and approved like a laptop, by its server key).
	Role string `toml:"role"`
	// Mothership, on a school server, replicates every snapshot off-site.
	Mothership MothershipConfig `toml:"mothership"`
	// Chunker sets the chunking parameters of a NEW store only; a store
	// keeps those it was created with. Leave it out to use the defaults
	// shared by every school (which lets a regional server dedup across schools).
	Chunker *chunk.Params `toml:"chunker"`
}

// DefaultConfig returns the embedded defaults.
func DefaultConfig() Config {
	c := Config{
		Listen:               ":7457",
		Data:                 "/var/lib/xs-backup",
		Metrics:              "127.0.0.1:7458",
		Registration:         "open",
		SessionDeadline:      Duration(time.Hour),
		MinRate:              4096,
		MaxConnections:       512,
		MaxPending:           200,
		OpenApprovalsPerHour: 100,
		Reserve:              256 << 20,
		LogLevel:             "info",
		Retention:            store.DefaultPolicy(),
	}
	c.Admission.MaxSessions = 64
	c.Admission.SmallBytes = 4 << 20
	c.Admission.Hold = Duration(30 * time.Second)
	c.Traffic.TargetDelay = Duration(25 * time.Millisecond)
	c.Lifecycle.At = "02:30"
	c.Lifecycle.PendingExpiry = Duration(72 * time.Hour)
	c.Lifecycle.CompactBelow = 0.5
	c.Lifecycle.ScrubDays = 30
	c.RestorePage.Listen = ":7459"
	c.RestorePage.StaffLink = Duration(time.Hour)
	c.RestorePage.CacheBytes = 64 << 20
	c.RestorePage.Concurrent = 4
	c.Storage.Backend = "local"
	return c
}

// lifecycleAt parses Lifecycle.At ("HH:MM"); ok is false if it is empty.
func (c *Config) lifecycleAt() (hour, minute int, ok bool, err error) {
	if c.Lifecycle.At == "" {
		return 0, 0, false, nil
	}
	t, err := time.Parse("15:04", c.Lifecycle.At)
	if err != nil {
		return 0, 0, false, fmt.Errorf("lifecycle.at must be a time of day like \"02:30\", not %q", c.Lifecycle.At)
	}
	return t.Hour(), t.Minute(), true, nil
}

// LoadConfig reads a TOML file over the defaults. A missing file at the
// default path is not an error (the defaults apply); any other path must exist.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	if path == "" {
		return c, nil
	}
	b, err := atomicfile.ReadCapped(path, maxConfigBytes)
	if errors.Is(err, os.ErrNotExist) && path == DefaultConfigPath {
		return c, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return c, fmt.Errorf("%w: read configuration: %w", errkind.ErrPermission, err)
	}
	if err != nil {
		return c, fmt.Errorf("read configuration: %w", err)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, fmt.Errorf("configuration %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		if why, ok := replacedKeys[und[0].String()]; ok {
			return c, fmt.Errorf("configuration %s: %q is no longer a setting: %s", path, und[0].String(), why)
		}
		return c, fmt.Errorf("configuration %s: unknown setting %q (the package's /etc/xs-backup/xs-backup.toml lists every setting with its default)", path, und[0].String())
	}
	if c.Role == "mothership" && !md.IsDefined("registration") {
		// A school is approved by the mothership's staff unless they chose
		// otherwise: open registration would take any server that asks.
		c.Registration = "approve"
	}
	if c.Role == "mothership" && !md.IsDefined("session_deadline") {
		// A school's first sync over a slow uplink takes hours (it resumes
		// after a cut, but each cut costs a reconnection).
		c.SessionDeadline = Duration(12 * time.Hour)
	}
	return c, c.Validate()
}

// Validate checks the values.
func (c *Config) Validate() error {
	switch {
	case c.Registration != "open" && c.Registration != "approve":
		return fmt.Errorf("registration must be \"open\" or \"approve\", not %q", c.Registration)
	case c.Admission.MaxSessions < 2:
		return fmt.Errorf("admission.max_sessions must be at least 2 (one place for big backups, one kept for small ones)")
	case c.MaxPending < 0 || c.OpenApprovalsPerHour < 0:
		return fmt.Errorf("max_pending and open_approvals_per_hour cannot be negative (0 takes the default)")
	case c.Data == "":
		return fmt.Errorf("data must name the store directory")
	case c.RestorePage.StaffLink < Duration(time.Minute) || c.RestorePage.StaffLink > Duration(proto.MaxLinkLifetime):
		return fmt.Errorf("restore_page.staff_link must be between 1m and %v, not %v", proto.MaxLinkLifetime, time.Duration(c.RestorePage.StaffLink))
	case c.RestorePage.CacheBytes < 1<<20:
		return fmt.Errorf("restore_page.cache_bytes must be at least 1MiB")
	case c.RestorePage.Concurrent < 1:
		return fmt.Errorf("restore_page.concurrent must be at least 1")
	}
	// A negative value was silently replaced by the default (or, for
	// target_delay, turned pacing off).
	for key, d := range map[string]Duration{"session_deadline": c.SessionDeadline, "admission.hold": c.Admission.Hold,
		"lifecycle.pending_expiry": c.Lifecycle.PendingExpiry, "traffic.target_delay": c.Traffic.TargetDelay} {
		if d < 0 {
			return fmt.Errorf("%s cannot be negative (%v); 0 takes the default", key, time.Duration(d))
		}
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("max_connections cannot be negative (%d); 0 takes the default", c.MaxConnections)
	}
	for key, addr := range map[string]string{"listen": c.Listen, "metrics": c.Metrics, "restore_page.listen": c.RestorePage.Listen} {
		if key != "listen" && addr == "" {
			continue // off
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s = %q is not an address with a port (like \":7457\" or \"10.0.0.1:7457\"): %v", key, addr, err)
		}
	}
	if err := c.Retention.Validate(); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if _, _, _, err := c.lifecycleAt(); err != nil {
		return err
	}
	if q := c.Quota; q.Soft > 0 && q.Hard > 0 && q.Soft > q.Hard {
		return fmt.Errorf("quota: soft (%d bytes) above hard (%d): backups would be refused at the hard quota before the nightly run deletes anything at the soft one", q.Soft, q.Hard)
	}
	if math.IsNaN(c.Lifecycle.CompactBelow) || c.Lifecycle.CompactBelow > 1 {
		return fmt.Errorf("lifecycle.compact_below is a fraction: at most 1 (rewrite any pack with garbage), negative to never rewrite")
	}
	if _, err := c.Traffic.pacing(); err != nil {
		return fmt.Errorf("traffic: %w", err)
	}
	if c.Role != "" && c.Role != "school" && c.Role != "mothership" {
		return fmt.Errorf("role must be \"school\" or \"mothership\", not %q", c.Role)
	}
	if err := c.Mothership.validate(c.Role); err != nil {
		return fmt.Errorf("mothership: %w", err)
	}
	if c.Chunker != nil {
		if err := c.Chunker.Validate(); err != nil {
			return fmt.Errorf("chunker: %w", err)
		}
	}
	return c.Storage.Validate()
}
