package server_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/internal/damage"
	"github.com/xs-backup/xs-backup/pkg/agent"
	"github.com/xs-backup/xs-backup/pkg/backup"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/journal"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/restore"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// damagedLaptop backs up a laptop twice (changing one document in
// between), then damages in the daemon's pack files a chunk in the middle
// of a large file (in both snapshots) and the chunk of the changed
// document (only in the newer one). It returns the laptop, the older
// snapshot and the paths of the two damaged files.
func damagedLaptop(t *testing.T, d *server.Daemon) (l *laptop, older string, big, changed string) {
	t.Helper()
	ctx := context.Background()
	l = newLaptop(t, d, "ROT-QUIC", 41)
	big, changed = "zz/bigfile/data", "zz/changed/data"
	r := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, 6<<20)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for p, data := range map[string][]byte{big: b, changed: []byte("first version of the story")} {
		full := filepath.Join(l.src, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	older = l.run(t).Backup.Snapshot
	if err := os.WriteFile(filepath.Join(l.src, filepath.FromSlash(changed)), []byte("second version of the story, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.run(t)
	u, err := d.Store.UserBySerial(l.serial)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := d.Store.Snapshot(u.ID, "latest")
	var ids []chunk.ID
	for _, p := range []string{big, changed} {
		e, err := d.Store.Lookup(ctx, sn.Root, p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.Chunks[len(e.Chunks)/2])
	}
	for _, id := range ids {
		if _, err := damage.Record(d.Config.Data, id); err != nil {
			t.Fatal(err)
		}
	}
	return l, older, big, changed
}

// TestLaptopRestoreGoesOnOverQUIC: the laptop's restore over QUIC from a
// store with real damage writes every intact file byte for byte, never a
// short file under a real name nor a temporary, and lists the two damaged
// files with the older backup that holds an intact copy of one of them.
func TestLaptopRestoreGoesOnOverQUIC(t *testing.T) {
	d := startDaemon(t, nil)
	l, older, big, changed := damagedLaptop(t, d)
	out := t.TempDir()
	res, _, err := agent.Restore(context.Background(), l.st, agent.RestoreOptions{Target: out})
	var de *restore.DamagedError
	if !errors.As(err, &de) || !errors.Is(err, blob.ErrDamaged) {
		t.Fatalf("restore of a damaged snapshot: %v", err)
	}
	want := []restore.DamagedFile{{Path: big}, {Path: changed, OlderSnapshot: older}}
	if len(res.Damaged) != 2 {
		t.Fatalf("damaged %+v, want %+v", res.Damaged, want)
	}
	for i, w := range want {
		if g := res.Damaged[i]; g.Path != w.Path || g.OlderSnapshot != w.OlderSnapshot || g.Dir {
			t.Errorf("damaged[%d] = %+v, want %+v", i, g, w)
		}
	}
	files := 0
	filepath.WalkDir(l.src, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(l.src, p)
		rel = filepath.ToSlash(rel)
		if backup.JournalExclude(rel, false) {
			return nil
		}
		got, gerr := os.ReadFile(filepath.Join(out, rel))
		if rel == big || rel == changed {
			if gerr == nil {
				t.Errorf("damaged %s written (%d bytes)", rel, len(got))
			}
			return nil
		}
		want, _ := os.ReadFile(p)
		if gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("intact %s not restored byte for byte: %v", rel, gerr)
		}
		files++
		return nil
	})
	if int64(files) != res.Files {
		t.Errorf("%d intact files compared, the result says %d restored", files, res.Files)
	}
	filepath.WalkDir(out, func(p string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), ".xs-restore-") {
			t.Errorf("temporary left behind: %s", p)
		}
		return nil
	})
	// The older snapshot it names restores that file intact.
	out2 := t.TempDir()
	if _, _, err := agent.Restore(context.Background(), l.st, agent.RestoreOptions{Snapshot: older, Target: out2, Paths: []string{changed}}); err != nil {
		t.Fatalf("restore of the named older snapshot: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out2, changed)); err != nil || string(b) != "first version of the story" {
		t.Fatalf("older copy: %q %v", b, err)
	}
}

// TestRestorePageRefusesDamagedDownload: a document whose data is damaged
// in the pack files is answered with an error page and status before any
// byte of it (never a cut download served as complete); an intact one
// downloads byte for byte.
func TestRestorePageRefusesDamagedDownload(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.RestorePage.Listen = "" })
	l := newLaptop(t, d, "WEBROT", 5)
	l.run(t)
	ents, err := journal.Read(os.DirFS(l.src))
	if err != nil || len(ents) < 2 {
		t.Fatalf("%d entries: %v", len(ents), err)
	}
	bad, good := ents[0], ents[1]
	u, _ := d.Store.UserBySerial(l.serial)
	sn, _ := d.Store.Snapshot(u.ID, "latest")
	e, err := d.Store.Lookup(context.Background(), sn.Root, bad.DataPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := damage.Record(d.Config.Data, e.Chunks[0]); err != nil {
		t.Fatal(err)
	}
	page := &server.RestorePage{Store: d.Store, ServerKey: d.Server.PublicKey()}
	h := page.Handler()
	key, _ := l.st.Key()
	base := "/r/" + proto.SignLink(key, proto.LinkClaims{Serial: l.serial, Expires: time.Now().Add(time.Hour)}) + "/s/" + string(sn.ID) + "/"
	for _, kind := range []string{"f", "x"} {
		code, body, hdr := get(t, h, base+kind+"/"+bad.UID)
		if code != http.StatusInternalServerError || !strings.Contains(body, "damaged") || hdr.Get("Content-Disposition") != "" {
			t.Errorf("download (%s) of a damaged document: %d %v %.200q", kind, code, hdr, body)
		}
	}
	// The same in the child's language.
	for lang, want := range map[string]string{"es": "Este documento está dañado", "ar": "هذا المستند تالف", "sw": "Hati hii imeharibika"} {
		if code, body := getLang(t, h, base+"f/"+bad.UID+"?lang="+lang, ""); code != http.StatusInternalServerError || !strings.Contains(body, want) {
			t.Errorf("damaged document in %s: %d %.300q", lang, code, body)
		}
	}
	code, body, _ := get(t, h, base+"f/"+good.UID)
	want, _ := os.ReadFile(filepath.Join(l.src, filepath.FromSlash(good.DataPath)))
	if code != 200 || body != string(want) {
		t.Fatalf("download of an intact document: %d, %d bytes, want %d", code, len(body), len(want))
	}
}
