package cmdline

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func tree(out *bytes.Buffer) *cobra.Command {
	root := &cobra.Command{Use: "prog", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	var level string
	sub := &cobra.Command{Use: "sub", Args: NoArgs, RunE: func(_ *cobra.Command, args []string) error {
		switch level {
		case "fail":
			return errors.New("disk on fire")
		case "later":
			return Exit(4)
		}
		return Exit(0)
	}}
	Enum(sub.Flags(), &level, "level", "ok", "what happens", "ok", "fail", "later")
	root.AddCommand(sub)
	Finish(root)
	root.SetOut(out)
	root.SetErr(out)
	return root
}

func TestExitCodes(t *testing.T) {
	// gen-docs exists only in a build with the gendocs tag.
	genDocs := `unknown command "gen-docs"`
	if genDocsCommand("prog") != nil {
		genDocs = "accepts 1 arg"
	}
	for _, c := range []struct {
		args []string
		code int
		say  string
	}{
		{[]string{"sub"}, 0, ""},
		{[]string{"sub", "--level", "fail"}, 1, "prog: disk on fire\n"},
		{[]string{"sub", "--level", "later"}, 4, ""},
		{[]string{"sub", "--level", "maybe"}, 2, `invalid argument "maybe" for "--level" flag: use ok, fail or later`},
		{[]string{"sub", "x"}, 2, `prog sub takes no arguments, got "x"`},
		{[]string{"sbu"}, 2, `unknown command "sbu" for prog; did you mean sub?`},
		{[]string{"sub", "--nope"}, 2, "Run 'prog sub --help' for usage."},
		{[]string{"sub", "--help"}, 0, "--level ok|fail|later"},
		{[]string{"version"}, 0, "prog "},
		{[]string{"--version"}, 0, "prog "},
		{[]string{"gen-docs"}, 2, genDocs},
	} {
		var out bytes.Buffer
		code := Run(context.Background(), tree(&out), c.args)
		if code != c.code || !strings.Contains(out.String(), c.say) {
			t.Errorf("%q: exit %d, %q; want %d, %q", c.args, code, out.String(), c.code, c.say)
		}
	}
}

// TestRootWithoutRun: a root that only holds commands still takes
// --version, and shows its help when given nothing.
func TestRootWithoutRun(t *testing.T) {
	mk := func(out *bytes.Buffer) *cobra.Command {
		root := &cobra.Command{Use: "adm", Short: "staff tool"}
		root.AddCommand(&cobra.Command{Use: "users", RunE: func(*cobra.Command, []string) error { return nil }})
		Finish(root)
		root.SetOut(out)
		root.SetErr(out)
		return root
	}
	for _, c := range []struct {
		args []string
		code int
		say  string
	}{{[]string{"--version"}, 0, "adm "}, {nil, 0, "Available Commands:"}, {[]string{"nope"}, 2, `unknown command "nope"`}} {
		var out bytes.Buffer
		if code := Run(context.Background(), mk(&out), c.args); code != c.code || !strings.Contains(out.String(), c.say) {
			t.Errorf("%q: exit %d, %q", c.args, code, out.String())
		}
	}
}
