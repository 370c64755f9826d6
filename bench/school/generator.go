package school

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
)

// GenOptions shape a school made by [NewGenerator] for another benchmark
// (bench/offsite) that wants this benchmark's Journals without its systems.
type GenOptions struct {
	// Laptops, Nights and JournalMB as in [Options]: laptop L<n-1> is
	// reflashed on night Nights/2.
	Laptops, Nights, JournalMB int
	// Seed makes the school-wide library (books and activity bundles, their
	// sizes and popularity) and, unless ChildSeed is set, every child's
	// Journal.
	Seed uint64
	// ChildSeed, if set, seeds the children's Journals instead of Seed: two
	// schools with the same Seed and different ChildSeeds share the library
	// byte for byte and nothing else (another school of the same region).
	ChildSeed uint64
	// Scale divides the sizes of books, activity bundles, photos and
	// recordings (0 or 1: as in the whole-school benchmark). Documents keep
	// their size (2–60 KiB): they are small already.
	Scale int
}

// Generator writes a school's Journals night after night.
type Generator struct {
	s *school
}

// Journal is one laptop's Journal directory.
type Journal struct {
	// Name is the laptop's stable name (L000, L001, ...), Dir its Journal.
	Name, Dir string
}

// NewGenerator prepares a school whose Journals live under root.
func NewGenerator(o GenOptions, root string) (*Generator, error) {
	if o.Laptops <= 0 || o.Nights <= 0 || o.JournalMB <= 0 {
		return nil, fmt.Errorf("generator: laptops, nights and journal MB must be positive (%+v)", o)
	}
	s, err := newSchool(Options{Laptops: o.Laptops, Nights: o.Nights, JournalMB: o.JournalMB, Seed: o.Seed}, root)
	if err != nil {
		return nil, err
	}
	if o.Scale > 1 {
		s.div = o.Scale
		for i := range s.bookSize {
			s.bookSize[i] = s.scaled(s.bookSize[i])
		}
	}
	if o.ChildSeed != 0 {
		for _, l := range s.laptops {
			l.rng = rand.New(rand.NewPCG(o.ChildSeed, uint64(l.idx)+1))
		}
	}
	return &Generator{s: s}, nil
}

// scaled divides a generated size by the school's scale.
func (s *school) scaled(n int) int {
	if s.div > 1 {
		return n / s.div
	}
	return n
}

// Night applies night k's change to every Journal (night 0 creates them).
// Nights must come in order.
func (g *Generator) Night(k int) error { return g.s.night(k) }

// Journals lists the laptops' Journals.
func (g *Generator) Journals() []Journal {
	var out []Journal
	for _, l := range g.s.laptops {
		out = append(out, Journal{Name: l.name, Dir: l.journal})
	}
	return out
}

// Reflash says which laptop is wiped on which night (-1, "": none).
func (g *Generator) Reflash() (night int, laptop string) {
	if g.s.reflashLaptop < 0 {
		return -1, ""
	}
	return g.s.reflashNight, g.s.laptops[g.s.reflashLaptop].name
}

// RsyncFilters are the rsync --exclude options that leave out what every
// system leaves out of a Journal (its index and temporary files).
func RsyncFilters() []string { return rsyncFilters() }

// JournalBytes is the size and number of the files a backup of the Journal
// at dir takes (the same exclusions as xs-backup).
func JournalBytes(dir string) (bytes int64, files int, err error) {
	fs, total, err := walkJournal(filepath.Clean(dir))
	return total, len(fs), err
}

// DescribeMachine says what the benchmark runs on (CPU, cores, RAM, kernel,
// OS, Go and the versions of rsync and the other tools found).
func DescribeMachine(ctx context.Context) Machine { return machine(ctx) }

// DiskUsage is what du reports for roots together, each inode counted once
// however many hard links it has.
func DiskUsage(roots ...string) (int64, error) { return diskUsage(roots...) }
