package report

import (
	"bytes"
	"fmt"
	"html/template"
	"time"
)

// TimelineColour is the fill of the timeline's axis band and markers. It is
// used nowhere else on the page, so a screenshot test can find the picture
// by counting pixels of this colour.
const TimelineColour = "#c8007a"

// timelinePicture is the inline SVG's geometry, computed in Go so the
// template only places numbers and escaped text.
type timelinePicture struct {
	Title   string
	Alt     string
	Width   int
	Height  int
	AxisY   int
	AxisX0  int
	AxisW   int
	Rows    []pictureRow
	Ticks   []pictureTick
	Colour  string
	Present bool
}

type pictureRow struct {
	X, Y       int
	TextX      int
	Anchor     string // start or end
	Label      string
	Offset     string
	Clock      string
	Contained  bool
	Emphasised bool
}

type pictureTick struct {
	X      int
	Label  string
	Anchor string
}

const (
	picWidth   = 960
	picMargin  = 24
	picTop     = 44
	picRowStep = 24
)

// shortLabel is a milestone's caption in the picture.
func shortLabel(m Model, ms Milestone, l loc) string {
	switch ms.Kind {
	case MilestoneAlert:
		return l.f("short.alert")
	case MilestoneDecision:
		return l.f("short.decision")
	case MilestoneApproval:
		return l.f("short.approval", l.who(ms.Detail))
	case MilestoneContained:
		return l.f("short.contained")
	}
	w := l.word("action", ms.Action)
	if ms.State != "succeeded" {
		w += l.f("short.state", l.word("stepstate", ms.State))
	}
	return w
}

func picture(m Model, l loc) timelinePicture {
	p := timelinePicture{Title: l.f("svg.title"), Width: picWidth, Colour: TimelineColour, AxisX0: picMargin, AxisW: picWidth - 2*picMargin}
	if len(m.Milestones) == 0 {
		return p
	}
	p.Present = true
	t0 := m.Milestones[0].At
	span := m.Milestones[len(m.Milestones)-1].At.Sub(t0)
	if span <= 0 {
		span = time.Millisecond
	}
	xOf := func(t time.Time) int {
		return picMargin + int(float64(p.AxisW)*float64(t.Sub(t0))/float64(span)+0.5)
	}
	var alts []string
	for i, ms := range m.Milestones {
		x := xOf(ms.At)
		row := pictureRow{X: x, Y: picTop + i*picRowStep, Label: shortLabel(m, ms, l), Offset: "+" + l.duration(ms.At.Sub(t0)),
			Clock: ms.At.In(l.zone).Format("15:04:05.000") + " " + l.zoneName(ms.At), Contained: ms.Kind == MilestoneContained,
			Emphasised: ms.Kind == MilestoneAlert || ms.Kind == MilestoneContained}
		if ms.At.Sub(t0) == 0 {
			row.Offset = "0"
		}
		if x < picWidth/2 {
			row.TextX, row.Anchor = x+12, "start"
		} else {
			row.TextX, row.Anchor = x-12, "end"
		}
		p.Rows = append(p.Rows, row)
		alts = append(alts, row.Offset+" "+row.Label)
	}
	p.AxisY = picTop + len(m.Milestones)*picRowStep + 4
	p.Height = p.AxisY + 40
	for i := 0; i <= 4; i++ {
		d := span * time.Duration(i) / 4
		label := "+" + l.duration(d)
		if i == 0 {
			label = "0"
		}
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		p.Ticks = append(p.Ticks, pictureTick{X: picMargin + p.AxisW*i/4, Label: label, Anchor: anchor})
	}
	p.Alt = l.f("svg.alt", l.list(alts))
	return p
}

// HTML writes the report as one self-contained, printable page in lang
// ("ja" or "en"): inline CSS, an inline SVG timeline, no external fonts,
// scripts or images. Every string is escaped by html/template. The output
// depends only on m and lang, byte for byte.
func HTML(m Model, lang string) ([]byte, error) {
	d, err := build(m, lang)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("rendering HTML report: %w", err)
	}
	return b.Bytes(), nil
}

// sectionData hands a section and its document to the section template.
type sectionData struct {
	S section
	D document
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"mono": func(t *table, i int) bool { return t.Mono[i] },
	"pair": func(s section, d document) sectionData { return sectionData{S: s, D: d} },
	"add":  func(a, b int) int { return a + b },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 15px/1.6 system-ui, -apple-system, "Segoe UI", "Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic", Meiryo, "Noto Sans CJK JP", "Noto Sans JP", sans-serif; color: #1b1f24; background: #fff; }
h1 { font-size: 22px; margin: 0 0 12px; line-height: 1.35; }
h2 { font-size: 19px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #1b1f24; }
h3 { font-size: 16px; margin: 18px 0 6px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 14px; font-size: 13px; color: #44505c; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
.banner { padding: 12px 16px; border-radius: 6px; font-weight: 600; margin: 8px 0 4px; border-left: 8px solid; }
.banner.ok { background: #e8f5ec; border-color: #1f7a3a; }
.banner.warn { background: #fff6dd; border-color: #b07800; }
.banner.alert { background: #fde8e8; border-color: #b3261e; }
.mgmt { border: 1px solid #c9d1d9; border-radius: 8px; padding: 4px 20px 12px; background: #fbfcfd; }
ul, ol { margin: 4px 0 8px; padding-left: 24px; }
li { margin: 2px 0; }
p { margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 12.5px; }
th, td { border: 1px solid #c9d1d9; padding: 4px 6px; text-align: left; vertical-align: top; overflow-wrap: break-word; word-break: keep-all; }
td.mono { word-break: break-all; }
th { background: #eef1f4; }
.mono, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
pre { background: #f4f6f8; padding: 8px; border-radius: 4px; overflow-wrap: anywhere; white-space: pre-wrap; }
figure { margin: 10px 0; }
svg.timeline { width: 100%; max-width: 960px; height: auto; display: block; }
svg.timeline text { font-family: inherit; font-size: 13px; fill: #1b1f24; stroke: #fbfcfd; stroke-width: 4px; stroke-linejoin: round; paint-order: stroke; }
svg.timeline text.tick { font-size: 11px; fill: #44505c; }
svg.timeline text.clock { fill: #5b6671; font-size: 11px; }
footer { margin-top: 32px; font-size: 12px; color: #5b6671; }
@media print {
  body { padding: 0; font-size: 11pt; }
  .tech { break-before: page; }
  table, figure, li { break-inside: avoid; }
  .banner, th, .mgmt { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<dl class="meta">{{range .Meta}}<dt>{{.Label}}</dt><dd>{{.Text}}</dd>{{end}}</dl>
<div class="banner {{.Banner.Tone}}" role="status">{{.Banner.Text}}</div>
<section class="mgmt">
<h2>{{.MgmtHeading}}</h2>
{{range .Mgmt}}{{template "section" (pair . $)}}{{end}}
</section>
<section class="tech">
<h2>{{.TechHeading}}</h2>
{{range .Tech}}{{template "section" (pair . $)}}{{end}}
</section>
<footer>Warden · {{(index .Meta 0).Text}}</footer>
</body>
</html>
{{define "section"}}<h3 id="{{.S.ID}}">{{.S.Heading}}</h3>
{{range .S.Blocks}}{{if .Para}}<p>{{.Para}}</p>
{{else if .Bullets}}<ul>{{range .Bullets}}<li>{{if .Label}}<strong>{{.Label}}</strong>: {{end}}{{.Text}}</li>{{end}}</ul>
{{else if .Numbered}}<ol>{{range .Numbered}}<li>{{if .Label}}<strong>{{.Label}}</strong>: {{end}}{{.Text}}</li>{{end}}</ol>
{{else if .Table}}{{template "table" .Table}}
{{else if .Code}}<pre>{{.Code}}</pre>
{{else if .Picture}}{{template "timeline" $.D.Timeline}}
{{else if .Pre}}<pre>{{.Pre}}</pre>
{{else if .Chart}}{{template "intrusion" $.D.Intrusion}}
{{end}}{{end}}{{end}}
{{define "table"}}<table><thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{$t := .}}{{range .Rows}}<tr>{{range $i, $c := .}}<td{{if mono $t $i}} class="mono"{{end}}>{{if $c}}{{$c}}{{else}}—{{end}}</td>{{end}}</tr>
{{end}}</tbody></table>{{end}}
{{define "intrusion"}}{{if .Present}}<figure>
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="{{.Alt}}">
<title>{{.Alt}}</title>
<text x="{{.AxisX0}}" y="22" font-weight="600">{{.Title}}</text>
{{$c := .Colour}}{{$axis := .AxisY}}{{range .Rows}}<line x1="{{.X}}" y1="{{.Y}}" x2="{{.X}}" y2="{{$axis}}" stroke="#8c959f" stroke-dasharray="3 3"/>
<circle cx="{{.X}}" cy="{{.Y}}" r="{{if .Emphasised}}7{{else}}4{{end}}" fill="{{if .Emphasised}}{{$c}}{{else}}#5b6671{{end}}"/>
<text x="{{.TextX}}" y="{{.Y}}" dy="4.5" text-anchor="{{.Anchor}}"{{if .Contained}} font-weight="700"{{end}}>{{.Offset}}  {{.Label}} <tspan class="clock">{{.Clock}}</tspan></text>
{{end}}<rect x="{{.AxisX0}}" y="{{.AxisY}}" width="{{.AxisW}}" height="6" rx="2" fill="#5b6671"/>
{{range .Ticks}}<line x1="{{.X}}" y1="{{$axis}}" x2="{{.X}}" y2="{{add $axis 14}}" stroke="#1b1f24"/><text class="tick" x="{{.X}}" y="{{add $axis 30}}" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{end}}</svg>
</figure>{{end}}{{end}}
{{define "timeline"}}{{if .Present}}<figure>
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="{{.Alt}}">
<title>{{.Alt}}</title>
<text x="{{.AxisX0}}" y="22" font-weight="600">{{.Title}}</text>
{{$c := .Colour}}{{$axis := .AxisY}}{{range .Rows}}<line x1="{{.X}}" y1="{{.Y}}" x2="{{.X}}" y2="{{$axis}}" stroke="#8c959f" stroke-dasharray="3 3"/>
<circle cx="{{.X}}" cy="{{.Y}}" r="{{if .Emphasised}}8{{else}}6{{end}}" fill="{{$c}}"/>
<text x="{{.TextX}}" y="{{.Y}}" dy="4.5" text-anchor="{{.Anchor}}"{{if .Contained}} font-weight="700"{{end}}>{{.Offset}}  {{.Label}} <tspan class="clock">{{.Clock}}</tspan></text>
{{end}}<rect x="{{.AxisX0}}" y="{{.AxisY}}" width="{{.AxisW}}" height="8" rx="2" fill="{{$c}}"/>
{{range .Ticks}}<line x1="{{.X}}" y1="{{$axis}}" x2="{{.X}}" y2="{{add $axis 14}}" stroke="#1b1f24"/><text class="tick" x="{{.X}}" y="{{add $axis 30}}" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{end}}</svg>
</figure>{{end}}{{end}}`
