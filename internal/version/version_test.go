package version

import (
	"strings"
	"testing"
)

func TestStringPrefersLinkerVersion(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "1.2.3"
	if got := String(); got != "1.2.3" {
		t.Fatalf("String() = %q, want the linker-set 1.2.3", got)
	}
	if got := Long("xs-admin"); !strings.HasPrefix(got, "xs-admin 1.2.3 (go") {
		t.Fatalf("Long = %q", got)
	}
	Version = ""
	if got := String(); got == "" || got == "1.2.3" {
		t.Fatalf("String() without a linker version = %q", got)
	}
}
