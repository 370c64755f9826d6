package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/internal/units"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/offsite"
)

func syncCmd(a *app) *cobra.Command {
	var r admin.SyncRequest
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Replicate every backup to the mothership now (needs xs-backupd), or show what is not off-site yet",
		Long: `Replicate every backup, and the school's registry, to the mothership named in
[mothership] of the configuration, now; it needs xs-backupd running. Only
the chunks the mothership lacks for this school cross the link, at most
[mothership] rate. xs-backupd also does this by itself every [mothership]
every, inside [mothership] windows.
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
snapshots SCHOOL, xs-admin restore SCHOOL --snapshot ID --to DIR.`,
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

func exportCmd(a *app) *cobra.Command {
	var r admin.BundleExportRequest
	var piece string
	cmd := &cobra.Command{
		Use:   "export --to DIR",
		Short: "Write what the mothership lacks to a USB stick (or, on a mothership, a school's recovery bundle)",
		Long: `On a school server: write a signed bundle of every backup the mothership does
not have, according to the receipts seen so far, into DIR. Receipts the
mothership wrote on the stick (receipt-*.json in DIR) are read first, so a
stick that goes back and forth carries only what is new each time.
--piece-size splits the bundle for several sticks; the mothership needs all
the pieces, in any order and directories.

On a mothership: --recovery --school NAME writes the bundle that rebuilds
that school's server (xs-admin recover on the new machine).`,
		Example: `  xs-admin export --to /media/usb
  xs-admin export --to /media/usb --piece-size 4GB
  xs-admin export --recovery --school school-a --to /media/usb   # on the mothership`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			if piece != "" {
				n, err := units.ParseSize(piece)
				if err != nil {
					return usageError{fmt.Errorf("--piece-size: %w", err)}
				}
				r.PieceSize = n
			}
			if err := a.locate(cmd); err != nil {
				return err
			}
			if r.School == "" {
				r.School = a.school
			}
			r.Mothership = a.mothershipKey
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*offsite.ExportResult, error) {
				return c.BundleExport(ctx, r)
			}, func(w io.Writer, v *offsite.ExportResult) {
				for _, p := range v.Receipts {
					fmt.Fprintf(w, "Read receipt %s.\n", p)
				}
				fmt.Fprintf(w, "Wrote bundle %s: %d backup(s), %d chunks, %s in %d file(s):\n", v.Bundle, v.Snapshots, v.Blobs, cli.Bytes(v.Bytes), len(v.Files))
				for _, f := range v.Files {
					fmt.Fprintf(w, "  %s\n", f)
				}
			})
		}),
	}
	cmd.Flags().StringVar(&r.To, "to", "", "the `DIR` the bundle's pieces go to")
	cmd.Flags().StringVar(&piece, "piece-size", "", "split into pieces of at most `SIZE` (e.g. 4GB)")
	cmd.Flags().StringSliceVar(&r.Receipts, "receipt", nil, "read this receipt `FILE` too")
	cmd.Flags().StringVar(&r.School, "school", "", "the school (default: [mothership] school of the config)")
	cmd.Flags().BoolVar(&r.Recovery, "recovery", false, "on a mothership: the recovery bundle of --school")
	cmd.MarkFlagRequired("to")
	return cmd
}

func importCmd(a *app) *cobra.Command {
	var r admin.BundleImportRequest
	cmd := &cobra.Command{
		Use:   "import DIR|PIECE...",
		Short: "On a mothership: verify and import schools' bundles, and write their receipts",
		Long: `On a mothership: verify a school's bundle (every piece, the school's
signature, every chunk's hash) and import it; every bundle found in the
paths is imported on its own (a stick that went round several schools).
Nothing of a damaged, truncated, replayed or foreign bundle becomes visible;
the others are still imported, and the exit code is 0 if any was. The receipt is
written beside the bundle (--receipt-to elsewhere): take it back to the
school, whose next export then carries only what is still missing.`,
		Example: `  xs-admin import /media/usb`,
		Args:    cobra.MinimumNArgs(1),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.From = args
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*admin.BundleImportResult, error) {
				return c.BundleImport(ctx, r)
			}, func(w io.Writer, res *admin.BundleImportResult) {
				for _, v := range res.Imported {
					fmt.Fprintf(w, "Imported bundle %s of %s: %d new backup(s), %d chunks, %s.\nReceipt (take it back to the school): %s\n",
						v.Bundle, v.School, v.Snapshots, v.Blobs, cli.Bytes(v.Bytes), v.Receipt)
				}
				for _, why := range res.Refused {
					fmt.Fprintf(w, "Not imported: %s\n", why)
				}
			})
		}),
	}
	cmd.Flags().StringVar(&r.ReceiptTo, "receipt-to", "", "write the receipt into `DIR`")
	return cmd
}

func recoveryKitCmd(a *app) *cobra.Command {
	var r admin.RecoveryKitRequest
	cmd := &cobra.Command{
		Use:   "recovery-kit",
		Short: "Seal the server key with a new recovery passphrase, and print the kit staff keep",
		Long: `Seal the server key with a new recovery passphrase. The sealed key goes to the
mothership with the next sync or export; the passphrase is printed once and
kept nowhere on the server. Print the kit and keep it away from the server
(the school's safe, the district office): with it and the mothership, a new
machine becomes this server again (xs-admin recover) and every laptop
carries on without registering again. The mothership's operators cannot
open the sealed key without the passphrase. A new kit replaces the old one.`,
		Example: `  xs-admin recovery-kit`,
		Args:    args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			if err := a.locate(cmd); err != nil {
				return err
			}
			if r.School == "" {
				r.School = a.school
			}
			return call(a, cmd, readWrite, func(ctx context.Context, c *admin.Client) (*offsite.Kit, error) {
				return c.RecoveryKit(ctx, r)
			}, func(w io.Writer, k *offsite.Kit) {
				fmt.Fprintf(w, "RECOVERY KIT of school %s\n\n  passphrase:      %s\n  server key:      %s\n", k.School, k.Passphrase, k.ServerKey)
				if k.Mothership != "" {
					fmt.Fprintf(w, "  mothership key:  %s\n", k.Mothership)
				} else {
					fmt.Fprintln(w, "  mothership key:  (not known yet: write down the mothership's server.pub)")
				}
				fmt.Fprintln(w)
				fmt.Fprintln(w, "Keep this page, with the mothership's address and key, away from the server.")
				fmt.Fprintln(w, "To rebuild the server: xs-admin recover (see xs-admin recover --help).")
			})
		}),
	}
	cmd.Flags().StringVar(&r.School, "school", "", "the school (default: [mothership] school of the config)")
	return cmd
}

func recoverCmd(a *app) *cobra.Command {
	var from []string
	var msKey, passFile, school, addr string
	cmd := &cobra.Command{
		Use:   "recover (--mothership HOST:PORT | --from DIR) --mothership-key KEY",
		Short: "Rebuild this school's server from the mothership",
		Long: `Rebuild the school's server on a new machine, into the empty data directory of
the configuration, from the mothership: over the network (--mothership: the
passphrase proves to the mothership that this machine speaks for the school)
or from the recovery bundle its staff wrote on a stick (--from; xs-admin
export --recovery there). The recovery passphrase of the school's kit opens
the sealed server key; it is read from --passphrase-file or the first line
of standard input. --mothership-key is the mothership's public key in hex:
the kit's "mothership key" line, or the server.pub in the mothership's data
directory (its staff have it). Afterwards start xs-backupd under the old
server's name and address: laptops carry on without registering again.`,
		Example: `  xs-admin recover --mothership mothership.example.org:7457 --mothership-key "$(cat mothership.pub)" --school school-a < kit-passphrase.txt
  xs-admin recover --from /media/usb --mothership-key "$(cat mothership.pub)" --passphrase-file kit-passphrase.txt`,
		Args: args(nil),
		RunE: a.command(func(cmd *cobra.Command, _ []string) error {
			if err := a.locate(cmd); err != nil {
				return err
			}
			if (len(from) == 0) == (addr == "") {
				return usageError{fmt.Errorf("give either --mothership (over the network) or --from (a recovery bundle)")}
			}
			key, err := hex.DecodeString(strings.TrimSpace(msKey))
			if err != nil || len(key) != ed25519.PublicKeySize {
				return usageError{fmt.Errorf("--mothership-key must be the mothership's public key, %d hex digits", 2*ed25519.PublicKeySize)}
			}
			in := cmd.InOrStdin()
			if passFile != "" {
				f, err := os.Open(passFile)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("no recovery passphrase given (on standard input or --passphrase-file)")
			}
			if school == "" {
				school = a.school
			}
			res, err := offsite.Recover(cmd.Context(), offsite.RecoverOptions{DataDir: a.place.Data, Paths: from, Addr: addr,
				Mothership: ed25519.PublicKey(key), School: school, Passphrase: strings.TrimSpace(line)})
			giveBack(a.place.Data) // run as root into the daemon's directory
			if err != nil {
				return err
			}
			a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "Rebuilt school %s in %s: %d laptop(s), %d backup(s), %s; server key %s.\nStart xs-backupd under the old server's name and address.\n",
					res.School, a.place.Data, res.Users, res.Snapshots, cli.Bytes(res.Bytes), res.ServerKey)
			})
			return nil
		}),
	}
	cmd.Flags().StringSliceVar(&from, "from", nil, "the recovery bundle's `DIR` or pieces")
	cmd.Flags().StringVar(&addr, "mothership", "", "fetch the recovery bundle from the mothership at `HOST:PORT`")
	cmd.Flags().StringVar(&msKey, "mothership-key", "", "the mothership's public `KEY` (hex), from the kit or its staff")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from `FILE`")
	cmd.Flags().StringVar(&school, "school", "", "the school (default: [mothership] school of the config)")
	cmd.MarkFlagRequired("mothership-key")
	return cmd
}
