package journal_test

import (
	"bytes"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// TestListingMemoryIsBounded: Read caps one entry's metadata at 1 MiB
// and the entries at MaxEntries (100,000), but nothing caps their product.
// A snapshot costs nothing to make so: every entry's metadata files hold
// the same 64 KiB chunk (deduplicated, the store keeps it once), and the
// entries' trees can even be one tree. The restore page lists a Journal on
// every view of a backup (a listing over the 64 MiB cache is never kept, so
// on every download too), as does `xs-admin ls`: a child's own backup of a
// few MB then makes xs-backupd hold up to 100,000 × 1 MiB = ~100 GiB.
// Here 96 such entries, shared bytes in memory; the listing should not
// hold more than the page's whole cache (64 MiB) of metadata.
func TestListingMemoryIsBounded(t *testing.T) {
	value := bytes.Repeat([]byte("x"), 64<<10) // under the per-value cap
	fsys := fstest.MapFS{}
	const entries = 96
	for i := range entries {
		uid := fmt.Sprintf("aa%06d-0000-4000-8000-000000000000", i)
		dir := "aa/" + uid
		fsys[dir+"/data"] = &fstest.MapFile{Data: []byte("doc")}
		fsys[dir+"/metadata/title"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("Entry %d", i))}
		for k := range 16 {
			fsys[fmt.Sprintf("%s/metadata/k%02d", dir, k)] = &fstest.MapFile{Data: value} // the same bytes
		}
	}
	ents, err := journal.Read(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != entries {
		t.Fatalf("%d entries listed, want %d", len(ents), entries)
	}
	var held int64
	for _, e := range ents {
		for k, v := range e.Metadata {
			held += int64(len(k) + len(v))
		}
	}
	t.Logf("%d entries hold %.1f MiB of metadata", len(ents), float64(held)/(1<<20))
	if held > 64<<20 {
		t.Fatalf("a listing of %d entries holds %.0f MiB of metadata read from one 64 KiB chunk: "+
			"at journal.MaxEntries that is ~%.0f GiB", entries, float64(held)/(1<<20),
			float64(held)/entries*journal.MaxEntries/(1<<30))
	}
}
