package store

import (
	"context"
	"testing"
)

// TestScrubReadsTheNightlyShare: a scrub without a share of its own (what
// `xs-admin scrub` asks) reads the share the nightly run reads, 1/ScrubDays
// of the packs: it read 1/30 whatever the configuration said. With the
// nightly scrub turned off it reads 1/30.
func TestScrubReadsTheNightlyShare(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		days int
		want func(packs int) int
	}{
		{2, func(n int) int { return (n + 1) / 2 }},
		{1, func(n int) int { return n }},
		{-1, func(n int) int { return (n + 29) / 30 }},
	} {
		opts := daOpts
		opts.ScrubDays = c.days
		s, err := Open(ctx, t.TempDir(), opts)
		if err != nil {
			t.Fatal(err)
		}
		u, err := s.AddUser(ctx, NewUser{Serial: "SCRUB001", Approved: true})
		if err != nil {
			t.Fatal(err)
		}
		for seed := uint64(21); seed < 27; seed++ { // a pack or more each
			decBackup(t, s, u.ID, decJournal(t, seed))
		}
		all, err := s.Scrub(ctx, ScrubOptions{All: true})
		if err != nil || all.Packs < 4 {
			t.Fatalf("scrub --all: %+v %v (want several packs)", all, err)
		}
		rep, err := s.Scrub(ctx, ScrubOptions{})
		if err != nil || rep.Packs != c.want(all.Packs) {
			t.Errorf("ScrubDays %d: a scrub read %d of %d packs (%v), want %d", c.days, rep.Packs, all.Packs, err, c.want(all.Packs))
		}
		s.Close()
	}
}
