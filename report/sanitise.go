package report

import (
	"strings"

	"github.com/warden-ir/warden/internal/textsafe"
)

// sanitised is d with every string passed through textsafe.Text: control,
// bidi and other invisible characters from alerts, people's reasons and
// artefact names are shown as visible escapes (\x1b, \u202e) in both
// formats, before HTML or Markdown escaping. It runs on the whole laid-out
// document rather than on chosen fields, so a field added later cannot
// slip past; Warden's own texts contain none of these characters and come
// through unchanged.
func (d document) sanitised() document {
	t := textsafe.Text
	d.Title = t(d.Title)
	d.Meta = sanitisedItems(d.Meta)
	d.Banner.Text = t(d.Banner.Text)
	d.MgmtHeading, d.TechHeading = t(d.MgmtHeading), t(d.TechHeading)
	d.Mgmt = sanitisedSections(d.Mgmt)
	d.Tech = sanitisedSections(d.Tech)

	p := &d.Timeline
	p.Title, p.Alt = t(p.Title), t(p.Alt)
	p.Rows = sanitisedEach(p.Rows, func(r pictureRow) pictureRow {
		r.Label, r.Offset, r.Clock = t(r.Label), t(r.Offset), t(r.Clock)
		return r
	})
	p.Ticks = sanitisedEach(p.Ticks, func(tk pictureTick) pictureTick {
		tk.Label = t(tk.Label)
		return tk
	})
	q := &d.Intrusion
	q.Title, q.Alt = t(q.Title), t(q.Alt)
	q.Rows = sanitisedEach(q.Rows, func(r pictureRow) pictureRow {
		r.Label, r.Offset, r.Clock = t(r.Label), t(r.Offset), t(r.Clock)
		return r
	})
	q.Ticks = sanitisedEach(q.Ticks, func(tk pictureTick) pictureTick {
		tk.Label = t(tk.Label)
		return tk
	})
	q.Lines = sanitisedStrings(q.Lines)
	return d
}

// sanitisedEach is a new slice of f applied to every element of in (nil
// stays nil), so the document's own slices are left as they were.
func sanitisedEach[T any](in []T, f func(T) T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func sanitisedSections(in []section) []section {
	return sanitisedEach(in, func(s section) section {
		s.Heading = textsafe.Text(s.Heading)
		s.Blocks = sanitisedEach(s.Blocks, sanitisedBlock)
		return s
	})
}

func sanitisedBlock(b block) block {
	b.Para, b.Code = textsafe.Text(b.Para), textsafe.Text(b.Code)
	if b.Pre != "" {
		lines := strings.Split(b.Pre, "\n")
		b.Pre = strings.Join(sanitisedStrings(lines), "\n")
	}
	b.Bullets, b.Numbered = sanitisedItems(b.Bullets), sanitisedItems(b.Numbered)
	if b.Table != nil {
		b.Table = &table{Head: sanitisedStrings(b.Table.Head), Rows: sanitisedEach(b.Table.Rows, sanitisedStrings), Mono: b.Table.Mono}
	}
	return b
}

func sanitisedItems(in []item) []item {
	return sanitisedEach(in, func(it item) item { return item{Label: textsafe.Text(it.Label), Text: textsafe.Text(it.Text)} })
}

func sanitisedStrings(in []string) []string { return sanitisedEach(in, textsafe.Text) }
