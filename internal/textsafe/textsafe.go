// Package textsafe makes text that came from outside Warden (alert titles
// and summaries, labels, observables, artefact names, people's comments and
// reasons) safe to show to a person: in a terminal table, a chat message,
// an HTML page or a Markdown file.
//
// It owns one decision, made once for every place text reaches a person:
// which code points are never shown raw, and what is shown instead. Those
// are the control characters (C0, DEL and C1: ESC starts terminal escape
// sequences, CR overwrites a line, BEL rings), the format characters
// (category Cf: the bidi embeddings, overrides and isolates U+202A–U+202E
// and U+2066–U+2069, the marks U+200E, U+200F and U+061C, zero-width
// characters, the BOM, tag characters) and the line and paragraph
// separators U+2028 and U+2029. Each is replaced by a visible escape, as
// Go writes it: \x1b, \x07, \r, \u202e, \U000e0041; a byte that is not
// UTF-8 becomes \xff. Escaping rather than deleting is deliberate: an
// incident responder must see that an alert carried an ESC or a
// right-to-left override ("invoice\u202efdp.exe"), which is itself a sign
// of an attack, and must never be shown a file name reversed.
//
// A backslash is not escaped: a literal "\x1b" in an alert looks the same
// as an escaped ESC. That costs nothing in safety (neither is an escape
// sequence any more) and keeps Windows paths readable.
//
// The package does not escape for a markup language: html/template and the
// report's Markdown writer still do that after it.
package textsafe

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text returns s with every code point that is never shown raw replaced by
// its visible escape. Tab and newline are kept as layout, and CR LF becomes
// LF; a lone CR is escaped. Use it for text that may span lines (a
// paragraph, a chat message body).
func Text(s string) string { return escape(s, false) }

// Line is Text for places that hold one line (a table cell, a title): tab
// and newline are escaped too, so they cannot break a row or start one.
func Line(s string) string { return escape(s, true) }

// Hidden reports whether r is never shown raw by Text or Line (tab and
// newline aside, which Text keeps).
func Hidden(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

func escape(s string, line bool) string {
	if clean(s, line) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\r' && !line && strings.HasPrefix(s[i+1:], "\n"):
			// CR LF is a line break from another operating system.
		case (r == '\n' || r == '\t') && !line:
			b.WriteRune(r)
		case Hidden(r):
			b.WriteString(visible(r))
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// clean reports whether s needs no change, without allocating.
func clean(s string, line bool) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false
			}
			continue
		}
		if Hidden(r) && (line || (r != '\n' && r != '\t')) {
			return false
		}
	}
	return true
}

// visible is r's escape.
func visible(r rune) string {
	switch r {
	case '\t':
		return `\t`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	}
	switch {
	case r < utf8.RuneSelf:
		return fmt.Sprintf(`\x%02x`, r)
	case r <= 0xFFFF:
		return fmt.Sprintf(`\u%04x`, r)
	}
	return fmt.Sprintf(`\U%08x`, r)
}
