package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/proto"
)

// laptop is one simulated XO: its own state directory (key, pinned server
// key, file cache), its own Journal, and what happened to it.
type laptop struct {
	serial  string
	state   agent.State
	journal string
	seed    uint64
	bytes   int64 // size of the generated Journal

	// Set by live; read after every laptop goroutine has returned.
	arrived time.Time // when its timer first fired
	done    time.Time // when Run returned with the committed backup
	session time.Duration
	result  *agent.RunResult
	runs    int // agent.Run calls
	laters  int // runs that came back with a slot beyond MaxSlotWait
	errs    map[string]int
	// latersOffline are the laters that ended before contacting the
	// server (the kept slot was still beyond MaxSlotWait: no wire bytes).
	latersOffline int
	// errExamples holds the last message of each kind in errs.
	errExamples map[string]string
	lastFail    string // why it had not finished when the deadline came
	failKind    string // lastFail's category
	verified    bool   // its snapshot is in the server's list
}

func newLaptop(root string, i int, seed uint64) *laptop {
	dir := filepath.Join(root, fmt.Sprintf("%04d", i))
	return &laptop{
		serial:  fmt.Sprintf("LOAD%04d", i),
		state:   agent.State{Dir: filepath.Join(dir, "state")},
		journal: filepath.Join(dir, "journal"),
		seed:    seed,
		errs:    map[string]int{}, errExamples: map[string]string{},
	}
}

// generate writes the laptop's Journal.
func (l *laptop) generate(profile journalgen.Options) error {
	profile.Seed = l.seed
	ents, err := journalgen.Generate(l.journal, profile)
	if err != nil {
		return fmt.Errorf("generate the Journal of %s in %s: %w", l.serial, l.journal, err)
	}
	for _, e := range ents {
		l.bytes += int64(len(e.Data))
	}
	return nil
}

// register registers the laptop with the daemon, as xo-backup register does.
func (l *laptop) register(ctx context.Context, addr string) error {
	_, err := agent.Register(ctx, l.state, agent.RegisterOptions{Server: addr, Serial: l.serial, Nickname: "load " + l.serial})
	if err != nil {
		return fmt.Errorf("register %s: %w", l.serial, err)
	}
	return nil
}

// lifeOptions is what a laptop's life needs from the run.
type lifeOptions struct {
	arrive      time.Time // its timer's first firing
	maxSlotWait time.Duration
	comeback    Comeback
	period      time.Duration // the timer's period
	delay       time.Duration // the timer's random delay (RandomizedDelaySec)
	powerDir    string        // an empty power_supply directory: never on low battery
	rng         *rand.Rand
}

// live is the laptop's day: its timer fires at o.arrive and it calls
// agent.Run like xo-backup run does until a backup is committed or ctx ends.
// After a run that ended Later (a slot beyond MaxSlotWait, from the server
// or kept from an earlier run) it runs again at the next timer firing
// (ComebackTimer) or at the slot (ComebackSlot); after an error or a skip,
// at the next timer firing. The next firing is counted from the end of the
// run: period plus a random delay of up to o.delay.
func (l *laptop) live(ctx context.Context, o lifeOptions) {
	if !sleepUntil(ctx, o.arrive) {
		l.lastFail, l.failKind = "its timer had not fired yet", "timer not fired"
		return
	}
	l.arrived = time.Now()
	nextTimer := func() time.Time { return time.Now().Add(o.period + time.Duration(o.rng.Int64N(int64(o.delay)+1))) }
	for {
		l.runs++
		res, err := agent.Run(ctx, l.state, agent.RunOptions{
			Source:         l.journal,
			PowerSupplyDir: o.powerDir,
			MaxSlotWait:    o.maxSlotWait,
			Host:           l.serial,
		})
		end := time.Now()
		var next time.Time
		switch {
		case err != nil:
			if ctx.Err() != nil {
				l.lastFail, l.failKind = "the deadline came during a run: "+err.Error(), "deadline during a run"
				return
			}
			k := "error"
			var pe *proto.Error
			var te *quic.TransportError
			switch {
			case errors.As(err, &pe):
				k = pe.Kind.String()
			case errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused:
				// quic-go's own refusal, when its queues of handshakes
				// or of connections waiting for Accept are full.
				// xs-backupd never sees these: its metrics miss them.
				k = "refused by QUIC (queue full)"
			case errors.Is(err, proto.ErrUnreachable):
				k = "unreachable"
			}
			l.errs[k]++
			l.errExamples[k] = err.Error()
			l.lastFail, l.failKind = "last run failed: "+err.Error(), "last run failed: "+k
			next = nextTimer()
		case res.Outcome == agent.Done:
			l.result, l.done, l.session = res, end, res.Backup.Duration
			l.lastFail, l.failKind = "", ""
			return
		case res.Outcome == agent.Later:
			l.laters++
			if res.WireSent == 0 {
				l.latersOffline++
			}
			l.lastFail = "waiting for its slot at " + res.Slot.Local().Format("15:04:05.000")
			l.failKind = "waiting for its slot"
			if o.comeback == ComebackSlot {
				next = res.Slot
			} else {
				next = nextTimer()
			}
		default: // Skipped: unreachable, locked, ...
			why, _, _ := strings.Cut(res.Reason, ":")
			l.errs["skipped: "+why]++
			l.lastFail, l.failKind = "last run skipped: "+res.Reason, "last run skipped"
			next = nextTimer()
		}
		if !sleepUntil(ctx, next) {
			return
		}
	}
}

// verify checks that the laptop's committed snapshot is in the server's
// list of its snapshots (a separate connection, as xo-backup list makes).
func (l *laptop) verify(ctx context.Context) error {
	sns, err := agent.Snapshots(ctx, l.state)
	if err != nil {
		return fmt.Errorf("list the snapshots of %s: %w", l.serial, err)
	}
	for _, s := range sns {
		if s.ID == l.result.Backup.Snapshot {
			l.verified = true
			return nil
		}
	}
	return fmt.Errorf("%s committed snapshot %s but the server lists %d others", l.serial, l.result.Backup.Snapshot, len(sns))
}

// sleepUntil sleeps until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
