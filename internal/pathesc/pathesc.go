package pathesc

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// Escape returns s with each byte that is not part of valid UTF-8 written
// as \xNN and each backslash as \\; see the package documentation.
func Escape(s string) string { return escape(s, false) }

// Display returns Escape(s) with, in addition, every non-printable rune
// (controls, line and paragraph separators, bidi and other format
// characters) escaped; see the package documentation.
func Display(s string) string { return escape(s, true) }

func escape(s string, display bool) string {
	// Fast path: most paths need nothing.
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '\\' || (display && (c < 0x20 || c == 0x7f)) {
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (display && !unicode.IsPrint(r)) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\\':
				b.WriteString(`\\`)
			case display && (c < 0x20 || c == 0x7f):
				b.WriteString(`\x`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		case display && !unicode.IsPrint(r):
			if r < 0x10000 {
				b.WriteString(`\u`)
				for sh := 12; sh >= 0; sh -= 4 {
					b.WriteByte(hex[(r>>sh)&0xf])
				}
			} else {
				b.WriteString(`\U`)
				for sh := 28; sh >= 0; sh -= 4 {
					b.WriteByte(hex[(r>>sh)&0xf])
				}
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// ErrSyntax reports a string that no call of Escape or Display returns.
var ErrSyntax = errors.New("invalid escape sequence")

// Unescape returns the original of a string made by Escape or Display.
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		if i+1 >= len(s) {
			return "", ErrSyntax
		}
		digits := 0
		switch s[i+1] {
		case '\\':
			b.WriteByte('\\')
			i += 2
			continue
		case 'x':
			digits = 2
		case 'u':
			digits = 4
		case 'U':
			digits = 8
		default:
			return "", ErrSyntax
		}
		if i+2+digits > len(s) {
			return "", ErrSyntax
		}
		v, err := strconv.ParseUint(s[i+2:i+2+digits], 16, 32)
		if err != nil {
			return "", ErrSyntax
		}
		if digits == 2 {
			b.WriteByte(byte(v))
		} else {
			if !utf8.ValidRune(rune(v)) {
				return "", ErrSyntax
			}
			b.WriteRune(rune(v))
		}
		i += 2 + digits
	}
	return b.String(), nil
}
