package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// TestRestoreIntoTheStateDirectoryIsRefused: xo-backup restore --to
// pointing into the laptop's own state directory (directly, below it, or
// through a link) is refused before anything is fetched: a backed-up file
// named "key" or "server.json" would replace the laptop's identity.
func TestRestoreIntoTheStateDirectoryIsRefused(t *testing.T) {
	root := t.TempDir()
	st := State{Dir: filepath.Join(root, "state")}
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(st.Dir, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{st.Dir, filepath.Join(st.Dir, "restored"), filepath.Join(root, "link", "x")} {
		_, _, err := Restore(context.Background(), st, RestoreOptions{Target: to, Snapshot: "latest"})
		if errkind.Of(err) != errkind.BadRequest {
			t.Errorf("restore into %s: %v, want a refusal naming the state directory", to, err)
		}
	}
	if entries, _ := os.ReadDir(st.Dir); len(entries) != 0 {
		t.Errorf("the refused restores left %d entries in the state directory", len(entries))
	}
}
