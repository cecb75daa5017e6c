package report

import "github.com/warden-ir/warden/internal/textsafe"

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
	rows := make([]pictureRow, len(p.Rows))
	for i, r := range p.Rows {
		r.Label, r.Offset, r.Clock = t(r.Label), t(r.Offset), t(r.Clock)
		rows[i] = r
	}
	p.Rows = rows
	ticks := make([]pictureTick, len(p.Ticks))
	for i, tk := range p.Ticks {
		tk.Label = t(tk.Label)
		ticks[i] = tk
	}
	p.Ticks = ticks
	return d
}

func sanitisedSections(in []section) []section {
	out := make([]section, len(in))
	for i, s := range in {
		s.Heading = textsafe.Text(s.Heading)
		blocks := make([]block, len(s.Blocks))
		for j, b := range s.Blocks {
			b.Para, b.Code = textsafe.Text(b.Para), textsafe.Text(b.Code)
			b.Bullets, b.Numbered = sanitisedItems(b.Bullets), sanitisedItems(b.Numbered)
			if b.Table != nil {
				t := &table{Head: sanitisedStrings(b.Table.Head), Mono: b.Table.Mono}
				for _, row := range b.Table.Rows {
					t.Rows = append(t.Rows, sanitisedStrings(row))
				}
				b.Table = t
			}
			blocks[j] = b
		}
		s.Blocks = blocks
		out[i] = s
	}
	return out
}

func sanitisedItems(in []item) []item {
	if in == nil {
		return nil
	}
	out := make([]item, len(in))
	for i, it := range in {
		out[i] = item{Label: textsafe.Text(it.Label), Text: textsafe.Text(it.Text)}
	}
	return out
}

func sanitisedStrings(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = textsafe.Text(s)
	}
	return out
}
