//go:build gendocs

package cmdline

// Man pages and completions are written by a build of the programs with the
// gendocs tag (make packages): the programs a laptop or server runs do not
// carry cobra/doc and the Markdown renderer behind it, whose package
// initialisation every start of xo-backup paid (0.5 ms on the reference
// machine, many times that on an XO-1) for a command no one runs there.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/xs-backup/xs-backup/internal/version"
)

// genDocsCommand is `PROG gen-docs DIR`, the packages' build step (hidden
// from help): man pages and completions generated from the same command
// definitions as --help.
func genDocsCommand(prog string) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write man pages and shell completions into DIR (for packaging)",
		Long:   GenDocsLong(prog),
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return GenDocs(cmd.Root(), args[0])
		},
	}
}

// GenDocsLong describes what gen-docs writes.
func GenDocsLong(prog string) string {
	return "Write the man pages and shell completions of " + prog + " into DIR:\n" +
		"  DIR/man/man1/" + prog + ".1 and one page per command (" + prog + "-COMMAND.1)\n" +
		"  DIR/completion/bash/" + prog + "\n" +
		"  DIR/completion/zsh/_" + prog + "\n" +
		"  DIR/completion/fish/" + prog + ".fish\n" +
		"SOURCE_DATE_EPOCH, if set, dates the man pages."
}

// GenDocs writes root's man pages (DIR/man/man1/PROG*.1) and its bash, zsh
// and fish completions (DIR/completion/bash/PROG, DIR/completion/zsh/_PROG,
// DIR/completion/fish/PROG.fish).
func GenDocs(root *cobra.Command, dir string) error {
	prog := root.Name()
	man := filepath.Join(dir, "man", "man1")
	for _, d := range []string{man, filepath.Join(dir, "completion", "bash"), filepath.Join(dir, "completion", "zsh"), filepath.Join(dir, "completion", "fish")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	header := &doc.GenManHeader{Section: "1", Source: "xs-backup " + version.String(), Manual: "xs-backup"}
	if err := doc.GenManTree(root, header, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	for _, c := range []struct {
		path string
		gen  func(*os.File) error
	}{
		{filepath.Join(dir, "completion", "bash", prog), func(f *os.File) error { return root.GenBashCompletionV2(f, true) }},
		{filepath.Join(dir, "completion", "zsh", "_"+prog), func(f *os.File) error { return root.GenZshCompletion(f) }},
		{filepath.Join(dir, "completion", "fish", prog+".fish"), func(f *os.File) error { return root.GenFishCompletion(f, true) }},
	} {
		f, err := os.Create(c.path)
		if err != nil {
			return err
		}
		err = c.gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("completion %s: %w", c.path, err)
		}
	}
	return nil
}
