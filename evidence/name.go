package evidence

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameBytes keeps names well inside every file system's limit (255).
const maxNameBytes = 180

// SanitizeName turns an artefact name from anywhere (an agent, an alert) into
// one safe as a single file name in an archive and in sha256sum's SHA256SUMS
// format: letters and digits of any script, and . - _ + @ = , are kept;
// everything else (/, \, NUL, control characters, spaces, quotes) becomes
// "_"; ".." never survives; a leading dot is prefixed so nothing hides; the
// result is at most 180 bytes and never empty.
func SanitizeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError:
			b.WriteByte('_')
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		case strings.ContainsRune(".-_+@=,", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", "_")
	}
	if strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	if len(s) > maxNameBytes {
		cut := maxNameBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if strings.Trim(s, "_") == "" {
		return "artefact" + s
	}
	return s
}
