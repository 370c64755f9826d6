package journal

import (
	"strings"
	"unicode/utf8"
)

// Printable returns s made safe to print on a terminal: terminal escape
// sequences (CSI, OSC, DCS and other ESC sequences, and their C1 forms)
// are removed with their parameters, other C0 and C1 control characters,
// DEL and the bidirectional overrides are dropped, tabs and line breaks
// become spaces, and invalid UTF-8 becomes U+FFFD. Titles and activity
// names come from a laptop's metadata: without this a title could move
// the cursor, rewrite what staff see or set the terminal's title. Use it
// for text output only; JSON keeps the real value.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError || bidi(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b: // ESC
			i += n
			if i < len(s) {
				switch s[i] {
				case '[':
					i = skipCSI(s, i+1)
				case ']', 'P', 'X', '^', '_':
					i = skipString(s, i+1)
				default:
					i++ // a two-byte sequence
				}
			}
			continue
		case r == 0x9b: // C1 CSI
			i = skipCSI(s, i+n)
			continue
		case r == 0x9d || r == 0x90 || r == 0x98 || r == 0x9e || r == 0x9f: // C1 OSC, DCS, SOS, PM, APC
			i = skipString(s, i+n)
			continue
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || bidi(r):
			// dropped
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// skipCSI skips a control sequence's parameter and intermediate bytes and
// its final byte (0x40-0x7e), from i.
func skipCSI(s string, i int) int {
	for i < len(s) {
		c := s[i]
		i++
		if c >= 0x40 && c <= 0x7e {
			break
		}
		if c < 0x20 || c > 0x3f && c < 0x40 || c >= 0x7f {
			break // not part of a sequence: stop here
		}
	}
	return i
}

// skipString skips a control string (OSC, DCS...) up to and including its
// terminator: BEL, ESC \ or C1 ST.
func skipString(s string, i int) int {
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == 0x07 || r == 0x9c:
			return i
		case r == 0x1b:
			if i < len(s) && s[i] == '\\' {
				i++
			}
			return i
		}
	}
	return i
}

func bidi(r rune) bool { return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 }
