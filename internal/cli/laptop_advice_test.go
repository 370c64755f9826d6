package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
)

func TestLaptopAdviceByKind(t *testing.T) {
	for k, want := range map[errkind.Kind]string{
		errkind.NotRegistered: "xo-backup register",
		errkind.NotApproved:   "approve",
		errkind.Revoked:       "ask staff",
		errkind.OverQuota:     "quota",
		errkind.StorageFull:   "disk is full",
	} {
		// Wrapped as a caller would, the kind still finds its advice.
		err := fmt.Errorf("backup: %w", errkind.Errorf(k, "what happened"))
		if got := LaptopAdvice(err); !strings.Contains(got, want) {
			t.Errorf("%v: advice %q does not mention %q", k, got, want)
		}
	}
	if got := LaptopAdvice(fmt.Errorf("plain")); got != "" {
		t.Errorf("an error of no kind got advice %q", got)
	}
}
