package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// An error keeps its kind through the admin socket: xs-admin gives the same
// advice through the daemon as on a stopped store.
func TestErrorKindCrossesTheSocket(t *testing.T) {
	for _, sent := range []error{
		fmt.Errorf("%w: open index: checksum mismatch", store.ErrIndexDamaged),
		fmt.Errorf("%w: the disk is full", store.ErrStorageFull),
		fmt.Errorf("%w: snapshot x", store.ErrNotFound),
		fmt.Errorf("%w: give a serial", ErrUsage),
	} {
		b, _ := json.Marshal(errResponse(sent))
		var r response
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		got := r.err()
		for _, target := range []error{store.ErrIndexDamaged, store.ErrStorageFull, store.ErrNotFound, ErrUsage} {
			if errors.Is(sent, target) != errors.Is(got, target) {
				t.Errorf("%q came back as %q: errors.Is(%v) changed", sent, got, target)
			}
		}
		if got.Error() != sent.Error() {
			t.Errorf("message %q came back as %q", sent, got)
		}
	}
}
