package school

import (
	"bytes"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/backup"
)

// Journal content kinds.
type kind int

const (
	kindPhoto kind = iota // incompressible photo or recording
	kindDoc               // small compressible document
	kindBook              // school-wide book or activity bundle, shared byte for byte
)

// sharedItems is the size of the school-wide set of books and activity
// bundles; the first sharedBooks are books, the rest .xo bundles.
const (
	sharedItems = 20
	sharedBooks = 12
)

// base is the simulated date of night 0.
var base = time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC)

// libraryTime is when the school library published its books and bundles:
// every laptop's copy keeps this modification time, as a file copied with
// its date would, so `hardlink` (which wants equal times) may merge them.
var libraryTime = base.AddDate(0, -3, 0)

type entry struct {
	uid   string
	kind  kind
	book  int // index in the shared set, for kindBook
	title string
	act   string
	mime  string
	size  int
}

// laptop is one simulated XO and its Journal.
type laptop struct {
	idx     int
	name    string // stable name: L000
	serial  string // current serial registered with xs-backup
	chain   string // current rsync folder chain
	journal string
	rng     *rand.Rand
	entries []*entry
	books   map[int]bool
	// protected is the entry whose night-0 version the single-document
	// restore brings back; it is never deleted.
	protected string
	// reflashed is the night this laptop was wiped, or -1.
	reflashed int
}

// school is the generator's state: every laptop and the shared library.
type school struct {
	o        Options
	laptops  []*laptop
	bookSize [sharedItems]int
	weights  [sharedItems]float64
	// docRel is the path (relative to the Journal) of the document restored
	// from night 0, and docNight0 its bytes that night.
	docRel    string
	docNight0 []byte
	// reflashNight and reflashLaptop say which laptop is wiped when (-1: none).
	reflashNight, reflashLaptop int
	// div divides the sizes of photos, recordings and the reflashed
	// Journal (0 or 1: full size); see NewGenerator.
	div int
}

var (
	photoActs = []string{"org.laptop.RecordActivity", "org.laptop.Oficina", "org.laptop.sugar.ReadActivity"}
	docActs   = []string{"org.laptop.AbiWordActivity", "org.laptop.TurtleArtActivity", "org.laptop.WebActivity",
		"org.laptop.Memorize", "org.sugarlabs.Music", "org.laptop.Pippy"}
	titles = []string{"My drawing", "Mi dibujo", "Ma tortue", "Hadithi yangu", "Tarea de ciencias", "Photo of the school",
		"Canción", "Maze game", "Poema para mamá", "Rainfall log", "Fractions", "Story about my dog"}
)

func newSchool(o Options, root string) (*school, error) {
	s := &school{o: o, reflashNight: -1, reflashLaptop: -1}
	r := rand.New(rand.NewPCG(o.Seed, 0x11b))
	for i := range sharedItems {
		if i < sharedBooks {
			s.bookSize[i] = 300<<10 + r.IntN(2700<<10) // books: 300 KiB to 3 MiB
		} else {
			s.bookSize[i] = 100<<10 + r.IntN(1400<<10) // activity bundles: 100 KiB to 1.5 MiB
		}
		s.weights[i] = 1 / math.Pow(float64(i+1), 0.8) // a few titles are on most laptops
	}
	if o.Nights >= 2 && o.Laptops >= 2 {
		s.reflashNight, s.reflashLaptop = o.Nights/2, o.Laptops-1
	}
	for i := range o.Laptops {
		l := &laptop{idx: i, name: fmt.Sprintf("L%03d", i), serial: fmt.Sprintf("SHC%05d", 10000+i),
			journal: filepath.Join(root, fmt.Sprintf("L%03d", i)), rng: rand.New(rand.NewPCG(o.Seed, uint64(i)+1)),
			books: map[int]bool{}, reflashed: -1}
		l.chain = l.name
		s.laptops = append(s.laptops, l)
	}
	return s, nil
}

// night applies night k's change to every Journal: night 0 creates them.
func (s *school) night(k int) error {
	for _, l := range s.laptops {
		var err error
		switch {
		case k == 0:
			err = s.fill(l, k, s.o.JournalMB<<20, true)
		case k == s.reflashNight && l.idx == s.reflashLaptop:
			err = s.reflash(l, k)
		default:
			err = s.mutate(l, k)
		}
		if err != nil {
			return fmt.Errorf("generate Journal %s night %d: %w", l.name, k, err)
		}
		if err := s.writeIndex(l); err != nil {
			return err
		}
	}
	if k == 0 {
		l := s.laptops[0]
		for _, e := range l.entries {
			if e.kind == kindDoc {
				l.protected = e.uid
				s.docRel = filepath.ToSlash(filepath.Join(e.uid[:2], e.uid, "data"))
				b, err := os.ReadFile(filepath.Join(l.journal, filepath.FromSlash(s.docRel)))
				if err != nil {
					return err
				}
				s.docNight0 = b
				break
			}
		}
		if s.docRel == "" {
			return fmt.Errorf("laptop %s has no document to restore; use a larger -journal-mb", l.name)
		}
	}
	return nil
}

// when is a time during the day of night k (the backup runs in the evening).
func when(r *rand.Rand, k int) time.Time {
	return base.AddDate(0, 0, k).Add(-time.Duration(1+r.IntN(10*3600)) * time.Second)
}

// fill adds entries to l until its Journal holds about target bytes.
func (s *school) fill(l *laptop, k, target int, old bool) error {
	total := 0
	nb := 3 + l.rng.IntN(4)
	if !old {
		nb = 2
	}
	for range nb {
		e, err := s.addBook(l, k)
		if err != nil {
			return err
		}
		if e != nil {
			total += e.size
		}
	}
	for docs := 0; total < target || docs < 3; {
		var e *entry
		if docs >= 3 && l.rng.IntN(5) < 2 {
			e = s.newPhoto(l)
		} else {
			e = s.newDoc(l)
			docs++
		}
		t := when(l.rng, k)
		if old {
			t = t.AddDate(0, 0, -l.rng.IntN(60))
		}
		if err := s.write(l, e, nil, t); err != nil {
			return err
		}
		total += e.size
	}
	return os.WriteFile(filepath.Join(l.journal, "version"), []byte("6"), 0o644)
}

func uid(r *rand.Rand) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 36)
	for i := range b {
		b[i] = hex[r.IntN(16)]
	}
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return string(b)
}

func (s *school) newPhoto(l *laptop) *entry {
	e := &entry{uid: uid(l.rng), kind: kindPhoto, act: photoActs[l.rng.IntN(len(photoActs))],
		size: s.scaled(200<<10 + l.rng.IntN(2872<<10)), title: titles[l.rng.IntN(len(titles))]}
	if e.act == "org.laptop.RecordActivity" && l.rng.IntN(2) == 0 {
		e.mime, e.title = "audio/ogg", "Recording "+e.title
	} else {
		e.mime = "image/jpeg"
	}
	return e
}

func (s *school) newDoc(l *laptop) *entry {
	return &entry{uid: uid(l.rng), kind: kindDoc, act: docActs[l.rng.IntN(len(docActs))], mime: "text/plain",
		size: 2<<10 + l.rng.IntN(58<<10), title: titles[l.rng.IntN(len(titles))]}
}

// addBook downloads a book or bundle l does not have yet, picked by
// popularity; nil if it has them all.
func (s *school) addBook(l *laptop, k int) (*entry, error) {
	var sum float64
	for i, w := range s.weights {
		if !l.books[i] {
			sum += w
		}
	}
	if sum == 0 {
		return nil, nil
	}
	x := l.rng.Float64() * sum
	pick := -1
	for i, w := range s.weights {
		if l.books[i] {
			continue
		}
		pick = i
		if x -= w; x < 0 {
			break
		}
	}
	l.books[pick] = true
	e := &entry{uid: uid(l.rng), kind: kindBook, book: pick, size: s.bookSize[pick]}
	if pick < sharedBooks {
		e.title, e.act, e.mime = fmt.Sprintf("Library book %d", pick), "org.laptop.sugar.ReadActivity", "application/pdf"
	} else {
		e.title, e.act, e.mime = fmt.Sprintf("Activity bundle %d", pick), "org.laptop.JournalActivity", "application/vnd.olpc-sugar"
	}
	data := journalgen.Book(s.o.Seed^0xb00c, pick, e.size)
	if pick >= sharedBooks {
		data = append([]byte("PK\x03\x04"), data...) // a .xo is a zip
	}
	e.size = len(data)
	return e, s.write(l, e, data, when(l.rng, k))
}

// write writes e (generating its data if nil) at time t and records it.
func (s *school) write(l *laptop, e *entry, data []byte, t time.Time) error {
	if data == nil {
		switch e.kind {
		case kindPhoto:
			data = journalgen.Random(l.rng, e.size)
		default:
			data = journalgen.Text(l.rng, e.size)
		}
	}
	e.size = len(data)
	if err := writeEntry(l.journal, e, data, t); err != nil {
		return err
	}
	if !slices.Contains(l.entries, e) {
		l.entries = append(l.entries, e)
	}
	return nil
}

// writeEntry writes an entry in the datastore layout with every file's
// modification time set to t (a shared book's data keeps the library's).
func writeEntry(dir string, e *entry, data []byte, t time.Time) error {
	je := journalgen.Entry{UID: e.uid, Title: e.title, Activity: e.act, Mime: e.mime, Data: data}
	if err := journalgen.WriteEntry(dir, je, t); err != nil {
		return err
	}
	d := filepath.Join(dir, e.uid[:2], e.uid)
	return filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		mt := t
		if e.kind == kindBook && de.Name() == "data" {
			mt = libraryTime.Add(time.Duration(e.book) * time.Hour)
		}
		return os.Chtimes(p, mt, mt)
	})
}

func (l *laptop) dataPath(e *entry) string {
	return filepath.Join(l.journal, e.uid[:2], e.uid, "data")
}

// mutate is one school day on one laptop.
func (s *school) mutate(l *laptop, k int) error {
	r := l.rng
	// New photos and recordings: none on half the days, sometimes two.
	nphotos := 0
	switch x := r.IntN(20); {
	case x >= 17:
		nphotos = 2
	case x >= 10:
		nphotos = 1
	}
	for range nphotos {
		if err := s.write(l, s.newPhoto(l), nil, when(r, k)); err != nil {
			return err
		}
	}
	for range 1 + r.IntN(2) {
		if err := s.write(l, s.newDoc(l), nil, when(r, k)); err != nil {
			return err
		}
	}
	// Small edits and appends to documents (night 1 always edits the
	// document that the benchmark restores from night 0).
	var docs []*entry
	for _, e := range l.entries {
		if e.kind == kindDoc {
			docs = append(docs, e)
		}
	}
	edits := 1 + r.IntN(2)
	for i := 0; i < edits && len(docs) > 0; i++ {
		e := docs[r.IntN(len(docs))]
		if k == 1 && i == 0 && l.protected != "" {
			for _, d := range docs {
				if d.uid == l.protected {
					e = d
				}
			}
		}
		b, err := os.ReadFile(l.dataPath(e))
		if err != nil {
			return err
		}
		if r.IntN(2) == 0 {
			b = append(b, journalgen.Text(r, 100+r.IntN(3000))...) // append a paragraph
		} else { // rewrite a sentence in the middle
			at := r.IntN(len(b))
			end := min(len(b), at+r.IntN(200))
			b = slices.Concat(b[:at], journalgen.Text(r, 20+r.IntN(200)), b[end:])
		}
		if err := s.write(l, e, b, when(r, k)); err != nil {
			return err
		}
	}
	// A few KB inserted in the middle of a large file (an edited recording
	// or a re-saved drawing), on about a third of the days.
	if r.IntN(3) == 0 {
		var big []*entry
		for _, e := range l.entries {
			if e.kind == kindPhoto && e.size > s.scaled(1<<20) {
				big = append(big, e)
			}
		}
		if len(big) > 0 {
			e := big[r.IntN(len(big))]
			b, err := os.ReadFile(l.dataPath(e))
			if err != nil {
				return err
			}
			mid := len(b) / 2
			b = slices.Concat(b[:mid], journalgen.Random(r, 2<<10+r.IntN(6<<10)), b[mid:])
			if err := s.write(l, e, b, when(r, k)); err != nil {
				return err
			}
		}
	}
	// Deletions: a child cleans the Journal up now and then.
	if r.IntN(3) == 0 {
		var cand []int
		for i, e := range l.entries {
			if e.kind != kindBook && e.uid != l.protected {
				cand = append(cand, i)
			}
		}
		if len(cand) > 0 {
			i := cand[r.IntN(len(cand))]
			e := l.entries[i]
			if err := os.RemoveAll(filepath.Join(l.journal, e.uid[:2], e.uid)); err != nil {
				return err
			}
			os.Remove(filepath.Join(l.journal, e.uid[:2])) // only if empty, as Sugar leaves it
			l.entries = slices.Delete(l.entries, i, i+1)
		}
	}
	// A new book or activity bundle from the school library.
	if r.IntN(5) == 0 {
		if _, err := s.addBook(l, k); err != nil {
			return err
		}
	}
	return nil
}

// reflash wipes l's Journal and starts a small new one, as after a reflash.
func (s *school) reflash(l *laptop, k int) error {
	if err := os.RemoveAll(l.journal); err != nil {
		return err
	}
	l.entries, l.books, l.reflashed = nil, map[int]bool{}, k
	return s.fill(l, k, s.scaled(3<<20), false)
}

// writeIndex rewrites the Xapian index, which every system leaves out but
// must still walk past: its size follows the number of entries.
func (s *school) writeIndex(l *laptop) error {
	dir := filepath.Join(l.journal, "index")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	n := 64<<10 + 4<<10*len(l.entries)
	for _, name := range []string{"postlist.DB", "termlist.DB", "record.DB", "iamchert"} {
		if name == "iamchert" {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("chert\n"), 0o644); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), journalgen.Random(l.rng, n/3), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fileState is what a quick check compares.
type fileState struct {
	size  int64
	mtime int64
}

// walkJournal lists the backed-up files of a Journal (the same exclusions
// as xs-backup) with their size and modification time.
func walkJournal(dir string) (map[string]fileState, int64, error) {
	files := map[string]fileState{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if backup.JournalExclude(rel, de.IsDir()) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !de.Type().IsRegular() {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		files[rel] = fileState{fi.Size(), fi.ModTime().UnixNano()}
		total += fi.Size()
		return nil
	})
	return files, total, err
}

// sameFile reports whether the file at path holds want.
func sameFile(path string, want []byte) error {
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: %d bytes differ from the %d bytes the generator wrote", path, len(got), len(want))
	}
	return nil
}

// excludeNames are the Journal's disposable top-level names, left out by
// every system (backup.JournalExclude).
var excludeNames = []string{"index", "index_updated", "ds_clean", "checksums"}
