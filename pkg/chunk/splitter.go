package chunk

import (
	"io"
)

// Splitter cuts a stream into content-defined chunks without holding the
// stream in memory. It reads the stream in blocks of 512 KiB and keeps one
// chunk buffer of [Params.MaxSize] bytes. A Splitter is not safe for
// concurrent use.
type Splitter struct {
	c   *rabin
	p   Params
	buf []byte
}

// NewSplitter returns a Splitter that reads from r and cuts with p.
// It returns an error if p is not valid.
func NewSplitter(r io.Reader, p Params) (*Splitter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return newSplitter(r, p), nil
}

// newSplitter is NewSplitter for already validated params.
func newSplitter(r io.Reader, p Params) *Splitter {
	return &Splitter{p: p, c: newRabin(r, p)}
}

// Next returns the bytes of the next chunk. They are valid until the next
// call to Next or Reset, which reuse the buffer. At the end of the stream Next
// returns io.EOF; an empty stream yields io.EOF at once. An error from the
// reader is returned as is; the Splitter must then be Reset before reuse.
func (s *Splitter) Next() ([]byte, error) {
	if s.buf == nil {
		s.buf = make([]byte, 0, s.p.MaxSize)
	}
	data, err := s.next(s.buf)
	if err != nil {
		return nil, err
	}
	s.buf = data[:0]
	return data, nil
}

// next cuts the next chunk into buf[:0]. With cap(buf) >= MaxSize it does not
// allocate.
func (s *Splitter) next(buf []byte) ([]byte, error) {
	return s.c.next(buf)
}

// Reset makes s cut a new stream read from r, with the same params.
func (s *Splitter) Reset(r io.Reader) {
	s.c.reset(r, s.p)
}
