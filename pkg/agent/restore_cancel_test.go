package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/dircmp"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// TestRestoreAllCancelledAtEveryMoment: restore --all of a reflashed laptop
// is cut off at once, and then at moments spread over its connecting,
// listing and first files (before any file is written, too). Each run ends
// with an error that says it was interrupted (or finishes), never a panic
// or QUIC's own words; the laptop still waits for its restore until one
// ends whole, and the next full run brings the whole Journal back.
func TestRestoreAllCancelledAtEveryMoment(t *testing.T) {
	_, src, st, jr := rstReflash(t, "RST-EVERY", journalgen.Small(6))
	for _, after := range []time.Duration{0, 100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond, 16 * time.Millisecond, 32 * time.Millisecond, 64 * time.Millisecond, 128 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		if after == 0 {
			cancel()
		} else {
			time.AfterFunc(after, cancel)
		}
		res, _, err := Restore(ctx, st, RestoreOptions{All: true, Target: jr, Overwrite: true})
		cancel()
		if err == nil {
			t.Logf("cancelled after %v: it finished first (%d files)", after, res.Files)
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %v: the error %q does not say it was cancelled", after, err)
		}
		if strings.Contains(err.Error(), "stream") || strings.Contains(err.Error(), "Application error") {
			t.Errorf("cancelled after %v: %q speaks QUIC, not of an interrupted restore", after, err)
		}
		if !st.RestorePending() {
			t.Fatalf("cancelled after %v, the laptop no longer waits for its restore", after)
		}
	}
	res, _, err := Restore(context.Background(), st, RestoreOptions{All: true, Target: jr, Overwrite: true})
	if err != nil {
		t.Fatalf("restore --all after the cancelled ones: %v", err)
	}
	if err := dircmp.Compare(src, jr, backup.JournalExclude); err != nil {
		t.Fatalf("restore --all after the cancelled runs (%d files): %v", res.Files, err)
	}
	if st.RestorePending() {
		t.Error("a whole restore --all left the laptop waiting for a restore")
	}
}
