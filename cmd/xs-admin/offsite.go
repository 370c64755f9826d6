package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
)

func syncCmd(a *app) *cobra.Command {
	var r admin.SyncRequest
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Replicate every backup to the mothership now, or show what is not off-site yet",
		Long: `Replicate every backup, and the school's registry, to the mothership named in
[mothership] of the configuration, now: only the chunks the mothership lacks
for this school cross the link, at most [mothership] rate. xs-backupd also
does this by itself every [mothership] every, inside [mothership] windows.
--status only shows what is not off-site yet (also with xs-backupd stopped).
The first sync registers the school; the mothership's staff approve it
(xs-admin approve SCHOOL there) before anything is sent.`,
		Example: `  xs-admin sync --status
  xs-admin sync`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			how := daemon
			if r.Status {
				how = readOnly
			}
			return call(a, cmd, how, func(ctx context.Context, c *admin.Client) (*admin.SyncResult, error) {
				return c.SyncNow(ctx, r)
			}, printSync)
		}),
	}
	cmd.Flags().BoolVar(&r.Status, "status", false, "only show what is not off-site yet")
	return cmd
}

func printSync(w io.Writer, v *admin.SyncResult) {
	if rep := v.Report; rep != nil {
		fmt.Fprintf(w, "Sent %d backup(s) to the mothership: %d chunks, %s, in %v.\n", rep.Snapshots, rep.Blobs, cli.Bytes(rep.Bytes), rep.Took.Round(time.Millisecond))
		if rep.Registry {
			fmt.Fprintln(w, "The registry (laptops, keys, settings) changed and was sent too.")
		}
		for _, f := range rep.Failed {
			fmt.Fprintf(w, "Not sent (damaged here; xs-admin damaged lists what heals it): %s\n", f)
		}
	}
	l := v.Lag
	switch {
	case l.Snapshots == 0:
		fmt.Fprintf(w, "Everything is off-site (%d backups confirmed by the mothership).\n", l.Confirmed)
	default:
		fmt.Fprintf(w, "Not off-site yet: %d backup(s), at most %s, the oldest from %s.\n", l.Snapshots, cli.Bytes(l.Bytes), l.Oldest.Local().Format(time.DateTime))
	}
	if !l.LastSync.IsZero() {
		fmt.Fprintf(w, "Last successful sync: %s.\n", l.LastSync.Local().Format(time.DateTime))
	}
	if l.LastError != "" {
		fmt.Fprintf(w, "Last sync failed: %s\n", l.LastError)
	}
}

func schoolsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schools [SCHOOL]",
		Short: "On a mothership: list the schools, or one school's laptops",
		Long: `On a mothership: list the schools that replicate here (approved or waiting),
with their laptops, backups and usage; with SCHOOL, that school's laptops.
A school's backups are listed and restored like a laptop's: xs-admin
snapshots SCHOOL, xs-admin restore SCHOOL --snapshot ID.`,
		Example: `  xs-admin schools
  xs-admin schools school-a`,
		Args: args(nil, "SCHOOL"),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			var r admin.SchoolsRequest
			if len(args) > 0 {
				r.School = args[0]
			}
			return call(a, cmd, readOnly, func(ctx context.Context, c *admin.Client) ([]admin.SchoolRow, error) {
				return c.Schools(ctx, r)
			}, func(w io.Writer, rows []admin.SchoolRow) {
				tw := newTable(w)
				if r.School != "" {
					fmt.Fprintln(tw, "LAPTOP\tUSER\tBACKUPS\tLATEST")
					for _, x := range rows {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", x.Name, x.User, x.Snapshots, x.Latest.Local().Format(time.DateTime))
					}
				} else {
					fmt.Fprintln(tw, "SCHOOL\tAPPROVED\tLAPTOPS\tBACKUPS\tLATEST\tUSAGE")
					for _, x := range rows {
						latest := "-"
						if !x.Latest.IsZero() {
							latest = x.Latest.Local().Format(time.DateTime)
						}
						fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%s\t%s\n", x.Name, x.Approved, x.Laptops, x.Snapshots, latest, cli.Bytes(x.Usage))
					}
				}
				tw.Flush()
			})
		}),
	}
	return cmd
}
