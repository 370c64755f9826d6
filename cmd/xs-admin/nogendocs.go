//go:build !gendocs

package main

import "github.com/spf13/cobra"

// genDocsCmd is nil in a build without the gendocs tag (see gendocs.go).
func genDocsCmd(*app, *cobra.Command) *cobra.Command { return nil }
