package admin_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xs-backup/xs-backup/internal/damage"
	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// readTar returns the regular files of a tar stream, failing on a
// malformed or cut archive.
func readTar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("archive is not well-formed: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("archive entry %s: %v", h.Name, err)
			}
			out[h.Name] = data
		}
	}
}

// TestExportGoesOnAfterRealDamage damages the data of two Journal entries in
// the pack files (one also damaged in the older snapshot, one changed since
// and intact there) and exports the latest snapshot through the daemon's
// admin socket in every format: each archive is well-formed and holds
// every intact entry byte for byte, the damaged ones are absent, and the
// client gets the exact list with the older intact snapshot (not a bare
// EOF).
func TestExportGoesOnAfterRealDamage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.AddUser(ctx, store.NewUser{Serial: "EXP1", Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	o := journalgen.Small(3)
	o.Entries = 8
	gen, err := journalgen.Generate(src, o)
	if err != nil {
		t.Fatal(err)
	}
	run := func() string {
		res, err := backup.Run(ctx, src, s.Target(u.ID, store.CommitInfo{}), backup.Options{Params: s.Params()})
		if err != nil {
			t.Fatal(err)
		}
		return res.Snapshot
	}
	older := run()
	changed := filepath.Join(src, gen[1].UID[:2], gen[1].UID, "data")
	if err := os.WriteFile(changed, []byte("a new version of this document, not in the older backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	run()
	sn, _ := s.Snapshot(u.ID, "latest")
	ents, err := journal.Read(os.DirFS(src))
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[string]journal.Entry{}
	for _, e := range ents {
		byUID[e.UID] = e
	}
	bad := []journal.Entry{byUID[gen[0].UID], byUID[gen[1].UID]}
	for _, e := range bad {
		fe, err := s.Lookup(ctx, sn.Root, e.DataPath)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := damage.Record(dir, fe.Chunks[0]); err != nil {
			t.Fatal(err)
		}
		if s, err = store.Open(ctx, dir, store.Options{Reserve: -1}); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Close()
	isBad := func(uid string) bool { return uid == gen[0].UID || uid == gen[1].UID }

	c := serve(t, &admin.Service{S: s, Live: true})

	for _, format := range []string{admin.FormatTar, admin.FormatXOJ, admin.FormatRaw} {
		var buf bytes.Buffer
		err := c.Export(ctx, admin.ExportRequest{Serial: "EXP1", Format: format}, func(_ int64, r io.Reader) error {
			_, err := io.Copy(&buf, r)
			return err
		})
		var de *restore.DamagedError
		if !errors.As(err, &de) || !errors.Is(err, blob.ErrDamaged) {
			t.Fatalf("%s export of a damaged snapshot: %v", format, err)
		}
		files := readTar(t, buf.Bytes())
		var wantBad, gotBad []string
		name := func(e journal.Entry) string {
			switch format {
			case admin.FormatXOJ:
				return journal.UnicodeBundleName(e)
			case admin.FormatRaw:
				return journal.UnicodeFileName(e)
			}
			return e.DataPath
		}
		for _, e := range bad {
			wantBad = append(wantBad, name(e))
		}
		for _, d := range de.Files {
			gotBad = append(gotBad, d.Path)
			wantOlder := ""
			if d.Path == name(bad[1]) {
				wantOlder = older
			}
			if d.OlderSnapshot != wantOlder {
				t.Errorf("%s: %s: older intact snapshot %q, want %q", format, d.Path, d.OlderSnapshot, wantOlder)
			}
		}
		slices.Sort(wantBad)
		slices.Sort(gotBad)
		if !slices.Equal(gotBad, wantBad) {
			t.Fatalf("%s: left out %v, want %v", format, gotBad, wantBad)
		}
		for _, g := range gen {
			e := byUID[g.UID]
			want, _ := os.ReadFile(filepath.Join(src, filepath.FromSlash(e.DataPath)))
			got, ok := files[name(e)]
			if format == admin.FormatXOJ && ok {
				zr, err := zip.NewReader(bytes.NewReader(got), int64(len(got)))
				if err != nil {
					t.Fatalf("bundle %s: %v", name(e), err)
				}
				f, err := zr.Open(e.UID + "/" + e.UID)
				if err != nil {
					t.Fatalf("bundle %s: %v", name(e), err)
				}
				got, err = io.ReadAll(f)
				if err != nil {
					t.Fatalf("bundle %s: %v", name(e), err)
				}
			}
			switch {
			case isBad(g.UID):
				if ok {
					t.Errorf("%s: damaged entry %s is in the archive", format, name(e))
				}
			case !ok:
				t.Errorf("%s: intact entry %s missing from the archive", format, name(e))
			case !bytes.Equal(got, want):
				t.Errorf("%s: entry %s has wrong bytes", format, name(e))
			}
		}
	}
}
