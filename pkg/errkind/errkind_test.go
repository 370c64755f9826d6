package errkind_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

func TestKindsMatchAndClassify(t *testing.T) {
	wrapped := fmt.Errorf("open snapshot: %w", fmt.Errorf("%w: snapshot 2026 of user 7", errkind.ErrNotFound))
	if !errors.Is(wrapped, errkind.ErrNotFound) || errors.Is(wrapped, errkind.ErrDamaged) {
		t.Fatal("a wrapped sentinel matches its own kind only")
	}
	// Any error of the kind matches the sentinel: one from the wire too.
	if !errors.Is(&errkind.Error{Kind: errkind.NotFound, Msg: "from the server"}, errkind.ErrNotFound) {
		t.Fatal("an Error of a kind does not match that kind's sentinel")
	}
	for _, c := range []struct {
		err  error
		want errkind.Kind
	}{
		{wrapped, errkind.NotFound},
		{errkind.Errorf(errkind.Busy, "come back at 10:00"), errkind.Busy},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), errkind.Timeout},
		{errors.New("disk on fire"), errkind.Internal},
		{nil, 0},
	} {
		if got := errkind.Of(c.err); got != c.want {
			t.Errorf("Of(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if got := wrapped.Error(); got != "open snapshot: not found: snapshot 2026 of user 7" {
		t.Errorf("message %q", got)
	}
	// Kinds are numbers on the wire: their values never change.
	if errkind.Internal != 1 || errkind.Damaged != 17 || errkind.ReadOnly != 21 || errkind.Permission != 22 {
		t.Fatal("kinds were renumbered: old laptops and servers would misread them")
	}
	for k := errkind.Internal; k <= errkind.Permission; k++ {
		if !k.Valid() || k.String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
}

func ExampleOf() {
	err := fmt.Errorf("upload: %w", errkind.Errorf(errkind.OverQuota, "5 MiB of 5 MiB used"))
	fmt.Println(errkind.Of(err), errors.Is(err, errkind.ErrOverQuota))
	// Output: over quota true
}
