package server_test

import (
	"math/rand/v2"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

func randFor(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 77)) }

// userBySerial returns the account a daemon's store holds for serial (a
// laptop's, or a school's on its mothership).
func userBySerial(t *testing.T, d *server.Daemon, serial string) *store.User {
	t.Helper()
	u, err := d.Store.UserBySerial(serial)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
