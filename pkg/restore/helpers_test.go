package restore_test

import "github.com/xs-backup/xs-backup/internal/testkit"

// The helpers the library's tests share (internal/testkit): a store, a
// user, a backup.
var (
	openStore = testkit.OpenStore
	addUser   = testkit.AddUser
	mustRun   = testkit.MustRun
	writeFile = testkit.WriteFile
)
