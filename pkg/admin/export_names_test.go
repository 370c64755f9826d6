package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// TestExportNonUTF8Name: a laptop's Journal with one file whose name is
// not UTF-8 (a Latin-1 name, as a USB stick or an old activity leaves: Linux
// names are bytes, and the backup keeps them) backs up, and xo-backup's
// restore (Store.Restore) brings it back. `xs-admin restore SERIAL --to
// DIR` (Export as tar, then ExtractTar) and `--tar FILE` must too: the
// whole export may not fail because of one name, leaving staff with
// nothing.
func TestExportNonUTF8Name(t *testing.T) {
	ctx := context.Background()
	svc, s := newService(t)
	u, _ := s.UserBySerial("SHC1")
	src := t.TempDir()
	gen, err := journalgen.Generate(src, journalgen.Small(5))
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(src, gen[0].UID[:2], gen[0].UID, "metadata", "descripci\xf3n")
	if err := os.WriteFile(odd, []byte("latin-1 key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()}); err != nil {
		t.Fatal(err)
	}
	sn, _ := s.Snapshot(u.ID, "latest")

	// xo-backup's path restores it.
	if _, err := s.Restore(ctx, sn, t.TempDir(), store.RestoreOptions{}); err != nil {
		t.Fatalf("Store.Restore: %v", err)
	}
	// xs-admin's path: Export as tar, then extract.
	var buf bytes.Buffer
	err = svc.Export(ctx, admin.ExportRequest{Serial: "SHC1", Format: admin.FormatTar}, func(int64) {}, &buf)
	if err != nil {
		t.Fatalf("export of a snapshot with a non-UTF-8 name: %v", err)
	}
	out := t.TempDir()
	if _, err := restore.ExtractTar(bytes.NewReader(buf.Bytes()), out, false, nil); err != nil {
		t.Fatalf("extract of the export: %v", err)
	}
	rel, _ := filepath.Rel(src, odd)
	if b, err := os.ReadFile(filepath.Join(out, rel)); err != nil || string(b) != "latin-1 key" {
		t.Errorf("the file with the non-UTF-8 name: %q %v", b, err)
	}
	for _, e := range gen {
		if _, err := os.Stat(filepath.Join(out, e.UID[:2], e.UID, "data")); err != nil {
			t.Errorf("entry %s not restored: %v", e.UID, err)
		}
	}
	// The single entry alone (--entry UID) too.
	buf.Reset()
	err = svc.Export(ctx, admin.ExportRequest{Serial: "SHC1", Format: admin.FormatTar, Entries: []string{gen[0].UID}}, func(int64) {}, &buf)
	if err != nil {
		t.Errorf("export of the entry holding a non-UTF-8 name: %v", err)
	}
	io.Copy(io.Discard, &buf)
}

// TestExportNamesUniqueIgnoringCase: `xs-admin restore SERIAL --xoj
// /media/usb` (or --raw) names each file after its entry's title, made
// unique by "-2", "-3"... and already safe for Windows and FAT (no
// "*:<>?|, no device names): the help's own example writes to a USB
// stick. Such a stick ignores case, so "Mi dibujo.xoj" and "mi dibujo.xoj"
// are one file there: ExtractTar then stops the restore ("file exists"),
// or with --overwrite keeps only the last of them. The names must differ
// ignoring case.
func TestExportNamesUniqueIgnoringCase(t *testing.T) {
	ctx := context.Background()
	svc, s := newService(t)
	u, _ := s.UserBySerial("SHC1")
	src := t.TempDir()
	for i, title := range []string{"Mi dibujo", "mi dibujo", "MI DIBUJO", "Mi dibujo-2", "Canción", "CANCIÓN"} {
		uid := fmt.Sprintf("c%07d-0000-4000-8000-000000000000", i)
		if err := journalgen.WriteEntry(src, journalgen.Entry{UID: uid, Title: title, Activity: "org.laptop.Oficina",
			Mime: "image/png", Data: []byte("drawing " + uid)}, time.Date(2026, 9, 1, 8, i, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()}); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{admin.FormatXOJ, admin.FormatRaw} {
		var buf bytes.Buffer
		if err := svc.Export(ctx, admin.ExportRequest{Serial: "SHC1", Format: format}, func(int64) {}, &buf); err != nil {
			t.Fatal(err)
		}
		files := readTar(t, buf.Bytes())
		if len(files) != 6 {
			t.Fatalf("%s: %d files", format, len(files))
		}
		seen := map[string]string{}
		for name := range files {
			k := strings.ToLower(name)
			if o, ok := seen[k]; ok {
				t.Errorf("%s: %q and %q are one file on a USB stick (FAT, exFAT, NTFS, macOS)", format, o, name)
			}
			seen[k] = name
		}
	}
}
