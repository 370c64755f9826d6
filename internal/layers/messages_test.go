package layers

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// cliAdvice matches text that tells the reader which program or flag to
// run: a library cannot know it was called from a program (an embedding
// Sugar activity has no xs-admin), so its errors say what happened and the
// programs (internal/cli) say what to do next.
var cliAdvice = regexp.MustCompile(`\b(xs-admin|xo-backup|xs-backupd) [a-z]|(^|[\s(])--[a-z][a-z-]+`)

// errorConstructors are the calls whose string arguments become error text.
var errorConstructors = map[string]bool{
	"fmt.Errorf": true, "errors.New": true, "Errorf": true, "proto.Errorf": true, "errkind.Errorf": true,
}

// TestLibraryErrorsDescribe fails on an error message under pkg/ that
// names a command or a flag.
func TestLibraryErrorsDescribe(t *testing.T) {
	root := filepath.Join("..", "..", "pkg")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 || !errorConstructors[callName(call.Fun)] {
				return true
			}
			checked++
			for _, a := range call.Args {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				if m := cliAdvice.FindString(s); m != "" {
					t.Errorf("%s: error text names a command or flag (%q): say what happened, and put the advice in internal/cli", fset.Position(lit.Pos()), strings.TrimSpace(m))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d error constructors seen under pkg/: is the walk broken?", checked)
	}
}

func callName(e ast.Expr) string {
	switch f := e.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok {
			return x.Name + "." + f.Sel.Name
		}
	}
	return ""
}

func TestCLIAdvicePattern(t *testing.T) {
	for s, want := range map[string]bool{
		"run xs-admin check --repair":    true,
		"use --force to overwrite":       true,
		"(--to DIR)":                     true,
		"laptop is waiting for approval": false,
		"xs-admin: store closed":         false,
		"a pin needs a reason":           false,
		"chunk min-max sizes 512-8192":   false,
	} {
		if got := cliAdvice.MatchString(s); got != want {
			t.Errorf("%q: match %v, want %v", s, got, want)
		}
	}
}
