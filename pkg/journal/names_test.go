package journal_test

import (
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

const uid = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"

// checkName fails unless name is a safe file name.
func checkName(t testing.TB, name string) {
	t.Helper()
	if name == "" || name == "." || name == ".." || strings.Contains(name, "..") || strings.ContainsAny(name, "/\x00") {
		t.Fatalf("unsafe name %q", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" ._-", c) >= 0) {
			t.Fatalf("name %q holds %q", name, c)
		}
	}
	if name[0] == '.' || name[0] == '-' || name[0] == ' ' || strings.HasSuffix(name, " ") {
		t.Fatalf("name %q starts or ends badly", name)
	}
}

func TestFileName(t *testing.T) {
	long := strings.Repeat("Árbol ", 40)
	for _, c := range []struct{ title, mime, file, bundle string }{
		{"My drawing 1", "image/png", "My drawing 1.png", "My drawing 1.xoj"},
		{"Mi dibujo", "image/jpeg", "Mi dibujo.jpg", "Mi dibujo.xoj"},
		{"Canción", "audio/ogg", "Cancion.ogg", "Cancion.xoj"},
		{"Cancio\u0301n", "audio/ogg", "Cancion.ogg", "Cancion.xoj"}, // decomposed
		{"Poema para mamá", "text/plain; charset=UTF-8", "Poema para mama.txt", "Poema para mama.xoj"},
		{"Ma tortue", "application/x-turtle-art", "Ma tortue.ta", "Ma tortue.xoj"},
		{"Рисунок 4", "image/png", "Risunok 4.png", "Risunok 4.xoj"},
		{"Щука и ёж", "", "Shchuka i yozh", "Shchuka i yozh.xoj"},
		{"Straße", "application/pdf", "Strasse.pdf", "Strasse.xoj"},
		{"Hadithi yangu", "application/vnd.oasis.opendocument.text", "Hadithi yangu.odt", "Hadithi yangu.xoj"},
		{"我的画", "image/png", "document-1a2b3c4d.png", "document-1a2b3c4d.xoj"},
		{"我的画 5", "image/png", "document-1a2b3c4d-5.png", "document-1a2b3c4d-5.xoj"},
		{"العلوم 11", "text/plain", "document-1a2b3c4d-11.txt", "document-1a2b3c4d-11.xoj"},
		{"2024", "text/plain", "2024.txt", "2024.xoj"},
		{"Photo 我的画 of school", "image/jpeg", "Photo of school.jpg", "Photo of school.xoj"},
		{"../../etc/passwd", "text/plain", "etc passwd.txt", "etc passwd.xoj"},
		{"..", "", "document-1a2b3c4d", "document-1a2b3c4d.xoj"},
		{"", "image/png", "document-1a2b3c4d.png", "document-1a2b3c4d.xoj"},
		{"a\x00b/c\\d\ne", "", "a b c d e", "a b c d e.xoj"},
		{"Tarea: ¿ciencias?", "text/html", "Tarea ciencias.html", "Tarea ciencias.xoj"},
		{"Children's song", "audio/wav", "Childrens song.wav", "Childrens song.xoj"},
		{"-rf *", "", "rf", "rf.xoj"},
		{"photo.JPG", "image/jpeg", "photo.JPG", "photo.JPG.xoj"},
		{"...hidden...", "text/plain", "hidden.txt", "hidden.xoj"},
		{"CON", "text/plain", "CON_.txt", "CON_.xoj"},
		{"lpt1.notes", "", "lpt1_.notes", "lpt1_.notes.xoj"},
		{"Game", "application/x-squeak-project", "Game.pr", "Game.xoj"},
		{"Page", "application/json", "Page.json", "Page.xoj"}, // from mime.ExtensionsByType
		{"Thing", "application/x-no-such-type", "Thing", "Thing.xoj"},
		{"Thing", "not a mime type", "Thing", "Thing.xoj"},
		{strings.Repeat("a", 200), "text/plain", strings.Repeat("a", 80) + ".txt", strings.Repeat("a", 80) + ".xoj"},
		{long, "", strings.TrimSpace(strings.Repeat("Arbol ", 13)), strings.TrimSpace(strings.Repeat("Arbol ", 13)) + ".xoj"},
	} {
		e := journal.Entry{UID: uid, Title: c.title, MimeType: c.mime}
		file, bundle := journal.FileName(e), journal.BundleName(e)
		if file != c.file || bundle != c.bundle {
			t.Errorf("title %q, mime %q: FileName %q, BundleName %q; want %q, %q", c.title, c.mime, file, bundle, c.file, c.bundle)
		}
		checkName(t, file)
		checkName(t, bundle)
		if base := strings.TrimSuffix(bundle, ".xoj"); len(base) > 80 {
			t.Errorf("title %q: base %q longer than 80", c.title, base)
		}
	}
}

func TestFileNameOddUIDs(t *testing.T) {
	for _, c := range []struct{ uid, want string }{
		{"", "document"},
		{"..", "document"},
		{"ab", "document-ab"},
		{"../../x", "document-x"},
		{"日本語", "document"},
		{"a b c d e f g h i j", "document-abcdefgh"},
	} {
		if got := journal.FileName(journal.Entry{UID: c.uid, Title: "我的画"}); got != c.want {
			t.Errorf("uid %q: FileName %q, want %q", c.uid, got, c.want)
		}
	}
}

func TestExtensionTable(t *testing.T) {
	for mime, ext := range map[string]string{
		"image/png": ".png", "image/jpeg": ".jpg", "application/pdf": ".pdf", "text/plain": ".txt",
		"audio/ogg": ".ogg", "video/ogg": ".ogv", "application/vnd.oasis.opendocument.text": ".odt",
		"application/x-turtle-art": ".ta", "application/x-squeak-project": ".pr", "application/rtf": ".rtf",
		"text/html": ".html", "application/zip": ".zip", "image/svg+xml": ".svg", "audio/wav": ".wav",
		"application/epub+zip": ".epub", "IMAGE/PNG": ".png",
	} {
		if got := journal.FileName(journal.Entry{UID: uid, Title: "x", MimeType: mime}); got != "x"+ext {
			t.Errorf("mime %q: FileName %q, want %q", mime, got, "x"+ext)
		}
	}
}
