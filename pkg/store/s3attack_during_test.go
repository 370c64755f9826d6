package store_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/xs-backup/xs-backup/internal/s3test"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/internal/pack"
)

// A pack object deleted from the bucket while a restore or a check reads
// from it: the restore writes every file it can and names the others, the
// check records the damage, and after what staff run only the deleted
// pack's blobs that no laptop has any more are lost.

// s3aDeleter removes one object (behind the store's back, as a person with
// the bucket's credentials or a lifecycle rule would) once the store has
// made a number of reads.
type s3aDeleter struct {
	store.Remote
	mu    sync.Mutex
	reads int
	after int // <0: not armed
	path  string
	done  bool
}

func (d *s3aDeleter) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	d.mu.Lock()
	if d.after >= 0 && !d.done {
		if d.reads >= d.after {
			os.Remove(d.path)
			d.done = true
		}
		d.reads++
	}
	d.mu.Unlock()
	return d.Remote.ReadAt(ctx, name, p, off)
}

func (d *s3aDeleter) arm(path string, after int) {
	d.mu.Lock()
	d.path, d.after, d.reads, d.done = path, after, 0, false
	d.mu.Unlock()
}

func newS3ADeleter(t *testing.T) (*s3a, *s3aDeleter) {
	var del *s3aDeleter
	a := newS3A(t, func(srv *s3test.Server, prefix string) store.Remote {
		del = &s3aDeleter{Remote: srv.Remote(t, prefix), after: -1}
		return del
	})
	return a, del
}

func TestS3AttackObjectDeletedDuringRestore(t *testing.T) {
	a, del := newS3ADeleter(t)
	seq, dmg := a.treePack()
	a.close()
	a.open()                      // nothing cached
	cs := a.snaps[len(a.snaps)-2] // laptop A's latest
	sn, err := a.s.Snapshot(cs.user, cs.id)
	if err != nil {
		t.Fatal(err)
	}
	del.arm(a.objPath(pack.Name(seq)), 2)
	out := t.TempDir()
	res, rerr := a.s.Restore(context.Background(), sn, out, store.RestoreOptions{})
	if !del.done {
		t.Fatal("the object was never deleted during the restore")
	}
	if rerr != nil && !errors.Is(rerr, blob.ErrDamaged) {
		t.Errorf("restore with an object deleted under it: %v (want the other files restored and the damaged ones named)", rerr)
	}
	if res != nil {
		named := map[string]bool{}
		for _, d := range res.Damaged {
			named[d.Path] = true
		}
		got := readTree(t, out)
		for name, want := range cs.files {
			if b, ok := got[name]; ok && string(b) != string(want) {
				t.Errorf("%s restored with wrong bytes", name)
			} else if !ok && !namedOrParent(named, name) {
				t.Errorf("%s neither restored nor named", name)
			}
		}
		t.Logf("restore during the deletion: %d files, %d named damaged", res.Files, len(res.Damaged))
	}
	a.staffSequence()
	a.verify(dmg, true)
}

func TestS3AttackObjectDeletedDuringCheck(t *testing.T) {
	a, del := newS3ADeleter(t)
	seq, dmg := a.treePack()
	a.close()
	a.open()
	del.arm(a.objPath(pack.Name(seq)), 3)
	rep, err := a.s.Check(context.Background(), store.CheckOptions{ReadData: true})
	if !del.done {
		t.Fatal("the object was never deleted during the check")
	}
	if err != nil {
		t.Errorf("check --read-data with an object deleted under it: %v", err)
	} else {
		t.Logf("check during the deletion: %d damaged, %d index problems, %d trees restored", rep.Damaged, rep.IndexProblems, rep.TreesRestored)
	}
	a.staffSequence()
	a.verify(dmg, true)
}
