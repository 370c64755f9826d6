package chunk_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// deterministicData returns n reproducible, incompressible-looking bytes.
func deterministicData(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x243F6A8885A308D3)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func ExampleSplit() {
	codec, err := chunk.NewCodec()
	if err != nil {
		log.Fatal(err)
	}
	defer codec.Close()

	data := deterministicData(4 << 20)
	var restored []byte
	n := 0
	err = chunk.Split(context.Background(), bytes.NewReader(data), chunk.DefaultParams(), codec, chunk.SplitOptions{},
		func(b chunk.Block) error {
			raw := b.Data
			if b.Compressed {
				var err error
				if raw, err = codec.Decompress(nil, b.Data, b.Length); err != nil {
					return err
				}
			}
			if chunk.Sum(raw) != b.ID || b.Offset != int64(len(restored)) {
				return fmt.Errorf("bad block at %d", b.Offset)
			}
			restored = append(restored, raw...)
			n++
			return nil
		})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("chunks:", n)
	fmt.Println("reassembled:", bytes.Equal(restored, data))
	// Output:
	// chunks: 68
	// reassembled: true
}

func ExampleSum() {
	id := chunk.Sum([]byte("hello, world\n"))
	fmt.Println(id)
	fmt.Println(id.Short())
	// Output:
	// 623a5460d841b6d1c13d080e85500e0043fd4ba4a8ba9c1aa9b4f6e0d212276c
	// 623a5460d841
}

func ExampleParseID() {
	id, err := chunk.ParseID("AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id == chunk.Sum(nil))
	fmt.Println(id)

	_, err = chunk.ParseID("af1349b9")
	fmt.Println(err)
	// Output:
	// true
	// af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262
	// chunk: invalid ID "af1349b9": length 8, want 64 hex digits
}

func ExampleSplitter() {
	s, err := chunk.NewSplitter(bytes.NewReader(deterministicData(1<<20)), chunk.DefaultParams())
	if err != nil {
		log.Fatal(err)
	}
	var n, total int
	for {
		data, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if n < 3 {
			fmt.Println(len(data), chunk.Sum(data).Short())
		}
		n++
		total += len(data)
	}
	fmt.Println(n, "chunks,", total, "bytes")
	// Output:
	// 80134 892bb3994c3c
	// 189643 15b1ce3559a6
	// 156590 72b86be57cb4
	// 14 chunks, 1048576 bytes
}
