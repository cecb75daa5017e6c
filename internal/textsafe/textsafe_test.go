package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTextAndLine(t *testing.T) {
	tests := map[string]struct {
		in, text, line string
	}{
		"plain ASCII":          {"c2_beacon on gw-osaka", "c2_beacon on gw-osaka", "c2_beacon on gw-osaka"},
		"Japanese":             {"拠点「大阪」の警報", "拠点「大阪」の警報", "拠点「大阪」の警報"},
		"empty":                {"", "", ""},
		"ANSI colour":          {"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`, `\x1b[31mred\x1b[0m`},
		"BEL":                  {"ding\a", `ding\x07`, `ding\x07`},
		"NUL and DEL":          {"a\x00b\x7f", `a\x00b\x7f`, `a\x00b\x7f`},
		"lone CR overwrites":   {"all good\rcompromised", `all good\rcompromised`, `all good\rcompromised`},
		"CR LF is a line feed": {"one\r\ntwo", "one\ntwo", `one\r\ntwo`},
		"tab and newline":      {"a\tb\nc", "a\tb\nc", `a\tb\nc`},
		"C1 CSI and NEL":       {"x\u009b31my\u0085", `x\u009b31my\u0085`, `x\u009b31my\u0085`},
		"RLO file name":        {"invoice\u202Efdp.exe", `invoice\u202efdp.exe`, `invoice\u202efdp.exe`},
		"every bidi control": {"\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069\u200E\u200F\u061C",
			`\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c`,
			`\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c`},
		"zero width and BOM":      {"pay\u200bpal\ufeff", `pay\u200bpal\ufeff`, `pay\u200bpal\ufeff`},
		"line separators":         {"a\u2028b\u2029c", `a\u2028b\u2029c`, `a\u2028b\u2029c`},
		"tag characters":          {"x\U000E0041", `x\U000e0041`, `x\U000e0041`},
		"invalid UTF-8":           {"ab\xffc\xe3\x81", `ab\xffc\xe3\x81`, `ab\xffc\xe3\x81`},
		"replacement char stays":  {"a\uFFFDb", "a\uFFFDb", "a\uFFFDb"},
		"backslash is left alone": {`C:\Users\x1b`, `C:\Users\x1b`, `C:\Users\x1b`},
		"no-break space stays":    {"87\u00a0B", "87\u00a0B", "87\u00a0B"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Text(tc.in); got != tc.text {
				t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.text)
			}
			if got := Line(tc.in); got != tc.line {
				t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.line)
			}
		})
	}
}

// Whatever goes in, nothing hidden comes out raw, the result is valid
// UTF-8, and escaping again changes nothing.
func TestNothingHiddenSurvives(t *testing.T) {
	var all strings.Builder
	for r := rune(0); r <= 0x10FFFF; r++ {
		if utf8.ValidRune(r) && Hidden(r) {
			all.WriteRune(r)
		}
	}
	all.WriteString("\xff\xfe")
	for name, f := range map[string]func(string) string{"Text": Text, "Line": Line} {
		out := f(all.String())
		if !utf8.ValidString(out) {
			t.Errorf("%s: not valid UTF-8", name)
		}
		for _, r := range out {
			if Hidden(r) && (name == "Line" || (r != '\n' && r != '\t')) {
				t.Errorf("%s: %U survives raw", name, r)
			}
		}
		if again := f(out); again != out {
			t.Errorf("%s is not idempotent", name)
		}
	}
}

func FuzzLine(f *testing.F) {
	for _, s := range []string{"\x1b[31m", "invoice\u202Efdp.exe", "\r\n", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Line(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Line(%q) is not valid UTF-8", s)
		}
		for _, r := range out {
			if Hidden(r) {
				t.Fatalf("Line(%q) = %q keeps %U", s, out, r)
			}
		}
		if Line(out) != out {
			t.Fatalf("Line is not idempotent on %q", s)
		}
	})
}
