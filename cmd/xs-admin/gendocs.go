package main

import (
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/xs-backup/xs-backup/internal/version"
)

// genDocsCmd is the hidden `gen-docs DIR` the packages run at build time
// (the same interface in the three programs): man pages from the command
// definitions into DIR/man/man1, completion scripts into
// DIR/completion/{bash,zsh,fish}. Man page dates follow SOURCE_DATE_EPOCH.
func genDocsCmd(a *app, root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write man pages and shell completions into DIR (for packaging)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			return genDocs(root, args[0])
		}),
	}
}

func genDocs(root *cobra.Command, dir string) error {
	name := root.Name()
	man := filepath.Join(dir, "man", "man1")
	if err := os.MkdirAll(man, 0o755); err != nil {
		return err
	}
	root.InitDefaultCompletionCmd() // its pages too, as `completion` works
	hdr := &doc.GenManHeader{Section: "1", Source: "xs-backup " + version.String(), Manual: "xs-backup manual"}
	if err := doc.GenManTreeFromOpts(root, doc.GenManTreeOptions{Header: hdr, Path: man, CommandSeparator: "-"}); err != nil {
		return err
	}
	for _, c := range []struct {
		shell, file string
		gen         func(io.Writer) error
	}{
		{"bash", name, func(w io.Writer) error { return root.GenBashCompletionV2(w, true) }},
		{"zsh", "_" + name, root.GenZshCompletion},
		{"fish", name + ".fish", func(w io.Writer) error { return root.GenFishCompletion(w, true) }},
	} {
		if err := writeGenerated(filepath.Join(dir, "completion", c.shell, c.file), c.gen); err != nil {
			return err
		}
	}
	return nil
}

func writeGenerated(path string, gen func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := gen(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// versionInfo is `xs-admin version --json`.
func versionInfo() map[string]string {
	return map[string]string{"program": "xs-admin", "version": version.String(), "go": runtime.Version(),
		"platform": runtime.GOOS + "/" + runtime.GOARCH}
}

func versionLong() string { return version.Long("xs-admin") }
