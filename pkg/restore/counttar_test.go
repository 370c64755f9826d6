package restore

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
)

// TestCountTarCountsWhatExtractWould: files and their bytes, directories,
// and links counted apart (ExtractTar skips them); a cut archive is an
// error, not a short count.
func TestCountTarCountsWhatExtractWould(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data string) {
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "d/a", Typeflag: tar.TypeReg, Mode: 0o644}, strings.Repeat("a", 1000))
	add(&tar.Header{Name: "d/b", Typeflag: tar.TypeReg, Mode: 0o644}, "bb")
	add(&tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "a"}, "")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := CountTar(bytes.NewReader(buf.Bytes()))
	if err != nil || st.Files != 2 || st.Bytes != 1002 || st.Dirs != 1 || st.Symlinks != 1 {
		t.Fatalf("CountTar = %+v, %v; want 2 files, 1002 bytes, 1 dir, 1 link", st, err)
	}
	ext, err := ExtractTar(bytes.NewReader(buf.Bytes()), t.TempDir(), false, nil)
	if err != nil || ext.Files != st.Files || ext.Bytes != st.Bytes || ext.Dirs != st.Dirs {
		t.Fatalf("ExtractTar = %+v, %v; CountTar said %+v", ext, err, st)
	}
	if _, err := CountTar(bytes.NewReader(buf.Bytes()[:1024+500])); err == nil {
		t.Fatal("a cut archive was counted without an error")
	}
}
