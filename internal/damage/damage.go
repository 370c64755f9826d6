// Package damage damages a store on disk the way a failing disk would, for
// tests: it flips bytes inside the pack record of a chosen blob.
package damage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// Record flips a byte in the middle of the stored data of every pack record
// of blob id under the store directory dir (see the record layout in
// pkg/store/pack.go: "XSR1", type, flags, 0, stored u32, raw u32, id, crc,
// data). It returns how many records it damaged.
func Record(dir string, id chunk.ID) (int, error) {
	packs, err := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err != nil {
			return n, err
		}
		changed := false
		for off := 0; ; {
			i := bytes.Index(b[off:], id[:])
			if i < 0 {
				break
			}
			at := off + i
			off = at + 1
			start := at - 16 // the record header
			if start < 0 || !bytes.Equal(b[start:start+4], []byte("XSR1")) {
				continue
			}
			stored := int(binary.LittleEndian.Uint32(b[start+8:]))
			data := start + 52
			if stored == 0 || data+stored > len(b) {
				continue
			}
			b[data+stored/2] ^= 0x5a
			changed = true
			n++
		}
		if changed {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return n, err
			}
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("damage: no pack record of %s under %s", id.Short(), dir)
	}
	return n, nil
}
