package bundle

import "github.com/zeebo/blake3"

func blake3Sum(b []byte) []byte {
	s := blake3.Sum256(b)
	return s[:]
}
