package proto

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// A store's error crosses the wire with its kind and its whole message,
// once: the laptop sees "not found: snapshot x", and errors.Is still works.
func TestErrorCrossesTheWire(t *testing.T) {
	for _, sent := range []error{
		fmt.Errorf("%w: snapshot x of user 7", errkind.ErrNotFound),
		fmt.Errorf("%w: chunk ab12 of \"essay.odt\" is damaged on the server", blob.ErrDamaged),
		Errorf(KindBusy, "come back at 10:00"),
		errors.New("disk on fire"),
	} {
		var buf bytes.Buffer
		if err := writeError(&buf, sent); err != nil {
			t.Fatal(err)
		}
		_, _, _, got := readFrame(&buf, nil) // an error frame is read as the error
		if got == nil {
			t.Fatal("no error read back")
		}
		if KindOf(got) != KindOf(sent) {
			t.Errorf("%q: kind %v became %v", sent, KindOf(sent), KindOf(got))
		}
		want := sent.Error()
		if KindOf(sent) == KindInternal {
			want = "internal error: " + want
		}
		if got.Error() != want {
			t.Errorf("message %q arrived as %q", sent, got)
		}
	}
	if !errors.Is(decodeErrorOf(t, fmt.Errorf("%w: x", blob.ErrNotHeld)), blob.ErrNotHeld) {
		t.Error("a not-held error no longer matches blob.ErrNotHeld on the laptop")
	}
}

func decodeErrorOf(t *testing.T, err error) error {
	var buf bytes.Buffer
	writeError(&buf, err)
	_, _, _, rerr := readFrame(&buf, nil)
	return rerr
}
