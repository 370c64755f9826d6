package admin_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
)

// gc --expire-pending frees a disk full of an unfinished backup's uploads
// (plain gc frees nothing there: they are held for the laptop to resume),
// and its dry run changes nothing.
func TestGCExpirePending(t *testing.T) {
	ctx := context.Background()
	svc, s := newService(t)
	u, err := s.UserBySerial("SHC1")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("an upload of a backup that never committed "), 4096)
	b := blob.Blob{Ref: blob.Ref{Type: blob.Chunk, ID: chunk.Sum(data)}, Data: data, RawLen: len(data)}
	if err := s.Put(ctx, u.ID, []blob.Blob{b}); err != nil {
		t.Fatal(err)
	}
	gc := func(r admin.GCRequest) *admin.GCResult {
		t.Helper()
		out, err := svc.GC(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if r := gc(admin.GCRequest{}); r.BlobsDeleted != 0 || r.Expired != nil {
		t.Fatalf("plain gc removed a pending upload: %+v", r)
	}
	if r := gc(admin.GCRequest{ExpirePending: true, DryRun: true}); r.Expired == nil || r.Expired.Holds != 1 || r.BlobsDeleted != 0 {
		t.Fatalf("dry run: %+v %+v", r, r.Expired)
	}
	if us, _ := s.Usage(ctx, u.ID); us.Blobs != 1 {
		t.Fatalf("the dry run released the upload: %+v", us)
	}
	r := gc(admin.GCRequest{ExpirePending: true})
	if r.Expired == nil || r.Expired.Holds != 1 || r.BlobsDeleted != 1 {
		t.Fatalf("gc --expire-pending: %+v %+v", r, r.Expired)
	}
	if _, err := s.Stat(ctx, b.Ref); err == nil {
		t.Fatal("the released upload is still stored")
	}
}
