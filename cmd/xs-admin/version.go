package main

import (
	"runtime"

	"github.com/xs-backup/xs-backup/internal/version"
)

// versionInfo is `xs-admin version --json`.
func versionInfo() map[string]string {
	return map[string]string{"program": "xs-admin", "version": version.String(), "go": runtime.Version(),
		"platform": runtime.GOOS + "/" + runtime.GOARCH}
}

func versionLong() string { return version.Long("xs-admin") }
