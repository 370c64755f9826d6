package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Each constructor declares one command: its arguments, its own flags, its
// help, and the typed call it makes.

func usersCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "users",
		Short: "List every laptop, revoked ones too",
		Long: `List every laptop, revoked ones too: serial, name, when it registered, its
last backup, how many backups it has, the space they use, and its state
(waiting for approval, a new key waiting, revoked, a claim code out).`,
		Example: `  xs-admin users
  xs-admin users --json`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			return call(a, cmd, readOnly, func(ctx context.Context, c *admin.Client) ([]admin.UserRow, error) {
				return c.Users(ctx, admin.UsersRequest{})
			}, printUsers)
		}),
	}
}

func pendingCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "pending",
		Short: "List the registrations waiting for staff, oldest first",
		Long: `List the registrations waiting for staff, oldest first: new laptops and key
changes (a reflashed laptop asking again with a new key), with both key
fingerprints and the old key's last backup. Compare the key with the one the
laptop shows, then approve it.`,
		Example: `  xs-admin pending
  xs-admin approve SHC1234567 --key SHA256:Xy12ab34CD56`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			return call(a, cmd, readOnly, func(ctx context.Context, c *admin.Client) ([]admin.PendingRow, error) {
				return c.Pending(ctx, admin.PendingRequest{})
			}, printPending)
		}),
	}
}

func snapshotsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshots SERIAL",
		Short: "List a laptop's backups",
		Long:  `List a laptop's backups (snapshots), oldest first: ID, time, files, size, space stored, and the reason of a pin.`,
		Example: `  xs-admin snapshots SHC1234567
  xs-admin snapshots SHC1234567 --json`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return call(a, cmd, readOnly, func(ctx context.Context, c *admin.Client) ([]*store.Snapshot, error) {
				return c.Snapshots(ctx, admin.SnapshotsRequest{Serial: args[0]})
			}, printSnapshots)
		}),
	}
}

func approveCmd(a *app) *cobra.Command {
	var r admin.ApproveRequest
	cmd := &cobra.Command{
		Use:   "approve SERIAL",
		Short: "Let a laptop back up",
		Long: `Let a laptop back up. If a key change waits (xs-admin pending), the new key
continues the serial's backups (the laptop then runs: xo-backup restore --all)
and the old key is refused from now on; --key makes sure it is the key the
laptop showed; --new-history starts an empty history instead and keeps the old
one as SERIAL.old. Approving a revoked laptop undoes the revoke.`,
		Example: `  xs-admin approve SHC1234567
  xs-admin approve SHC1234567 --key SHA256:Xy12ab34CD56
  xs-admin approve SHC1234567 --new-history`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial = args[0]
			if cmd.Flags().Changed("key") && r.Key == "" {
				// A script's empty variable: without the check, any key
				// waiting would be approved.
				return usagef("--key is empty: give the fingerprint the laptop showed, or leave --key out")
			}
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.User, error) {
				return c.Approve(ctx, r)
			}, printUser("approve"))
		}),
	}
	cmd.Flags().StringVar(&r.Key, "key", "", "the key `FINGERPRINT` the laptop showed (all of it, or at least its first 12 characters)")
	cmd.Flags().BoolVar(&r.NewHistory, "new-history", false, "start an empty history; keep the old one as SERIAL.old")
	return cmd
}

func claimCodeCmd(a *app) *cobra.Command {
	var r admin.ClaimCodeRequest
	cmd := &cobra.Command{
		Use:   "claim-code SERIAL",
		Short: "Give a one-time code to a laptop about to be reflashed or replaced",
		Long: `Make a one-time code for a laptop about to be reflashed or replaced: it
registers with xo-backup register --claim CODE and continues the serial's
backups at once, no approval needed. Only a hash of the code is kept; a new
code replaces the old. For a laptop the server has never seen, first:
xs-admin register SERIAL.`,
		Example: `  xs-admin claim-code SHC1234567
  xs-admin claim-code SHC1234567 --expires 12h`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial = args[0]
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (admin.ClaimResult, error) {
				return c.ClaimCode(ctx, r)
			}, printClaim)
		}),
	}
	r.Expires = admin.DefaultClaimLifetime
	cmd.Flags().Var(durationValue{&r.Expires}, "expires", "how long the code works (e.g. 7d, 12h)")
	return cmd
}

func revokeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Stop a laptop from backing up or restoring",
		Long:  `Stop a laptop from backing up or restoring. Its backups stay; xs-admin unrevoke undoes it.`,
		Example: `  xs-admin revoke SHC1234567
  xs-admin unrevoke SHC1234567`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.User, error) {
				return c.Revoke(ctx, admin.RevokeRequest{Serial: args[0]})
			}, printUser("revoke"))
		}),
	}
}

func unrevokeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "unrevoke SERIAL",
		Short:   "Undo a revoke",
		Long:    `Undo a revoke: the laptop may back up and restore again.`,
		Example: `  xs-admin unrevoke SHC1234567`,
		Args:    args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.User, error) {
				return c.Unrevoke(ctx, admin.UnrevokeRequest{Serial: args[0]})
			}, printUser("unrevoke"))
		}),
	}
}

func registerCmd(a *app) *cobra.Command {
	var r admin.RegisterRequest
	cmd := &cobra.Command{
		Use:   "register SERIAL",
		Short: "Prepare a laptop by hand",
		Long: `Prepare a laptop by hand. The first laptop to register this serial waits for
approve (or give it a claim code now: xs-admin claim-code SERIAL).`,
		Example: `  xs-admin register SHC1234567 --nickname "Ana, grade 4"
  xs-admin claim-code SHC1234567`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial = args[0]
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.User, error) {
				return c.Register(ctx, r)
			}, printUser("register"))
		}),
	}
	cmd.Flags().StringVar(&r.Nickname, "nickname", "", "the child's `NAME` or a note, shown in xs-admin users")
	cmd.Flags().StringVar(&r.Key, "key", "", "on a mothership: the school server's public `KEY` (hex, its server.pub) when the school sends bundles")
	return cmd
}

func aliasCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "alias OLD_SERIAL NEW_SERIAL",
		Short: "Move a student's backups to a replacement laptop",
		Long: `Move a student's backups to a replacement laptop. When the new laptop
registers, approve it (or give it a claim code first); then it runs:
xo-backup restore --all. A reflashed laptop keeps its serial: no alias.`,
		Example: `  xs-admin alias SHC1234567 SHC7654321
  xs-admin approve SHC7654321`,
		Args: args([]string{"OLD_SERIAL", "NEW_SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.User, error) {
				return c.Alias(ctx, admin.AliasRequest{Serial: args[0], NewSerial: args[1]})
			}, printUser("alias"))
		}),
	}
}

func statusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show admission now: sessions, the limit, laptops waiting (needs xs-backupd)",
		Long: `Show the daemon's admission now: sessions running and the limit (measured),
laptops waiting in the order they will start, and drain rates. It needs
xs-backupd running.`,
		Example: `  xs-admin status
  xs-admin status --json`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			return call(a, cmd, daemon, func(ctx context.Context, c *admin.Client) (*admin.StatusResult, error) {
				return c.Status(ctx, admin.StatusRequest{})
			}, printStatus)
		}),
	}
}

func lsCmd(a *app) *cobra.Command {
	var r admin.ListRequest
	cmd := &cobra.Command{
		Use:   "ls SERIAL [SNAPSHOT]",
		Short: "List the Journal entries of a backup",
		Long: `List the Journal entries of a backup: title, activity, date, size, uid.
SNAPSHOT is an ID, latest (the default), a date (the last backup of that day
or before) or a time. --files lists the raw file tree instead.`,
		Example: `  xs-admin ls SHC1234567
  xs-admin ls SHC1234567 2026-10-31
  xs-admin ls SHC1234567 latest --files`,
		Args: args([]string{"SERIAL"}, "SNAPSHOT"),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial = args[0]
			if len(args) > 1 {
				r.Snapshot = args[1]
			}
			return call(a, cmd, readOnly, func(ctx context.Context, c *admin.Client) (*admin.Listing, error) {
				return c.List(ctx, r)
			}, printListing)
		}),
	}
	cmd.Flags().BoolVar(&r.Files, "files", false, "list the raw file tree, not the Journal entries")
	return cmd
}

func restoreLinkCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "restore-link SERIAL",
		Short: "A short-lived link to the restore page for one laptop (needs xs-backupd)",
		Long: `Make a short-lived link to the students' restore page showing only this
laptop's backups (restore_page.staff_link in the config says how long it
works). It needs xs-backupd running.`,
		Example: `  xs-admin restore-link SHC1234567`,
		Args:    args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return call(a, cmd, daemon, func(ctx context.Context, c *admin.Client) (admin.LinkResult, error) {
				return c.RestoreLink(ctx, admin.RestoreLinkRequest{Serial: args[0]})
			}, printLink)
		}),
	}
}

func retentionCmd(a *app) *cobra.Command {
	var r admin.RetentionRequest
	cmd := &cobra.Command{
		Use:   "retention [SERIAL]",
		Short: "Apply the retention policy and delete what it does not keep",
		Long: `Apply the retention policy (every laptop's, or one's) and delete the backups
it does not keep. --at evaluates it as if now were another time (2026-12-31,
2026-12-31T08:00:00Z or +45d); --dry-run only shows what it would do.`,
		Example: `  xs-admin retention --dry-run
  xs-admin retention SHC1234567 --at +45d --dry-run
  xs-admin retention`,
		Args: args(nil, "SERIAL"),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				r.Serial = args[0]
			}
			how := readWrite
			if r.DryRun {
				how = readOnly
			}
			return call(a, cmd, how, func(ctx context.Context, c *admin.Client) (*store.RetentionReport, error) {
				return c.Retention(ctx, r)
			}, printRetention)
		}),
	}
	cmd.Flags().Var(&timeValue{v: &r.At}, "at", "evaluate as of this time (2026-12-31, 2026-12-31T08:00:00Z, +45d)")
	cmd.Flags().BoolVar(&r.DryRun, "dry-run", false, "only show what would be deleted")
	return cmd
}

// keepFlags are the settings of a retention policy, as flags.
var keepFlags = []struct {
	name, usage string
	all         bool // -1 means every one
	field       func(*admin.PolicyChange) **int
}{
	{"keep-last", "keep the last N backups", false, func(c *admin.PolicyChange) **int { return &c.KeepLast }},
	{"keep-within-days", "keep every backup of the last N days", false, func(c *admin.PolicyChange) **int { return &c.KeepWithinDays }},
	{"keep-daily", "keep the newest backup of each of the last N days", true, func(c *admin.PolicyChange) **int { return &c.KeepDaily }},
	{"keep-weekly", "keep the newest backup of each of the last N weeks", true, func(c *admin.PolicyChange) **int { return &c.KeepWeekly }},
	{"keep-monthly", "keep the newest backup of each of the last N months", true, func(c *admin.PolicyChange) **int { return &c.KeepMonthly }},
	{"keep-yearly", "keep the newest backup of each of the last N years", true, func(c *admin.PolicyChange) **int { return &c.KeepYearly }},
}

func policyCmd(a *app) *cobra.Command {
	var r admin.PolicyRequest
	counts := make([]int, len(keepFlags))
	cmd := &cobra.Command{
		Use:   "policy SERIAL",
		Short: "Show or set a laptop's own retention policy",
		Long: `Show or set a laptop's own retention policy. Given --keep-* settings, the
laptop gets its own policy: the one it has now (its own, or the server's) with
those rules changed, the others as they were. 0 turns a rule off; -1 keeps
every one (daily, weekly, monthly, yearly). --reset returns the laptop to the
server's policy (the [retention] section of the config). The latest and the
pinned backups are always kept.`,
		Example: `  xs-admin policy SHC1234567
  xs-admin policy SHC1234567 --keep-monthly 24       # 24 months instead of every month
  xs-admin policy SHC1234567 --keep-within-days 0 --keep-last 10
  xs-admin policy SHC1234567 --reset`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial = args[0]
			for i, k := range keepFlags {
				if cmd.Flags().Changed(k.name) {
					if r.Change == nil {
						r.Change = &admin.PolicyChange{}
					}
					*k.field(r.Change) = &counts[i]
				}
			}
			if r.Change != nil && r.Reset {
				return usagef("--reset and --keep-* exclude each other")
			}
			how := readOnly
			if r.Change != nil || r.Reset {
				how = readWrite
			}
			return call(a, cmd, how, func(ctx context.Context, c *admin.Client) (admin.PolicyRow, error) {
				return c.Policy(ctx, r)
			}, printPolicy)
		}),
	}
	for i, k := range keepFlags {
		usage := k.usage + " (0: none)"
		if k.all {
			usage = k.usage + " (-1: every one, 0: none)"
		}
		cmd.Flags().Var(keepValue{&counts[i], k.all}, k.name, usage)
	}
	cmd.Flags().BoolVar(&r.Reset, "reset", false, "use the server's policy again")
	return cmd
}

func quotaCmd(a *app) *cobra.Command {
	var r admin.QuotaRequest
	cmd := &cobra.Command{
		Use:   "quota [SERIAL]",
		Short: "Show usage, quotas and fair share, or set a laptop's quota",
		Long: `Show usage, quotas and fair share (each shared chunk divided among the laptops
that hold it) of every laptop or one, or set one laptop's quota. SIZE is like
500M, 2GiB or 1073741824; 0 means no limit. Over the soft quota the nightly
run deletes old backups; at the hard quota backups stop. --reset returns the
laptop to the server's default quota ([quota] in the config).`,
		Example: `  xs-admin quota
  xs-admin quota SHC1234567 --soft 1GiB --hard 2GiB
  xs-admin quota SHC1234567 --reset`,
		Args: args(nil, "SERIAL"),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				r.Serial = args[0]
			}
			set := r.Soft != nil || r.Hard != nil || r.Reset
			if set && r.Serial == "" {
				return usagef("give the laptop's SERIAL to set its quota; the default quota is set in the config ([quota])")
			}
			if r.Reset && (r.Soft != nil || r.Hard != nil) {
				return usagef("--reset and --soft/--hard exclude each other")
			}
			how := readOnly
			if set {
				how = readWrite
			}
			return call(a, cmd, how, func(ctx context.Context, c *admin.Client) ([]admin.QuotaRow, error) {
				return c.Quota(ctx, r)
			}, printQuota)
		}),
	}
	cmd.Flags().Var(sizeValue{&r.Soft}, "soft", "soft quota (e.g. 1GiB; 0: none)")
	cmd.Flags().Var(sizeValue{&r.Hard}, "hard", "hard quota (e.g. 2GiB; 0: none)")
	cmd.Flags().BoolVar(&r.Reset, "reset", false, "use the server's default quota again")
	return cmd
}

func pinCmd(a *app) *cobra.Command {
	var r admin.PinRequest
	cmd := &cobra.Command{
		Use:   "pin SERIAL SNAPSHOT",
		Short: "Never delete this backup",
		Long: `Keep a backup from retention and quota, with a reason shown in every listing.
SNAPSHOT is an ID (xs-admin snapshots SERIAL) or latest.`,
		Example: `  xs-admin pin SHC1234567 latest --reason "science fair project"
  xs-admin unpin SHC1234567 latest`,
		Args: args([]string{"SERIAL", "SNAPSHOT"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial, r.Snapshot = args[0], args[1]
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.Snapshot, error) {
				return c.Pin(ctx, r)
			}, printPin)
		}),
	}
	cmd.Flags().StringVar(&r.Reason, "reason", "", "why it is kept, shown in every listing (`TEXT`, required)")
	cmd.MarkFlagRequired("reason")
	return cmd
}

func unpinCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "unpin SERIAL SNAPSHOT",
		Short:   "Let retention and quota treat a pinned backup normally again",
		Long:    `Let retention and quota treat a pinned backup normally again.`,
		Example: `  xs-admin unpin SHC1234567 latest`,
		Args:    args([]string{"SERIAL", "SNAPSHOT"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.Snapshot, error) {
				return c.Unpin(ctx, admin.UnpinRequest{Serial: args[0], Snapshot: args[1]})
			}, printPin)
		}),
	}
}

func gcCmd(a *app) *cobra.Command {
	var r admin.GCRequest
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete chunks nothing uses and rewrite pack files with little live data",
		Long: `Delete the chunks no backup uses and rewrite the pack files with little live
data, giving the disk space back. --compact-below rewrites the packs with less
live data than this fraction (default: lifecycle.compact_below in the config).
--expire-pending first releases the uploads of unfinished backups, whatever
their age (otherwise kept for the laptop to resume: 3 days by default,
lifecycle.pending_expiry in the config): for a full disk. --dry-run only
counts.`,
		Example: `  xs-admin gc --dry-run
  xs-admin gc --compact-below 0.8
  xs-admin gc --expire-pending`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*admin.GCResult, error) {
				return c.GC(ctx, r)
			}, printGCResult)
		}),
	}
	cmd.Flags().BoolVar(&r.DryRun, "dry-run", false, "only count what would be removed and rewritten")
	cmd.Flags().Var(fractionValue{&r.CompactBelow}, "compact-below", "rewrite packs with less live data than this fraction (above 0, at most 1)")
	cmd.Flags().BoolVar(&r.ExpirePending, "expire-pending", false, "first release the uploads of unfinished backups")
	return cmd
}

func lifecycleCmd(a *app) *cobra.Command {
	var r admin.LifecycleRequest
	cmd := &cobra.Command{
		Use:   "lifecycle",
		Short: "Run the nightly run now: retention, expiry of abandoned uploads, quota, scrub, gc",
		Long: `Run the nightly run now: retention, expiry of abandoned uploads, quota, the
scrub of 1/scrub_days of the packs (not with --dry-run), then garbage
collection. --at runs it as if now were another time; --dry-run only shows
what it would do.`,
		Example: `  xs-admin lifecycle --dry-run
  xs-admin lifecycle`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			how := readWrite
			if r.DryRun {
				how = readOnly
			}
			return call(a, cmd, how, func(ctx context.Context, c *admin.Client) (*store.LifecycleReport, error) {
				return c.RunLifecycle(ctx, r)
			}, printLifecycle)
		}),
	}
	cmd.Flags().Var(&timeValue{v: &r.At}, "at", "run as of this time (2026-12-31, 2026-12-31T08:00:00Z, +45d)")
	cmd.Flags().BoolVar(&r.DryRun, "dry-run", false, "only show what would be done")
	return cmd
}

func checkCmd(a *app) *cobra.Command {
	var readData, doRepair bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the store",
		Long: `Verify the store. --read-data also re-hashes every chunk and records what is
damaged, so that laptops send it again. Records of a pack file that is gone
or cut short are recorded as damaged too, and a damaged directory listing
(tree) is written back from its copy in the index. --repair rebuilds the
index from the pack files, moving a damaged index aside first; it needs
xs-backupd stopped. Bit rot is not repaired by --repair: it heals when a
laptop that has the file backs up. Exit code 1 when problems are found.`,
		Example: `  xs-admin check
  xs-admin check --read-data
  systemctl stop xs-backupd; xs-admin check --repair; systemctl start xs-backupd`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			if doRepair {
				if readData {
					return usagef("--repair and --read-data exclude each other: repair first, then check --read-data")
				}
				return call(a, cmd, repair, func(ctx context.Context, c *admin.Client) (*store.RepairReport, error) {
					return c.Repair(ctx, admin.RepairRequest{})
				}, printRepair)
			}
			// check opens the store for writing: it finishes what an
			// unclean stop left (as the daemon's start would) and records
			// the damage it finds, so that laptops send those chunks again.
			var ok bool
			err := call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.CheckReport, error) {
				rep, err := c.Check(ctx, admin.CheckRequest{ReadData: readData})
				ok = err == nil && rep.OK()
				return rep, err
			}, printCheck)
			if err == nil && !ok {
				return exitError(cli.ExitFailed)
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "re-hash every chunk and record what is damaged")
	cmd.Flags().BoolVar(&doRepair, "repair", false, "rebuild the index from the pack files (xs-backupd stopped)")
	return cmd
}

func damagedCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "damaged",
		Short: "List blobs with no intact copy, and the laptops whose next backup heals them",
		Long: `List the blobs with no intact copy on disk (found by the nightly scrub or
check --read-data), and the laptops whose next backup heals each.`,
		Example: `  xs-admin damaged
  xs-admin damaged --json`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			return call(a, cmd, readOnly, func(ctx context.Context, c *admin.Client) ([]admin.DamagedRow, error) {
				return c.Damaged(ctx, admin.DamagedRequest{})
			}, printDamagedRows)
		}),
	}
}

func scrubCmd(a *app) *cobra.Command {
	var r admin.ScrubRequest
	cmd := &cobra.Command{
		Use:   "scrub",
		Short: "Read back and verify the next share of the pack files now",
		Long: `Read back and verify the next share of the pack files now, the share the
nightly run reads: 1/scrub_days of them (1/30 by default, lifecycle.scrub_days
in the config); --all reads every pack. Damage found is recorded, and heals
at the next backup of a laptop that has the data.`,
		Example: `  xs-admin scrub
  xs-admin scrub --all`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*store.ScrubReport, error) {
				return c.Scrub(ctx, r)
			}, printScrub)
		}),
	}
	cmd.Flags().BoolVar(&r.All, "all", false, "read every pack file")
	return cmd
}

func versionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Long:    `Print xs-admin's version, the Go release it was built with and its platform.`,
		Example: `  xs-admin version`,
		Args:    args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			a.print(versionInfo(), func(w io.Writer) { w.Write([]byte(versionLong() + "\n")) })
			return nil
		}),
	}
}
