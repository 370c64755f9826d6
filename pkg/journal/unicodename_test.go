package journal_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/xs-backup/xs-backup/pkg/journal"
)

// checkUnicodeName fails unless name is a safe file name in any script:
// valid UTF-8 of at most 255 bytes, no path separator, no character
// Windows forbids, no control or invisible formatting character, no "..",
// not starting with '.', '-' or a space nor ending with a space.
func checkUnicodeName(t testing.TB, name string) {
	t.Helper()
	if name == "" || !utf8.ValidString(name) || len(name) > 255 || strings.Contains(name, "..") || strings.ContainsAny(name, "/\\\"*:<>?|") {
		t.Fatalf("unsafe name %q", name)
	}
	for _, r := range name {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || (unicode.IsSpace(r) && r != ' ') {
			t.Fatalf("name %q holds %U", name, r)
		}
	}
	if name[0] == '.' || name[0] == '-' || name[0] == ' ' || strings.HasSuffix(name, " ") {
		t.Fatalf("name %q starts or ends badly", name)
	}
}

func TestUnicodeFileName(t *testing.T) {
	const uid = "0123abcd-0000-4000-8000-000000000000"
	for _, c := range []struct{ title, mime, file, bundle string }{
		{"我的画", "image/png", "我的画.png", "我的画.xoj"},
		{"رسمتي", "image/png", "رسمتي.png", "رسمتي.xoj"},
		{"Canción", "audio/ogg", "Canción.ogg", "Canción.xoj"},
		{"Рисунок 4", "", "Рисунок 4", "Рисунок 4.xoj"},
		{"photo.PNG", "image/png", "photo.PNG", "photo.PNG.xoj"},
		{"a/b\\c:d*e?f\"g<h>i|j", "", "a b c d e f g h i j", "a b c d e f g h i j.xoj"},
		{"line\r\nbreak\ttab\u3000wide", "", "line break tab wide", "line break tab wide.xoj"},
		{"evil\u202egnp.exe", "", "evilgnp.exe", "evilgnp.exe.xoj"},
		{"zero\u200bwidth\ufeff", "", "zerowidth", "zerowidth.xoj"},
		{"../../../etc/passwd", "", "etc passwd", "etc passwd.xoj"},
		{"...hidden...", "text/plain", "hidden.txt", "hidden.xoj"},
		{"a.\u200b.b", "", "a.b", "a.b.xoj"},
		{"nul", "text/plain", "nul_.txt", "nul_.xoj"}, // FileName's, as for every device name
		{"!!!", "", "document-0123abcd", "document-0123abcd.xoj"},
		{"\xff\xfe", "", "document-0123abcd", "document-0123abcd.xoj"},
		{strings.Repeat("画", 100), "image/png", strings.Repeat("画", 60) + ".png", strings.Repeat("画", 60) + ".xoj"},
		{strings.Repeat("ab ", 100), "", strings.TrimSpace(strings.Repeat("ab ", 60)), strings.TrimSpace(strings.Repeat("ab ", 60)) + ".xoj"},
	} {
		e := journal.Entry{UID: uid, Title: c.title, MimeType: c.mime}
		file, bundle := journal.UnicodeFileName(e), journal.UnicodeBundleName(e)
		if file != c.file || bundle != c.bundle {
			t.Errorf("title %q: UnicodeFileName %q, UnicodeBundleName %q; want %q, %q", c.title, file, bundle, c.file, c.bundle)
		}
		checkUnicodeName(t, file)
		checkUnicodeName(t, bundle)
	}
}

func FuzzUnicodeFileName(f *testing.F) {
	for _, s := range []string{"我的画", "رسمتي", "a\u202eb", "../x", "CON", "\xff", strings.Repeat("é", 200), "a. .b", "-.-"} {
		f.Add(s, "image/png")
	}
	f.Fuzz(func(t *testing.T, title, mime string) {
		e := journal.Entry{UID: "0123abcd-ef", Title: title, MimeType: mime}
		checkUnicodeName(t, journal.UnicodeFileName(e))
		checkUnicodeName(t, journal.UnicodeBundleName(e))
	})
}
