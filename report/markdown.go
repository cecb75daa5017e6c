package report

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Markdown writes the report as CommonMark (with GitHub tables) in lang
// ("ja" or "en"). The output depends only on m and lang, byte for byte.
func Markdown(m Model, lang string) ([]byte, error) {
	d, err := build(m, lang)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", mdText(d.Title))
	for _, it := range d.Meta {
		fmt.Fprintf(&b, "- **%s**: %s\n", mdText(it.Label), mdText(it.Text))
	}
	fmt.Fprintf(&b, "\n> **%s**\n\n", mdText(d.Banner.Text))
	fmt.Fprintf(&b, "## %s\n\n", mdText(d.MgmtHeading))
	for _, s := range d.Mgmt {
		writeSection(&b, s, d)
	}
	b.WriteString("---\n\n")
	fmt.Fprintf(&b, "## %s\n\n", mdText(d.TechHeading))
	for _, s := range d.Tech {
		writeSection(&b, s, d)
	}
	return b.Bytes(), nil
}

func writeSection(b *bytes.Buffer, s section, d document) {
	fmt.Fprintf(b, "### %s\n\n", mdText(s.Heading))
	for _, bl := range s.Blocks {
		switch {
		case bl.Para != "":
			fmt.Fprintf(b, "%s\n\n", mdText(bl.Para))
		case len(bl.Bullets) > 0:
			for _, it := range bl.Bullets {
				fmt.Fprintf(b, "- %s\n", mdItem(it))
			}
			b.WriteString("\n")
		case len(bl.Numbered) > 0:
			for i, it := range bl.Numbered {
				fmt.Fprintf(b, "%d. %s\n", i+1, mdItem(it))
			}
			b.WriteString("\n")
		case bl.Table != nil:
			writeTable(b, bl.Table)
		case bl.Code != "":
			fmt.Fprintf(b, "    %s\n\n", strings.ReplaceAll(bl.Code, "\n", " "))
		case bl.Pre != "":
			writeFenced(b, strings.Split(bl.Pre, "\n"))
		case bl.Chart && d.Intrusion.Present:
			writeFenced(b, d.Intrusion.Lines)
		}
	}
}

// writeFenced writes lines as a fenced code block; a fence inside a line
// cannot close it (backticks become U+02CB).
func writeFenced(b *bytes.Buffer, lines []string) {
	b.WriteString("```text\n")
	for _, l := range lines {
		fmt.Fprintf(b, "%s\n", strings.ReplaceAll(l, "`", "ˋ"))
	}
	b.WriteString("```\n\n")
}

func mdItem(it item) string {
	if it.Label == "" {
		return mdText(it.Text)
	}
	return "**" + mdText(it.Label) + "**: " + mdText(it.Text)
}

func writeTable(b *bytes.Buffer, t *table) {
	b.WriteString("|")
	for _, h := range t.Head {
		fmt.Fprintf(b, " %s |", mdText(h))
	}
	b.WriteString("\n|")
	for range t.Head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range t.Rows {
		b.WriteString("|")
		for _, c := range row {
			if c == "" {
				c = "—"
			}
			fmt.Fprintf(b, " %s |", mdText(c))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// mdText makes any string inert in Markdown: line breaks become spaces, and
// characters that could start markup, a link, an HTML tag or a table cell
// are backslash-escaped. An underscore inside a word ("c2_beacon") cannot
// start emphasis and stays as it is, for readability.
func mdText(s string) string {
	var b strings.Builder
	prev := rune(' ')
	for i, r := range s {
		switch r {
		case '\n', '\r', '\t', '\v', '\f':
			b.WriteByte(' ')
			prev = ' '
			continue
		case '\\', '`', '*', '[', ']', '<', '>', '|', '~', '&', '#', '!', '{', '}':
			b.WriteByte('\\')
		case '_':
			next, _ := utf8.DecodeRuneInString(s[i+1:])
			if !(isWordRune(prev) && isWordRune(next)) {
				b.WriteByte('\\')
			}
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		b.WriteRune(r)
		prev = r
	}
	return b.String()
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
