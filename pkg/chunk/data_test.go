package chunk

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
)

// The generators below use only PCG.Uint64, whose output for a given seed is
// fixed by its specification, so the data (and the golden values derived from
// it) cannot change with the Go version.

// randomData returns n pseudo-random bytes.
func randomData(seed uint64, n int) []byte {
	src := rand.NewPCG(seed, 0x9e3779b97f4a7c15)
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], src.Uint64())
	}
	return b[:n:n]
}

// textData returns n bytes of text-like data: English function words and
// syllable-built words with a skewed frequency, punctuation and line breaks.
// It compresses about like natural language text (2-3x with zstd fastest).
func textData(seed uint64, n int) []byte {
	src := rand.NewPCG(seed, 0x2545f4914f6cdd1d)
	common := strings.Fields(`the of and to a in is it you that he was for on are
		with as I his they be at one have this from or had by word but what some we
		can out other were all there when up use your how said an each she which do
		their time if will way about many then them write would like so these her
		long make thing see him two has look more day could go come did number sound
		no most people my over know water than call first who may down side been now
		find any new work part take get place made live where after back little only
		round man year came show every good me give our under name very through just
		form sentence great think say help low line differ turn cause much mean
		before move right boy old too same tell does set three want air well also
		play small end put home read hand port large spell add even land here must
		big high such follow act why ask men change went light kind off need house
		picture try us again animal point mother world near build self earth father`)
	syll := strings.Fields(`ba be bi bo bu ka ke ki ko ku la le li lo lu ma me mi mo
		mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu an en in on un
		ar er ir or ur st tr pl gr ch sh th ng`)
	vocab := make([]string, 2048)
	for i := range vocab {
		var w []byte
		for range 1 + src.Uint64()%4 {
			w = append(w, syll[src.Uint64()%uint64(len(syll))]...)
		}
		vocab[i] = string(w)
	}
	b := make([]byte, 0, n+64)
	col := 0
	for len(b) < n {
		u := src.Uint64()
		var w string
		if u%5 < 3 {
			// The minimum of two uniform indices favours the first words.
			w = common[min((u>>3)%uint64(len(common)), (u>>13)%uint64(len(common)))]
		} else {
			w = vocab[min((u>>3)&2047, (u>>14)&2047, (u>>25)&2047)]
		}
		if (u>>40)%13 == 0 && w[0] >= 'a' {
			b = append(b, w[0]-'a'+'A')
			b = append(b, w[1:]...)
		} else {
			b = append(b, w...)
		}
		col += len(w) + 1
		switch {
		case (u>>48)%17 == 0:
			b = append(b, '.', ' ')
		case (u>>48)%11 == 0:
			b = append(b, ',', ' ')
		case col > 72:
			b = append(b, '\n')
			col = 0
		default:
			b = append(b, ' ')
		}
	}
	return b[:n:n]
}

var (
	benchOnce   sync.Once
	benchRandom []byte
	benchText   []byte
)

// benchData returns 64 MiB of random and of text-like data, generated once.
func benchData() (random, text []byte) {
	benchOnce.Do(func() {
		benchRandom = randomData(100, 64<<20)
		benchText = textData(101, 64<<20)
	})
	return benchRandom, benchText
}

// randReader returns data in reads of random length, including empty reads.
type randReader struct {
	data []byte
	rng  *rand.PCG
	max  int
}

func newRandReader(data []byte, seed uint64, max int) *randReader {
	return &randReader{data: data, rng: rand.NewPCG(seed, 7), max: max}
}

func (r *randReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := int(r.rng.Uint64() % uint64(r.max+1)) // may be 0
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// chunkRec is a chunk as recorded by tests.
type chunkRec struct {
	Off int64
	Len int
	ID  ID
}

// splitAll runs a Splitter over r and returns the chunks and their
// concatenation.
func splitAll(r io.Reader, p Params) ([]chunkRec, []byte, error) {
	s, err := NewSplitter(r, p)
	if err != nil {
		return nil, nil, err
	}
	var recs []chunkRec
	var all []byte
	var off int64
	for {
		data, err := s.Next()
		if err == io.EOF {
			return recs, all, nil
		}
		if err != nil {
			return recs, all, err
		}
		recs = append(recs, chunkRec{Off: off, Len: len(data), ID: Sum(data)})
		all = append(all, data...)
		off += int64(len(data))
	}
}
