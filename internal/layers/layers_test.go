package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/xs-backup/xs-backup/"

// layer of every package of the module that code outside tests may import.
// A package may import only packages of a lower layer: the data path reads
// chunk → store ← proto, the laptop side (backup, agent) and the server
// side (store, server) never import each other, and no library imports a
// program's helpers (internal/cli) or the test helpers.
var layer = map[string]int{
	"internal/units":          0,
	"internal/bucket":         0,
	"internal/atomicfile":     0,
	"internal/pathutil":       0,
	"internal/version":        0,
	"internal/procstat":       0,
	"pkg/store/internal/fsys": 1,
	"pkg/store/internal/pack": 2,
	"pkg/chunk":               0,
	"pkg/errkind":             0,
	"pkg/journal":             0,
	"pkg/blob":                1,
	"pkg/manifest":            1,
	"pkg/restore":             2,
	"pkg/store":               3,
	"pkg/store/s3":            4,
	"pkg/proto":               3,
	"pkg/backup":              3,
	"pkg/offsite":             4,
	"pkg/offsite/bundle":      2,
	"pkg/offsite/kit":         1,
	"pkg/admin":               5,
	"pkg/agent":               4,
	"pkg/server":              6,
	"pkg/xsbackup":            6,
	// Test and demo helpers, programs and their helpers sit above every library.
	"internal/journalgen": 9,
	"internal/dircmp":     9,
	"internal/damage":     9,
	"internal/testkit":    9,
	"internal/s3test":     9,
	"internal/logging":    9,
	"internal/cmdline":    11,
	"internal/cli":        10,
	"internal/demo":       12,
	"internal/layers":     13,
}

// TestNoUpwardImports fails on an import that points up or sideways, and on
// a new package that has not been given a layer.
func TestNoUpwardImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"pkg/...", module+"internal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		lp, ok := layer[pkg]
		if !ok {
			t.Errorf("%s has no layer: add it to the map in internal/layers", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			imp = strings.TrimPrefix(imp, module)
			checked++
			li, ok := layer[imp]
			if !ok {
				t.Errorf("%s imports %s, which has no layer", pkg, imp)
				continue
			}
			if li >= lp {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", pkg, lp, imp, li)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d imports checked: go list output changed?", checked)
	}
}
