//go:build !gendocs

package cmdline

import "github.com/spf13/cobra"

// genDocsCommand is nil in a build without the gendocs tag (see gendocs.go).
func genDocsCommand(string) *cobra.Command { return nil }
