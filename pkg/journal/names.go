package journal

import (
	"mime"
	"strings"
	"unicode"
)

// Match returns, in order, the entries whose UID is one of uids or whose
// Title contains one of titles, ignoring case (Unicode simple case folding,
// so "ДИБУЖО" finds "дибужо" and "CANCIÓN" finds "Canción"). Empty titles
// match nothing.
func Match(entries []Entry, uids, titles []string) []Entry {
	want := make(map[string]bool, len(uids))
	for _, u := range uids {
		want[u] = true
	}
	var subs []string
	for _, t := range titles {
		if t != "" {
			subs = append(subs, fold(t))
		}
	}
	var out []Entry
	for _, e := range entries {
		if want[e.UID] {
			out = append(out, e)
			continue
		}
		if len(subs) == 0 {
			continue
		}
		title := fold(e.Title)
		for _, s := range subs {
			if strings.Contains(title, s) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// fold maps every rune to the smallest rune of its case-folding orbit.
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		return m
	}, s)
}

// activityNames are the well-known Sugar activities whose bundle id does not
// say their name.
var activityNames = map[string]string{
	"org.laptop.AbiWordActivity":    "Write",
	"org.laptop.Oficina":            "Paint",
	"org.laptop.RecordActivity":     "Record",
	"org.laptop.sugar.ReadActivity": "Read",
	"org.laptop.WebActivity":        "Browse",
	"org.laptop.TurtleArtActivity":  "TurtleArt",
	"org.laptop.Memorize":           "Memorize",
	"org.sugarlabs.Music":           "Music",
	"org.sugarlabs.MusicKeyboard":   "Music",
	"org.laptop.Chat":               "Chat",
	"org.laptop.Calculate":          "Calculate",
	"org.laptop.Terminal":           "Terminal",
	"vu.lux.olpc.Maze":              "Maze",
	"org.laptop.Pippy":              "Pippy",
	"org.vpri.EtoysActivity":        "Etoys",
	"edu.mit.media.ScratchActivity": "Scratch",
	"org.laptop.MeasureActivity":    "Measure",
	"vu.lux.olpc.Speak":             "Speak",
}

// ActivityName returns the name children know an activity by, from its
// bundle id: "org.laptop.AbiWordActivity" is "Write", and an activity not in
// the package's small table is the last dot-separated part of its id
// without "Activity" ("org.example.FooActivity" is "Foo"). "" stays "".
func ActivityName(bundleID string) string {
	bundleID = strings.TrimSpace(bundleID)
	if n, ok := activityNames[bundleID]; ok {
		return n
	}
	last := strings.TrimRight(bundleID, ".")
	last = last[strings.LastIndexByte(last, '.')+1:]
	if n := strings.TrimSuffix(last, "Activity"); n != "" {
		return n
	}
	if last != "" {
		return last
	}
	return bundleID
}

// mimeExts are the extensions of common Journal types, looked up before
// mime.ExtensionsByType.
var mimeExts = map[string]string{
	"image/png":                    "png",
	"image/jpeg":                   "jpg",
	"application/pdf":              "pdf",
	"text/plain":                   "txt",
	"audio/ogg":                    "ogg",
	"video/ogg":                    "ogv",
	"application/x-turtle-art":     "ta",
	"application/x-squeak-project": "pr",
	"application/rtf":              "rtf",
	"text/html":                    "html",
	"application/zip":              "zip",
	"image/svg+xml":                "svg",
	"audio/wav":                    "wav",
	"application/epub+zip":         "epub",
	"application/vnd.oasis.opendocument.text": "odt",
}

// mediaType is the lower-case type/subtype of a MIME type, without parameters.
func mediaType(mimeType string) string {
	t, _, _ := strings.Cut(mimeType, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// extension returns the file extension (with the dot) for a MIME type, or "".
func extension(mimeType string) string {
	t := mediaType(mimeType)
	if t == "" {
		return ""
	}
	if x, ok := mimeExts[t]; ok {
		return "." + x
	}
	exts, _ := mime.ExtensionsByType(t)
	for _, x := range exts {
		if len(x) >= 2 && len(x) <= 12 && x[0] == '.' && safeName(x[1:]) && !strings.Contains(x, "..") {
			return x
		}
	}
	return ""
}

// safeName reports whether s is made of [A-Za-z0-9._-] only.
func safeName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// FileName returns an ASCII-safe name for the entry's raw file: the title,
// transliterated (Latin accents, Cyrillic) or stripped to letters, digits,
// spaces (kept, so that children recognise their titles) and "._-", with
// other punctuation turned into spaces, runs of spaces and dots collapsed,
// leading and trailing " .-" trimmed and cut to 80 characters (at a space
// if one is near), then the
// extension of its MIME type (unless the title ends with it already).
//
// A title with no ASCII letter left once its letters in other scripts are
// dropped ("我的画 5"), or with no letter or digit at all, becomes
// "document-" + the first 8 characters of the uid (then "-" and what is
// left, such as "5"). The name is never empty, ".", "..", nor holds '/' or
// NUL, and Windows device names (CON, NUL, COM1...) get a "_" after them.
func FileName(e Entry) string {
	base := baseName(e)
	x := extension(e.MimeType)
	if x == "" || strings.HasSuffix(strings.ToLower(base), x) {
		return base
	}
	return base + x
}

// BundleName returns the name of the entry's Journal Entry Bundle: the base
// of [FileName] (without its MIME extension) and ".xoj".
func BundleName(e Entry) string { return baseName(e) + ".xoj" }

const maxBase = 80

func baseName(e Entry) string {
	base, dropped := sanitize(e.Title)
	if !hasByte(base, isAlnum) || dropped && !hasByte(base, isLetter) {
		var uid []byte // the first 8 of its letters, digits, '-' and '_'
		for i := 0; i < len(e.UID) && len(uid) < 8; i++ {
			if c := e.UID[i]; isAlnum(c) || c == '-' || c == '_' {
				uid = append(uid, c)
			}
		}
		doc := "document"
		if u := strings.Trim(string(uid), "-"); u != "" {
			doc += "-" + u
		}
		if hasByte(base, isAlnum) {
			doc += "-" + base
		}
		base = doc
	}
	if stem, rest, found := strings.Cut(base, "."); isDeviceName(strings.ToUpper(stem)) {
		base = stem + "_"
		if found {
			base += "." + rest
		}
	}
	if len(base) > maxBase {
		cut := base[:maxBase]
		// Rather not cut a word in two.
		if i := strings.LastIndexByte(cut, ' '); isAlnum(base[maxBase]) && i >= maxBase*3/4 {
			cut = cut[:i]
		}
		base = strings.TrimRight(cut, " .-")
	}
	return base
}

func hasByte(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if f(s[i]) {
			return true
		}
	}
	return false
}

func isDeviceName(s string) bool {
	switch s {
	case "CON", "PRN", "AUX", "NUL":
		return true
	}
	return len(s) == 4 && (s[:3] == "COM" || s[:3] == "LPT") && s[3] >= '0' && s[3] <= '9'
}

// sanitize reduces s to [A-Za-z0-9 ._-], collapsed and trimmed; dropped
// reports that letters or digits it could not transliterate were dropped.
func sanitize(s string) (out string, dropped bool) {
	var b strings.Builder
	last := byte(' ') // no leading space
	put := func(c byte) {
		if (c == ' ' || c == '.') && last == c {
			return
		}
		b.WriteByte(c)
		last = c
	}
	for _, r := range s {
		switch {
		case r < 0x80 && (isAlnum(byte(r)) || r == '.' || r == '_' || r == '-'):
			put(byte(r))
		case r == '\'' || r == '’' || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Cf, r):
			// apostrophes, accents of decomposed letters, invisible marks
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			t, ok := translit[r]
			if !ok {
				dropped = true
			}
			for i := 0; i < len(t); i++ {
				put(t[i])
			}
		default:
			put(' ')
		}
	}
	return strings.Trim(b.String(), " .-"), dropped
}

// translit spells common non-ASCII letters of Latin and Cyrillic scripts in
// ASCII.
var translit = map[rune]string{}

func init() {
	pairs := []string{
		"ÀÁÂÃÄÅĀĂĄ", "A", "àáâãäåāăąª", "a", "ÇĆĈĊČ", "C", "çćĉċč", "c", "ĎĐÐ", "D", "ďđð", "d",
		"ÈÉÊËĒĔĖĘĚ", "E", "èéêëēĕėęě", "e", "ĜĞĠĢ", "G", "ĝğġģ", "g", "ĤĦ", "H", "ĥħ", "h",
		"ÌÍÎÏĨĪĬĮİ", "I", "ìíîïĩīĭįı", "i", "Ĵ", "J", "ĵ", "j", "Ķ", "K", "ķ", "k", "ĹĻĽĿŁ", "L", "ĺļľŀł", "l",
		"ÑŃŅŇ", "N", "ñńņň", "n", "ÒÓÔÕÖØŌŎŐ", "O", "òóôõöøōŏőº", "o", "ŔŖŘ", "R", "ŕŗř", "r",
		"ŚŜŞŠȘ", "S", "śŝşšș", "s", "ŢŤŦȚ", "T", "ţťŧț", "t", "ÙÚÛÜŨŪŬŮŰŲ", "U", "ùúûüũūŭůűų", "u",
		"Ŵ", "W", "ŵ", "w", "ÝŸŶ", "Y", "ýÿŷ", "y", "ŹŻŽ", "Z", "źżž", "z",
		// Cyrillic (Russian, with Ukrainian І and Ї).
		"А", "A", "а", "a", "Б", "B", "б", "b", "В", "V", "в", "v", "Г", "G", "г", "g", "Ґ", "G", "ґ", "g",
		"Д", "D", "д", "d", "ЕЭ", "E", "еэ", "e", "Ё", "Yo", "ё", "yo", "Є", "Ye", "є", "ye", "Ж", "Zh", "ж", "zh",
		"З", "Z", "з", "z", "ИІ", "I", "иі", "i", "Ї", "Yi", "ї", "yi", "ЙЫ", "Y", "йы", "y", "К", "K", "к", "k",
		"Л", "L", "л", "l", "М", "M", "м", "m", "Н", "N", "н", "n", "О", "O", "о", "o", "П", "P", "п", "p",
		"Р", "R", "р", "r", "С", "S", "с", "s", "Т", "T", "т", "t", "У", "U", "у", "u", "Ф", "F", "ф", "f",
		"Х", "Kh", "х", "kh", "Ц", "Ts", "ц", "ts", "Ч", "Ch", "ч", "ch", "Ш", "Sh", "ш", "sh", "Щ", "Shch", "щ", "shch",
		"ЪЬъь", "", "Ю", "Yu", "ю", "yu", "Я", "Ya", "я", "ya",
	}
	for i := 0; i < len(pairs); i += 2 {
		for _, r := range pairs[i] {
			translit[r] = pairs[i+1]
		}
	}
	for r, s := range map[rune]string{'Æ': "AE", 'æ': "ae", 'Œ': "OE", 'œ': "oe", 'ß': "ss", 'Þ': "Th", 'þ': "th"} {
		translit[r] = s
	}
}
