//go:build gendocs

package main

import (
	"github.com/spf13/cobra"

	"github.com/xs-backup/xs-backup/internal/cmdline"
)

// genDocsCmd is the hidden `gen-docs DIR` the packages run at build time,
// in a build with the gendocs tag (the same command as the other two
// programs': internal/cmdline): man pages from the command definitions into
// DIR/man/man1, completion scripts into DIR/completion/{bash,zsh,fish}. Man
// page dates follow SOURCE_DATE_EPOCH.
func genDocsCmd(a *app, root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write man pages and shell completions into DIR (for packaging)",
		Long:   cmdline.GenDocsLong("xs-admin"),
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: a.command(func(cmd *cobra.Command, args []string) error {
			root.InitDefaultCompletionCmd() // its pages too, as `completion` works
			return cmdline.GenDocs(root, args[0])
		}),
	}
}
