package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// storageCmd groups the commands about where the pack files live.
func storageCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Where the pack files live: the data directory or an S3 bucket",
		Long: `Where the pack files live: the data directory (the default) or an
S3-compatible object store, set in the [storage] section of the configuration.`,
		Args: args(nil),
	}
	cmd.AddCommand(storageStatusCmd(a), storageMigrateCmd(a))
	return cmd
}

func storageStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the packs in the bucket and those waiting for their upload",
		Long: `Show what the store keeps in its S3 bucket (packs, bytes, metadata copies) and
how many packs wait in the data directory for their upload. It reads the
bucket directly, whether or not xs-backupd runs.`,
		Example: `  xs-admin storage status
  xs-admin storage status --json`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			if err := a.locate(cmd); err != nil {
				return err
			}
			if !a.storage.S3() {
				local := struct {
					Backend string `json:"backend"`
					Data    string `json:"data"`
				}{"local", a.place.Data}
				a.print(local, func(w io.Writer) {
					fmt.Fprintf(w, "the pack files are in the data directory %s (storage backend \"local\")\n", a.place.Data)
				})
				return nil
			}
			r, err := a.storage.Remote(cmd.Context())
			if err != nil {
				return err
			}
			st, err := store.StatusOf(cmd.Context(), a.place.Data, r)
			if err != nil {
				return err
			}
			a.print(st, func(w io.Writer) {
				fmt.Fprintf(w, "bucket    %s\npacks     %d (%d bytes)\nmetadata  %d files\nstaged    %d pack(s) waiting for their upload\n",
					st.Remote, st.Packs, st.Bytes, st.Meta, st.Staged)
			})
			return nil
		}),
	}
}

func storageMigrateCmd(a *app) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "migrate --to s3|local",
		Short: "Move the pack files into the S3 bucket, or back (xs-backupd stopped)",
		Long: `Move the store's pack files into the S3 bucket of the [storage] section
(--to s3), or from it back into the data directory (--to local). Each pack
is hashed after it is moved and only then removed from where it was; an
interrupted migration continues where it stopped when run again. It needs
xs-backupd stopped.

To move into a bucket: set backend = "s3" and the bucket in [storage], stop
xs-backupd, migrate --to s3, start xs-backupd. To move back: stop
xs-backupd, migrate --to local, set backend = "local", start xs-backupd.`,
		Example: `  systemctl stop xs-backupd; xs-admin storage migrate --to s3; systemctl start xs-backupd
  xs-admin storage migrate --to local`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			if to != "s3" && to != "local" {
				return usagef("--to must be s3 or local, not %q", to)
			}
			if err := a.locate(cmd); err != nil {
				return err
			}
			if !a.storage.S3() {
				return fmt.Errorf("the configuration's [storage] section does not name a bucket (backend = \"s3\", endpoint, bucket): set it first, for both directions")
			}
			cfg, err := a.storage.S3Config()
			if err != nil {
				return err
			}
			r, err := s3.New(cfg)
			if err != nil {
				return err
			}
			if err := r.Check(cmd.Context()); err != nil {
				return err
			}
			bar := cli.NewProgress(os.Stderr) // on a terminal only
			progress := func(done, total int, bytes int64) {
				bar.Update(int64(done), int64(total), fmt.Sprintf("%d packs, %d MiB moved", done, bytes>>20))
			}
			var rep *store.MigrateReport
			if to == "s3" {
				rep, err = store.MigrateToRemote(cmd.Context(), a.place.Data, r, progress)
			} else {
				rep, err = store.MigrateToLocal(cmd.Context(), a.place.Data, r, progress)
			}
			bar.Done()
			if err != nil {
				return err
			}
			a.print(rep, func(w io.Writer) {
				fmt.Fprintf(w, "moved %d pack(s), %d bytes; %d were already there; %d metadata file(s)\n", rep.Packs, rep.Bytes, rep.AlreadyThere, rep.Meta)
				if to == "local" {
					fmt.Fprintln(w, "now set backend = \"local\" in [storage] before starting xs-backupd")
				}
			})
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "s3 or local")
	return cmd
}
