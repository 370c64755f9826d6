package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/errkind"
)

// writePieces writes a bundle of blobs and testMetas into dir in pieces and
// returns the files and the bundle as one stream would have been.
func writePieces(t testing.TB, dir string, pieceSize int64, key ed25519.PrivateKey, blobs []blob.Blob) ([]string, Header) {
	t.Helper()
	fw, err := CreateFiles(dir, "school", pieceSize, Header{Kind: KindSchool, For: "Escuela 12", Created: testCreated}, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if err := fw.Blob(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range testMetas {
		if err := fw.Meta(m.name, m.data); err != nil {
			t.Fatal(err)
		}
	}
	files, err := fw.Close()
	if err != nil {
		t.Fatal(err)
	}
	return files, fw.Header()
}

// readAll verifies and reads the bundle held by the pieces in paths.
func readAll(paths ...string) ([]blob.Blob, *Header, error) {
	rc, _, err := OpenFiles(paths...)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	var got []blob.Blob
	h, err := Read(rc, trustAll, func(b blob.Blob) error { got = append(got, b); return nil }, nil)
	return got, h, err
}

func checkBlobs(t *testing.T, got, want []blob.Blob) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d blobs, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Ref != want[i].Ref || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("blob %d differs", i)
		}
	}
}

func TestPiecesSplitAndJoin(t *testing.T) {
	key := testKey(1)
	blobs := testBlobs(t, 10)
	for _, size := range []int64{0, MinPieceSize, 5000, 10007, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := t.TempDir()
			files, h := writePieces(t, dir, size, key, blobs)
			var total int64
			for i, f := range files {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if size > 0 && fi.Size() > size {
					t.Errorf("%s is %d bytes, over %d", f, fi.Size(), size)
				}
				want := fmt.Sprintf("school-%x-%03d.xsb", h.ID[:], i+1)
				if filepath.Base(f) != want {
					t.Errorf("piece %d named %s, want %s", i, filepath.Base(f), want)
				}
				total += fi.Size() - pieceHdrLen
			}
			if size == 0 && len(files) != 1 || size == MinPieceSize && len(files) < 5 {
				t.Errorf("%d pieces of %d bytes", len(files), size)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != len(files) {
				t.Errorf("%d files in the directory, %d pieces: a temporary file was left", len(ents), len(files))
			}

			// Shuffle the pieces into two directories ("two sticks").
			dir2 := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(size), 2))
			for _, f := range files {
				if rng.IntN(2) == 0 {
					if err := os.Rename(f, filepath.Join(dir2, filepath.Base(f))); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, gh, err := readAll(dir2, dir)
			if err != nil {
				t.Fatal(err)
			}
			if gh.ID != h.ID {
				t.Errorf("read bundle %x, wrote %x", gh.ID, h.ID)
			}
			checkBlobs(t, got, blobs)
			rc, set, err := OpenFiles(dir, dir2)
			if err != nil {
				t.Fatal(err)
			}
			_, sum, err := Verify(rc, trustAll)
			rc.Close()
			if err != nil || sum.Size != total || len(set.Pieces) != len(files) {
				t.Errorf("Verify: %v, %d bytes in %d pieces, want %d in %d", err, sum.Size, len(set.Pieces), total, len(files))
			}
		})
	}
}

// piecesFixture writes a bundle in 5000-byte pieces and returns the
// directory, the files and the blobs.
func piecesFixture(t *testing.T) (string, []string, []blob.Blob) {
	dir := t.TempDir()
	blobs := testBlobs(t, 11)
	files, _ := writePieces(t, dir, 5000, testKey(1), blobs)
	if len(files) < 4 {
		t.Fatalf("only %d pieces", len(files))
	}
	return dir, files, blobs
}

func TestPieceMissing(t *testing.T) {
	dir, files, _ := piecesFixture(t)
	os.Remove(files[2])
	_, _, err := readAll(dir)
	want := fmt.Sprintf("piece 3 of %d is missing", len(files))
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, errkind.ErrDamaged) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	t.Log(err)
}

func TestLastPieceMissing(t *testing.T) {
	dir, files, _ := piecesFixture(t)
	os.Remove(files[len(files)-1])
	_, _, err := readAll(dir)
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "last piece is missing") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
	os.Remove(files[1])
	_, _, err = readAll(dir)
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "piece 2 is missing") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPieceDuplicated(t *testing.T) {
	dir, files, blobs := piecesFixture(t)
	dir2 := t.TempDir()
	copyFile(t, files[1], filepath.Join(dir2, "copy.xsb"))
	got, _, err := readAll(dir, dir2, files[1])
	if err != nil {
		t.Fatal(err)
	}
	checkBlobs(t, got, blobs)

	// A damaged copy on one stick and a good one on another: the good one
	// is used, whichever is found first.
	b, _ := os.ReadFile(files[1])
	b[len(b)-1] ^= 1
	os.WriteFile(filepath.Join(dir2, "copy.xsb"), b, 0o644)
	for _, order := range [][]string{{dir, dir2}, {dir2, dir}} {
		got, _, err := readAll(order...)
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		checkBlobs(t, got, blobs)
	}
	// Both damaged: refused.
	orig, _ := os.ReadFile(files[1])
	os.WriteFile(files[1], b, 0o644)
	_, _, err = readAll(dir, dir2)
	if !errors.Is(err, errkind.ErrDamaged) || !strings.Contains(err.Error(), "every copy of piece 2") {
		t.Fatalf("both damaged: %v", err)
	}
	t.Log(err)
	os.WriteFile(files[1], orig, 0o644)

	// A different, intact file claiming the same place is refused.
	b[len(b)-1] ^= 2
	h := blake3.New()
	h.Write(b[pieceHdrLen:])
	h.Write(b[:pieceFixedLen])
	copy(b[pieceFixedLen:], h.Sum(nil))
	os.WriteFile(filepath.Join(dir2, "copy.xsb"), b, 0o644)
	_, _, err = readAll(dir, dir2)
	if !errors.Is(err, errkind.ErrDamaged) || !strings.Contains(err.Error(), "two different files claim to be piece 2") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func TestPieceOfAnotherBundle(t *testing.T) {
	dir, _, _ := piecesFixture(t)
	other := t.TempDir()
	ofiles, oh := writePieces(t, other, 5000, testKey(1), testBlobs(t, 12))
	copyFile(t, ofiles[1], filepath.Join(dir, "stray.xsb"))
	_, _, err := readAll(dir)
	if !errors.Is(err, errkind.ErrBadRequest) || !strings.Contains(err.Error(), "2 different bundles") || !strings.Contains(err.Error(), oh.IDString()) {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
	sets, err := ScanPieces(dir)
	if err != nil || len(sets) != 2 {
		t.Fatalf("ScanPieces: %d sets, %v", len(sets), err)
	}
	// The complete one opens; the stray one is incomplete.
	for _, s := range sets {
		rc, err := s.Open()
		if s.ID == oh.ID {
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("stray set: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Verify(rc, trustAll); err != nil {
			t.Error(err)
		}
		rc.Close()
	}
}

func TestPieceTruncated(t *testing.T) {
	dir, files, _ := piecesFixture(t)
	if err := os.Truncate(files[2], 3000); err != nil {
		t.Fatal(err)
	}
	_, _, err := readAll(dir)
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "piece 3") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
	os.Truncate(files[2], 20)
	if _, _, err := readAll(dir); !errors.Is(err, ErrTruncated) {
		t.Fatalf("header cut: %v", err)
	}
}

func TestPieceRenamed(t *testing.T) {
	dir, files, blobs := piecesFixture(t)
	// Names swapped and changed: content decides.
	tmp := filepath.Join(dir, "x")
	os.Rename(files[0], tmp)
	os.Rename(files[3], files[0])
	os.Rename(tmp, filepath.Join(dir, "stick-a.bin"))
	got, _, err := readAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkBlobs(t, got, blobs)
}

func TestPieceDamaged(t *testing.T) {
	dir, files, _ := piecesFixture(t)
	b, _ := os.ReadFile(files[1])
	b[pieceHdrLen+100] ^= 0x10
	os.WriteFile(files[1], b, 0o644)
	_, _, err := readAll(dir)
	if !errors.Is(err, errkind.ErrDamaged) {
		t.Fatalf("got %v", err)
	}
	t.Log(err)

	// A flip in the piece header's index is caught by the hash too.
	dir, files, _ = piecesFixture(t)
	b, _ = os.ReadFile(files[1])
	b[26] ^= 0x40
	os.WriteFile(files[1], b, 0o644)
	if _, _, err = readAll(dir); !errors.Is(err, errkind.ErrDamaged) {
		t.Fatalf("index flip: %v", err)
	}
	t.Log(err)
}

func TestNotPieces(t *testing.T) {
	dir, _, blobs := piecesFixture(t)
	os.WriteFile(filepath.Join(dir, "README.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(dir, ".school-x.xsb.tmp-123"), make([]byte, 200), 0o644) // an interrupted write
	got, _, err := readAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkBlobs(t, got, blobs)
	if _, _, err := readAll(filepath.Join(dir, "README.txt")); !errors.Is(err, errkind.ErrBadRequest) {
		t.Errorf("explicit non-piece: %v", err)
	}
	if _, _, err := readAll(t.TempDir()); !errors.Is(err, errkind.ErrNotFound) {
		t.Errorf("empty directory: %v", err)
	}
}

// failAfter fails every write after n bytes.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestCreateFilesCleansUp(t *testing.T) {
	dir := t.TempDir()
	fw, err := CreateFiles(dir, "school", 5000, Header{Kind: KindSchool}, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range testBlobs(t, 13)[:2] {
		if err := fw.Blob(b); err != nil {
			t.Fatal(err)
		}
	}
	fw.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d files left after Abort", len(ents))
	}
	if _, err := CreateFiles(dir, "a/b", 0, Header{Kind: KindSchool}, testKey(1)); err == nil {
		t.Error("prefix with a slash accepted")
	}
	if _, err := CreateFiles(dir, "a", 100, Header{Kind: KindSchool}, testKey(1)); err == nil {
		t.Error("tiny piece size accepted")
	}
	// A writer failing mid-bundle: the stream writer reports it.
	w, err := NewWriter(&failAfter{n: 5000}, Header{Kind: KindSchool}, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range testBlobs(t, 14) {
		w.Blob(b)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Close after a failed write: %v", err)
	}
}

func ExampleCreateFiles() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	dir, err := os.MkdirTemp("", "sticks")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	fw, err := CreateFiles(dir, "escuela12", MinPieceSize, Header{Kind: KindSchool, For: "Escuela 12"}, key)
	if err != nil {
		panic(err)
	}
	if err := fw.Meta("registry.json", bytes.Repeat([]byte("x"), 10000)); err != nil {
		panic(err)
	}
	files, err := fw.Close()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(files), "pieces")

	// On the mothership, from wherever the pieces were copied:
	rc, set, err := OpenFiles(dir)
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	_, err = Read(rc, Trust(KindSchool, key.Public().(ed25519.PublicKey)), nil,
		func(name string, data []byte) error { fmt.Println(name, len(data)); return nil })
	fmt.Println(len(set.Pieces), err)
	_ = io.Discard
	// Output:
	// 3 pieces
	// registry.json 10000
	// 3 <nil>
}
