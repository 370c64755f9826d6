// Package journalgen writes deterministic, Sugar-like Journal datastores for
// tests, the demo and the benchmarks: entries in the real layout
// (<2-char prefix>/<uid>/data and metadata/<key> files), a mix of
// incompressible media, compressible documents and "books" that many
// students share byte for byte, and an index/ directory that churns.
package journalgen

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options shape a generated Journal.
type Options struct {
	Seed    uint64
	Entries int // number of Journal entries
	// MediaBytes is the typical size of a photo/recording (incompressible).
	MediaBytes int
	// DocBytes is the typical size of a text document (compressible).
	DocBytes int
	// SharedBooks is how many entries are picked from the school-wide set
	// of books (identical across students with the same BookSeed).
	SharedBooks int
	BookSeed    uint64
	BookBytes   int
}

// Small returns options for a quick test Journal (~1-2 MB).
func Small(seed uint64) Options {
	return Options{Seed: seed, Entries: 12, MediaBytes: 96 << 10, DocBytes: 12 << 10, SharedBooks: 2, BookSeed: 42, BookBytes: 200 << 10}
}

var activities = []string{
	"org.laptop.WebActivity", "org.laptop.AbiWordActivity", "org.laptop.TurtleArtActivity",
	"org.laptop.Oficina", "org.laptop.RecordActivity", "org.laptop.sugar.ReadActivity",
	"org.laptop.Memorize", "org.sugarlabs.Music",
}

var titles = []string{
	"My drawing", "Mi dibujo", "Ma tortue", "Рисунок", "我的画", "Hadithi yangu", "Tarea de ciencias",
	"Photo of the school", "Canción", "Maze game", "العلوم", "Poema para mamá",
}

var words = strings.Fields("the a sun moon tree river school child book read write draw turtle square circle " +
	"music song play game learn teacher friend house garden rain water fish bird dog cat green blue red")

// Text returns n bytes of deterministic, compressible text.
func Text(r *rand.Rand, n int) []byte {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return []byte(b.String()[:n])
}

// Random returns n incompressible bytes.
func Random(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Book returns the i-th school-wide shared book (same bytes for every student).
func Book(bookSeed uint64, i, size int) []byte {
	r := rand.New(rand.NewPCG(bookSeed, uint64(i)))
	return append([]byte(fmt.Sprintf("%%PDF-1.4 book %d\n", i)), Random(r, size)...)
}

// Entry is one generated Journal entry.
type Entry struct {
	UID      string
	Title    string
	Activity string
	Mime     string
	Data     []byte
}

// Generate writes a Journal datastore under dir and returns its entries.
func Generate(dir string, o Options) ([]Entry, error) {
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	var ents []Entry
	for i := 0; i < o.Entries; i++ {
		e := Entry{UID: uid(r), Title: titles[r.IntN(len(titles))] + fmt.Sprintf(" %d", i+1), Activity: activities[r.IntN(len(activities))]}
		switch {
		case i < o.SharedBooks:
			e.Mime, e.Activity = "application/pdf", "org.laptop.sugar.ReadActivity"
			e.Title = fmt.Sprintf("Book %d", (int(o.Seed)+i)%max(1, o.SharedBooks*3))
			e.Data = Book(o.BookSeed, (int(o.Seed)+i)%max(1, o.SharedBooks*3), o.BookBytes)
		case r.IntN(3) == 0:
			e.Mime = "image/jpeg"
			e.Data = Random(r, o.MediaBytes/2+r.IntN(o.MediaBytes))
		default:
			e.Mime = "text/plain"
			e.Data = Text(r, o.DocBytes/2+r.IntN(o.DocBytes))
		}
		ents = append(ents, e)
		if err := WriteEntry(dir, e, time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Hour)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "index"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index", "postlist.DB"), Random(r, 32<<10), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte("6"), 0o644); err != nil {
		return nil, err
	}
	return ents, nil
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

// WriteEntry writes one entry in the datastore layout.
func WriteEntry(dir string, e Entry, t time.Time) error {
	d := filepath.Join(dir, e.UID[:2], e.UID)
	if err := os.MkdirAll(filepath.Join(d, "metadata"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "data"), e.Data, 0o644); err != nil {
		return err
	}
	meta := map[string]string{
		"title": e.Title, "activity": e.Activity, "mime_type": e.Mime, "uid": e.UID,
		"timestamp": fmt.Sprint(t.Unix()), "mtime": t.Format("2006-01-02T15:04:05.000000"),
		"filesize": fmt.Sprint(len(e.Data)), "keep": "0", "title_set_by_user": "1",
	}
	for k, v := range meta {
		if err := os.WriteFile(filepath.Join(d, "metadata", k), []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Mutate applies one day of change: edits a document in place, appends to
// another, adds an entry, deletes one, and rewrites the index.
func Mutate(dir string, seed uint64, day int) error {
	r := rand.New(rand.NewPCG(seed, uint64(day)+1000))
	var datas []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			datas = append(datas, p)
		}
		return nil
	})
	if len(datas) > 0 {
		// An edit in the middle of a file.
		p := datas[r.IntN(len(datas))]
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mid := len(b) / 2
		nb := append(append(append([]byte{}, b[:mid]...), Text(r, 100)...), b[mid:]...)
		if err := os.WriteFile(p, nb, 0o644); err != nil {
			return err
		}
	}
	e := Entry{UID: uid(r), Title: fmt.Sprintf("Day %d work", day), Activity: activities[r.IntN(len(activities))], Mime: "text/plain", Data: Text(r, 4000+r.IntN(8000))}
	if err := WriteEntry(dir, e, time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC).AddDate(0, 0, day)); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index", "postlist.DB"), Random(r, 32<<10), 0o644)
}
