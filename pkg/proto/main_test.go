package proto

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of the protocol outlives the test that started it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
