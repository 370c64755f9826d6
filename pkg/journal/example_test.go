package journal_test

import (
	"fmt"
	"os"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/journal"
)

// Read a Journal (here a generated one) and show what a child would look
// for: when, with which activity, the title, and the name of the file they
// get back (a title in a script with no ASCII spelling is named after
// the entry's uid).
func ExampleRead() {
	dir, err := os.MkdirTemp("", "journal-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if _, err := journalgen.Generate(dir, journalgen.Small(4)); err != nil {
		panic(err)
	}

	entries, err := journal.Read(os.DirFS(dir))
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		fmt.Printf("%s  %-9s  %-26s  %s\n", e.Time.Format("2006-01-02 15:04"), journal.ActivityName(e.Activity), journal.FileName(e), e.Title)
	}
	// Output:
	// 2026-09-01 19:00  Write      Maze game 12.txt            Maze game 12
	// 2026-09-01 18:00  Write      Mi dibujo 11.txt            Mi dibujo 11
	// 2026-09-01 17:00  Memorize   Cancion 10.jpg              Canción 10
	// 2026-09-01 16:00  Memorize   Tarea de ciencias 9.txt     Tarea de ciencias 9
	// 2026-09-01 15:00  Record     Mi dibujo 8.jpg             Mi dibujo 8
	// 2026-09-01 14:00  Music      document-7bf70309-7.txt     العلوم 7
	// 2026-09-01 13:00  Paint      document-64d48b05-6.txt     العلوم 6
	// 2026-09-01 12:00  Browse     Risunok 5.txt               Рисунок 5
	// 2026-09-01 11:00  Write      Hadithi yangu 4.txt         Hadithi yangu 4
	// 2026-09-01 10:00  TurtleArt  document-2f7c6d2e-3.jpg     我的画 3
	// 2026-09-01 09:00  Read       Book 5.pdf                  Book 5
	// 2026-09-01 08:00  Read       Book 4.pdf                  Book 4
}
