package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/restore"
)

func restoreCmd(a *app) *cobra.Command {
	var r admin.ExportRequest
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore SERIAL",
		Short: "Get a whole backup or chosen Journal entries back",
		Long: `Get a whole backup or chosen Journal entries back, in one of four forms:
  --to DIR    the Journal's files, as they were on the laptop
  --tar FILE  one tar file
  --xoj DIR   one Journal Entry Bundle (.xoj) per entry: open it on a laptop
              to put it back in the Journal
  --raw DIR   each document as a plain file named after its title
--snapshot chooses the backup: an ID, latest (the default), a date (the last
backup of that day or before) or a time. --entry (a whole UID, as xs-admin ls
prints it) and --title (part of a title) choose entries; both may be
repeated. --overwrite replaces files that exist (without it, an existing
file is an error).

Files whose data is damaged or missing on the server are left out: everything
else is restored, then each is listed with the older backup that holds it
intact, and the exit code is 1.`,
		Example: `  xs-admin restore SHC1234567 --to /media/usb/ana
  xs-admin restore SHC1234567 --snapshot 2026-10-31 --title "science fair" --xoj /media/usb
  xs-admin restore SHC1234567 --entry 5c1e0a3e-1b0f-4a8e-9d2c-7f3b6a1e4d20 --raw /tmp/docs
  xs-admin restore SHC1234567 --tar /tmp/ana.tar --overwrite`,
		Args: args([]string{"SERIAL"}),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			r.Serial = args[0]
			return a.restore(cmd, r, o)
		}),
	}
	f := cmd.Flags()
	f.Var(snapshotValue{&r.Snapshot}, "snapshot", "the backup: an ID, latest, a date (2026-10-31) or a time")
	f.StringArrayVar(&r.Entries, "entry", nil, "a Journal entry's whole `UID`, as xs-admin ls prints it (repeatable)")
	f.StringArrayVar(&r.Titles, "title", nil, "part of a Journal entry's `TITLE` (repeatable)")
	f.StringVar(&o.to, "to", "", "write the Journal's files into `DIR`")
	f.StringVar(&o.tar, "tar", "", "write one tar `FILE`")
	f.StringVar(&o.xoj, "xoj", "", "write one Journal Entry Bundle per entry into `DIR`")
	f.StringVar(&o.raw, "raw", "", "write each document as a plain file into `DIR`")
	f.BoolVar(&o.overwrite, "overwrite", false, "replace files that exist")
	cmd.MarkFlagsOneRequired("to", "tar", "xoj", "raw")
	cmd.MarkFlagsMutuallyExclusive("to", "tar", "xoj", "raw")
	return cmd
}

// restoreOptions say where a restore writes.
type restoreOptions struct {
	to, tar, xoj, raw string
	overwrite         bool
}

// restore exports from the daemon (or the stopped store) and writes the
// result where staff asked.
func (a *app) restore(cmd *cobra.Command, r admin.ExportRequest, o restoreOptions) error {
	var dest string
	for _, v := range []struct{ flag, dir, format string }{{"to", o.to, admin.FormatTar}, {"tar", o.tar, admin.FormatTar}, {"xoj", o.xoj, admin.FormatXOJ}, {"raw", o.raw, admin.FormatRaw}} {
		if cmd.Flags().Changed(v.flag) && v.dir == "" {
			return usagef("--%s is empty: give where to write", v.flag)
		}
		if v.dir != "" {
			dest, r.Format = v.dir, v.format
		}
	}
	sum := &restoreSummary{Serial: r.Serial, To: dest, Format: r.Format}
	if o.tar != "" {
		sum.Format = "tar file"
	}
	c, done, err := a.connect(cmd, readOnly)
	if err != nil {
		return err
	}
	defer done()
	if err := admin.CheckDestination(a.place.Data, dest); err != nil {
		return err
	}
	bar := cli.NewProgress(os.Stderr)
	err = c.Export(cmd.Context(), r, func(total int64, rd io.Reader) error {
		defer bar.Done()
		if o.tar != "" {
			if _, err := writeFileAtomic(o.tar, o.overwrite, &progressReader{r: rd, total: total, bar: bar}); err != nil {
				return err
			}
			// Say what the file holds, as a restore to a directory says
			// what it wrote (the archive's own size is ls's to tell).
			st, err := countTarFile(o.tar)
			sum.Files, sum.Bytes = st.Files, st.Bytes
			return err
		}
		st, err := restore.ExtractTar(rd, dest, o.overwrite, func(n int64, name string) { bar.Update(n, total, name) })
		sum.Files, sum.Bytes = st.Files, st.Bytes
		return err
	})
	var damaged *restore.DamagedError
	if err != nil && !errors.As(err, &damaged) {
		return err
	}
	// Everything else was restored: say what, then what was left out.
	if damaged != nil {
		sum.Damaged = damaged.Files
	}
	a.print(sum, func(w io.Writer) { printRestore(w, sum) })
	if damaged != nil {
		printDamaged(a.stderr, r.Serial, damaged.Files)
		return exitError(cli.ExitFailed)
	}
	return nil
}

// printDamaged lists what a restore left out and where to find it.
func printDamaged(w io.Writer, serial string, files []restore.DamagedFile) {
	fmt.Fprintf(w, "xs-admin: %d file(s) left out: their data on the server is damaged or missing (everything else was restored):\n", len(files))
	for _, f := range files {
		name := pr(f.Path)
		if f.Dir {
			name += "/ (the whole directory)"
		}
		if f.OlderSnapshot != "" {
			fmt.Fprintf(w, "  %s: an intact copy is in the older snapshot %s (xs-admin restore %s --snapshot %s ...)\n", name, f.OlderSnapshot, pr(serial), f.OlderSnapshot)
		} else {
			fmt.Fprintf(w, "  %s: no older snapshot has it intact\n", name)
		}
	}
	fmt.Fprintln(w, "Run xs-admin check --read-data to see every damaged chunk; the laptop's next backup heals what it still holds.")
}

// countTarFile counts the files and bytes in the tar file name.
func countTarFile(name string) (restore.TarStats, error) {
	f, err := os.Open(name)
	if err != nil {
		return restore.TarStats{}, err
	}
	defer f.Close()
	st, err := restore.CountTar(f)
	if err != nil {
		err = fmt.Errorf("%s was written but does not read back: %w", name, err)
	}
	return st, err
}

// restoreSummary is what `xs-admin restore` prints.
type restoreSummary struct {
	Serial string `json:"serial"`
	To     string `json:"to"`
	Format string `json:"format"`
	Files  int64  `json:"files"`
	Bytes  int64  `json:"bytes"`
	// Damaged lists what was left out (the exit code is then 1).
	Damaged []restore.DamagedFile `json:"damaged,omitempty"`
}

// writeFileAtomic writes r to name through a temporary file in the same
// directory, moved into place only when complete: never a cut archive
// under the name staff asked for.
func writeFileAtomic(name string, overwrite bool, r io.Reader) (int64, error) {
	if !overwrite {
		if _, err := os.Lstat(name); err == nil {
			return 0, fmt.Errorf("%s exists (--overwrite replaces it)", name)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".xs-restore-*.tmp")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if overwrite {
			err = os.Rename(f.Name(), name)
		} else if err = os.Link(f.Name(), name); err == nil {
			os.Remove(f.Name())
		} else if !errors.Is(err, fs.ErrExist) {
			// A USB stick's FAT has no hard links: the name was checked
			// free above; take it.
			err = os.Rename(f.Name(), name)
		}
	}
	if err != nil {
		os.Remove(f.Name())
		return n, err
	}
	return n, nil
}

// progressReader updates a progress bar as bytes are read.
type progressReader struct {
	r     io.Reader
	n     int64
	total int64
	bar   *cli.Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.bar.Update(p.n, p.total, "")
	return n, err
}
