package server

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a daemon, server or restore page starts is joined by the
// time its test ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
