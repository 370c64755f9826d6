package kit_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/xs-backup/xs-backup/pkg/offsite/kit"
)

func ExampleNewPassphrase() {
	p, err := kit.NewPassphrase()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(p), strings.Count(p, "-"), kit.CheckPassphrase(p))
	// Output: 29 5 <nil>
}

func ExampleCheckPassphrase() {
	fmt.Println(kit.CheckPassphrase("7kqm zc3w h9rt 4xna pd2f mv8f"))
	err := kit.CheckPassphrase("7KQM-ZC3W-H9RT-4XNA-PD2F-MV8E")
	fmt.Println(err, errors.Is(err, kit.ErrTypo))
	// Output:
	// <nil>
	// the passphrase has a typo: check each group against the recovery kit true
}

func ExampleSeal() {
	serverKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	passphrase, err := kit.NewPassphrase() // printed on the recovery kit
	if err != nil {
		panic(err)
	}
	sealed, err := kit.Seal(passphrase, "Escuela 12", serverKey)
	if err != nil {
		panic(err)
	}
	// sealed goes to the mothership; on a rebuilt server, staff type the
	// passphrase:
	opened, err := kit.Open(passphrase, "Escuela 12", sealed)
	fmt.Println(err, ed25519.PrivateKey(opened).Equal(serverKey))
	// Output: <nil> true
}

func ExampleRecoveryKey() {
	passphrase := "7KQM-ZC3W-H9RT-4XNA-PD2F-MV8F"
	// When the school joins the mothership, its public half is registered;
	k1, err := kit.RecoveryKey(passphrase, "Escuela 12")
	if err != nil {
		panic(err)
	}
	// a new machine with only the passphrase derives the same key.
	k2, err := kit.RecoveryKey("7kqm zc3w h9rt 4xna pd2f mv8f", "Escuela 12")
	if err != nil {
		panic(err)
	}
	fmt.Println(k1.Equal(k2))
	// Output: true
}
