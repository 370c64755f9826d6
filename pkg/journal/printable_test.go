package journal

import (
	"testing"
	"unicode/utf8"
)

// TestPrintableHostileTitles: titles a child (or an attacker) can put in
// Journal metadata reach staff terminals without any control character or
// escape sequence.
func TestPrintableHostileTitles(t *testing.T) {
	for in, want := range map[string]string{
		"My drawing":                                   "My drawing",
		"Ñandú ☃ 日本":                                   "Ñandú ☃ 日本",
		"\x1b[2J\x1b[HCleared":                         "Cleared",
		"red\x1b[31mtext\x1b[0m":                       "redtext",
		"\x1b]0;pwned title\x07Story":                  "Story",
		"\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\": "link",
		"\x1bP+q\x1b\\dcs":                             "dcs",
		"a\x9b31mb":                                    "a\ufffd31mb", // a raw byte, not UTF-8: shown as U+FFFD
		"a\u009b31mb":                                  "ab",
		"a\u009d0;t\u009cb":                            "ab",
		"bell\x07\x08\x7fx":                            "bellx",
		"tab\there\nnew\rline":                         "tab here new line",
		"bidi\u202eevil\u2066x":                        "bidievilx",
		"bad\xffutf8":                                  "bad\ufffdutf8",
		"\x1b":                                         "",
		"\x1b[":                                        "",
	} {
		got := Printable(in)
		if got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Errorf("Printable(%q) kept control %U", in, r)
			}
		}
		if !utf8.ValidString(got) {
			t.Errorf("Printable(%q) is not UTF-8", in)
		}
	}
}
