package journal

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxUnicodeBase caps the bytes of a [UnicodeFileName] before its
// extension: with the longest extension it stays well under the 255 bytes
// file systems allow, in any script (a Chinese character is 3 bytes).
const maxUnicodeBase = 180

// UnicodeFileName is [FileName] keeping the title's own letters: "我的画"
// is "我的画.png", "Canción" stays "Canción". It is for places that can
// carry UTF-8 names, such as a download's filename* (RFC 6266); FileName
// is the ASCII name for everywhere else.
//
// The title loses control and invisible formatting characters (among
// them the bidi overrides that could show "gpj.exe" as "exe.jpg"), path
// separators and the characters Windows forbids ("*:<>?|) become spaces,
// runs of spaces and dots collapse, leading and trailing " .-" go, and it
// is cut to 180 bytes on a character boundary (at a space if one is
// near); then comes the extension of its MIME type. A title with no
// letter or digit, or a Windows device name, gets FileName's name instead.
func UnicodeFileName(e Entry) string {
	base, ok := unicodeBase(e.Title)
	if !ok {
		return FileName(e)
	}
	x := extension(e.MimeType)
	if x == "" || strings.HasSuffix(strings.ToLower(base), x) {
		return base
	}
	return base + x
}

// UnicodeBundleName is [BundleName] keeping the title's own letters, as
// [UnicodeFileName] does.
func UnicodeBundleName(e Entry) string {
	base, ok := unicodeBase(e.Title)
	if !ok {
		return BundleName(e)
	}
	return base + ".xoj"
}

// unicodeBase sanitises a title for a file name in any script; ok is
// false when nothing recognisable (no letter or digit) is left or the
// name is a Windows device name.
func unicodeBase(title string) (string, bool) {
	var b strings.Builder
	var last rune = ' ' // no leading space
	put := func(r rune) {
		if (r == ' ' || r == '.') && last == r {
			return
		}
		b.WriteRune(r)
		last = r
	}
	letters := false
	for _, r := range title {
		switch {
		case unicode.IsSpace(r) || strings.ContainsRune(`/\"*:<>?|`, r):
			put(' ') // tabs and line breaks too
		case r == utf8.RuneError, unicode.Is(unicode.Cc, r), unicode.Is(unicode.Cf, r),
			unicode.Is(unicode.Cs, r), unicode.Is(unicode.Co, r):
			// invalid UTF-8, controls, invisible and private characters
		default:
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				letters = true
			}
			put(r)
		}
	}
	base := strings.Trim(b.String(), " .-")
	if !letters || base == "" {
		return "", false
	}
	if stem, _, _ := strings.Cut(base, "."); isDeviceName(strings.ToUpper(strings.TrimSpace(stem))) {
		return "", false
	}
	if len(base) > maxUnicodeBase {
		cut := maxUnicodeBase
		for cut > 0 && !utf8.RuneStart(base[cut]) {
			cut--
		}
		s := base[:cut]
		// Rather not cut a word in two.
		if i := strings.LastIndexByte(s, ' '); i >= maxUnicodeBase*3/4 {
			s = s[:i]
		}
		base = strings.TrimRight(s, " .-")
	}
	return base, true
}
