package pathesc_test

import (
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

func TestEscape(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, escape, display string }{
		{"/var/lib/kubelet/pods/a/volumes/x", "/var/lib/kubelet/pods/a/volumes/x", "/var/lib/kubelet/pods/a/volumes/x"},
		{"/mnt/ünïcödé 空", "/mnt/ünïcödé 空", "/mnt/ünïcödé 空"},
		{"/mnt/a\xff", `/mnt/a\xff`, `/mnt/a\xff`},
		{"/mnt/a\xfe", `/mnt/a\xfe`, `/mnt/a\xfe`},
		{`/mnt/a\xff`, `/mnt/a\\xff`, `/mnt/a\\xff`},
		{"/mnt/\xc3", `/mnt/\xc3`, `/mnt/\xc3`},                         // truncated sequence
		{"/mnt/\xed\xa0\x80", `/mnt/\xed\xa0\x80`, `/mnt/\xed\xa0\x80`}, // surrogate
		{"/mnt/line\nbreak\t", "/mnt/line\nbreak\t", `/mnt/line\x0abreak\x09`},
		{"/mnt/\x1b[31mred\x1b[0m", "/mnt/\x1b[31mred\x1b[0m", `/mnt/\x1b[31mred\x1b[0m`},
		{"/mnt/\x7f\u0085\u009b", "/mnt/\x7f\u0085\u009b", `/mnt/\x7f\u0085\u009b`},
		{"/mnt/\u2028\u2029", "/mnt/\u2028\u2029", `/mnt/\u2028\u2029`},
		{"/mnt/\u202eevil\u202c", "/mnt/\u202eevil\u202c", `/mnt/\u202eevil\u202c`},
		{"/mnt/\u2066\u2067\u2068\u2069\u200e\u200f\u061c", "/mnt/\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
			`/mnt/\u2066\u2067\u2068\u2069\u200e\u200f\u061c`},
		{"/mnt/\U000e0001", "/mnt/\U000e0001", `/mnt/\U000e0001`},
		{"", "", ""},
	}
	for _, tc := range cases {
		if got := pathesc.Escape(tc.in); got != tc.escape {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.escape)
		}
		if got := pathesc.Display(tc.in); got != tc.display {
			t.Errorf("Display(%q) = %q, want %q", tc.in, got, tc.display)
		}
		for _, s := range []string{tc.escape, tc.display} {
			if back, err := pathesc.Unescape(s); err != nil || back != tc.in {
				t.Errorf("Unescape(%q) = %q, %v; want %q", s, back, err, tc.in)
			}
		}
	}
}

func TestDistinct(t *testing.T) {
	t.Parallel()
	// Paths that differ only in an invalid byte, or in an invalid byte
	// against its spelled-out escape, stay distinct.
	paths := []string{"/mnt/a\xff", "/mnt/a\xfe", `/mnt/a\xff`, "/mnt/a\uFFFD", "/mnt/a"}
	for _, f := range []func(string) string{pathesc.Escape, pathesc.Display} {
		seen := map[string]string{}
		for _, p := range paths {
			e := f(p)
			if q, dup := seen[e]; dup {
				t.Fatalf("%q and %q both escape to %q", p, q, e)
			}
			seen[e] = p
		}
	}
}

func TestUnescapeRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{`\`, `a\q`, `\x1`, `\xzz`, `\u12`, `\ud800`, `\U00110000`} {
		if _, err := pathesc.Unescape(s); err == nil {
			t.Errorf("Unescape(%q) succeeded", s)
		}
	}
}

// FuzzEscape holds the contract for any bytes: Escape and Display give
// valid UTF-8, Unescape restores the input, Escape keeps valid UTF-8 without
// backslashes unchanged, and Display leaves no non-printable rune.
func FuzzEscape(f *testing.F) {
	f.Add("/mnt/a\xff\\x\u202e\x1b[0m\u2028")
	f.Add(`\\xff\u0041`)
	f.Fuzz(func(t *testing.T, s string) {
		e, d := pathesc.Escape(s), pathesc.Display(s)
		if !utf8.ValidString(e) || !utf8.ValidString(d) {
			t.Fatalf("not UTF-8: %q %q", e, d)
		}
		for _, x := range []string{e, d} {
			if back, err := pathesc.Unescape(x); err != nil || back != s {
				t.Fatalf("Unescape(%q) = %q, %v; want %q", x, back, err, s)
			}
		}
		if utf8.ValidString(s) && !containsBackslash(s) && e != s {
			t.Fatalf("Escape changed %q to %q", s, e)
		}
		for _, r := range d {
			if !unicode.IsPrint(r) {
				t.Fatalf("Display(%q) = %q keeps %U", s, d, r)
			}
		}
	})
}

func containsBackslash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			return true
		}
	}
	return false
}
