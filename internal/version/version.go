// Package version reports which build of xs-backup is running.
//
// Release builds set Version with
//
//	go build -ldflags "-X github.com/xs-backup/xs-backup/internal/version.Version=1.2.3"
//
// (the Makefile and the packages do); a plain `go build` falls back to the
// module version and VCS revision Go records in the binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release this binary was built from; empty unless set by
// the linker.
var Version = ""

// String is the version for --version, logs and metrics: the release, or
// "devel" plus the VCS revision (and "+dirty") of a developer build.
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return "devel-" + rev
}

// Long is the one-line answer of `PROGRAM version`: program, version, Go
// release and platform.
func Long(program string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", program, String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
