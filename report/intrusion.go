package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/investigation"
	"github.com/warden-ir/warden/store"
)

// Intrusion is what the investigate step found: the summary of the
// attacker's timeline (investigation.Summary) from the latest step that
// succeeded, or why the latest one failed.
type Intrusion struct {
	Investigated bool                  `json:"investigated"`
	Run          string                `json:"run,omitempty"`
	At           time.Time             `json:"at,omitzero"`
	Failed       string                `json:"failed,omitempty"`
	Summary      investigation.Summary `json:"summary,omitzero"`
}

// loadIntrusion reads an investigate step's result (the summary its
// Verify carries).
func loadIntrusion(m *Model, run string, s store.Step) {
	if s.Action != actions.NameInvestigate {
		return
	}
	switch s.State {
	case store.StepSucceeded:
		var res struct {
			Details struct {
				Verify struct {
					Investigation *investigation.Summary `json:"investigation"`
				} `json:"verify"`
			} `json:"details"`
		}
		if json.Unmarshal(s.Result, &res) == nil && res.Details.Verify.Investigation != nil {
			m.Intrusion = Intrusion{Investigated: true, Run: run, At: s.FinishedAt, Summary: *res.Details.Verify.Investigation}
		}
	case store.StepFailed, store.StepSkipped:
		if !m.Intrusion.Investigated {
			m.Intrusion.Failed = s.Error
			if m.Intrusion.Failed == "" {
				var res stepResult
				_ = json.Unmarshal(s.Result, &res)
				m.Intrusion.Failed = res.Summary
			}
		}
	}
}

// intrusionKeyRows bounds the key events the report lists and draws.
const intrusionKeyRows = 40

// techIntrusion is the section "Intrusion path and scope".
func techIntrusion(m Model, l loc) section {
	s := section{ID: "intrusion", Heading: l.f("tech.intrusion")}
	in := m.Intrusion
	if !in.Investigated {
		p := l.f("intr.none", m.Incident.ID)
		if in.Failed != "" {
			p = l.f("intr.failed", l.says(in.Failed), m.Incident.ID)
		}
		return section{ID: s.ID, Heading: s.Heading, Blocks: []block{{Para: p}}}
	}
	sum := in.Summary
	var offs []string
	for _, o := range sum.Offsets {
		offs = append(offs, l.f("intr.offset", o.Gateway, signedSeconds(o.Offset), seconds(o.Uncertainty)))
	}
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.window", l.stamp(sum.Since), l.stamp(sum.Until), l.and(sum.Collected), sum.Events,
		l.list(offs))})

	// Entry point, as far as known.
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.entry")})
	if len(sum.EntryPoint) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("intr.entry.none")})
	} else {
		var items []item
		for _, c := range sum.EntryPoint {
			items = append(items, item{Label: l.stamp(c.Event.Time), Text: candidateText(c, l)})
		}
		s.Blocks = append(s.Blocks, block{Numbered: items})
	}

	// The timeline as a picture, then as a table.
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.timeline", len(sum.Key), sum.Events)}, block{Chart: true})
	t := &table{Head: []string{l.f("col.time"), l.f("col.utc"), l.f("col.where"), l.f("col.what"), l.f("col.who"), l.f("col.address"), l.f("col.marks"), l.f("col.record")},
		Mono: map[int]bool{5: true, 7: true}}
	for _, e := range sum.Key[:min(len(sum.Key), intrusionKeyRows)] {
		when := l.stamp(e.Time)
		if e.TimeApprox {
			when += l.f("intr.approx")
		}
		t.Rows = append(t.Rows, []string{when, utcStamp(e.Time), e.Site + " / " + e.Host, eventText(e, l), e.Actor, e.Address, marksText(e.Marks, l), recordOf(e)})
	}
	s.Blocks = append(s.Blocks, block{Table: t})
	for _, e := range sum.Key {
		if e.Action == "config_changed" && e.Detail["diff"] != "" {
			s.Blocks = append(s.Blocks, block{Para: l.f("intr.diff", e.Object, e.Host, l.stamp(e.Time))}, block{Pre: e.Detail["diff"]})
		}
	}

	// Where the attacker went.
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.lateral")})
	if len(sum.Reached) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("intr.lateral.none")})
	} else {
		var items []item
		for _, r := range sum.Reached {
			items = append(items, item{Label: l.f("intr.site", r.Site), Text: l.f("intr.reached", r.Host)})
		}
		for _, c := range sum.Lateral {
			items = append(items, item{Label: l.stamp(c.Event.Time), Text: candidateText(c, l)})
		}
		s.Blocks = append(s.Blocks, block{Bullets: items})
	}

	// What left.
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.out")})
	if len(sum.Transfers) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("intr.out.none")})
	} else {
		tt := &table{Head: []string{l.f("col.destination"), l.f("col.where.out"), l.f("col.bytes"), l.f("col.before"), l.f("col.connections")}, Mono: map[int]bool{0: true}}
		for _, x := range sum.Transfers {
			peer := l.f("intr.outside")
			if x.Site != "" {
				peer = l.f("intr.peer", x.Site, x.Peer)
			}
			if x.Suspect {
				peer += l.f("intr.suspect")
			}
			bytes := fmt.Sprintf("%s (%d)", size(int64(x.Bytes)), x.Bytes)
			if !x.Accounted {
				bytes = l.f("intr.unaccounted")
			}
			tt.Rows = append(tt.Rows, []string{x.Destination, peer, bytes, size(int64(x.Before)), fmt.Sprint(x.Flows)})
		}
		s.Blocks = append(s.Blocks, block{Table: tt})
	}

	// What is still unknown.
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.unknown")})
	if len(sum.Gaps) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("intr.unknown.none")})
	} else {
		var items []item
		for _, g := range sum.Gaps {
			text := l.says(g.What) + l.f("intr.because") + l.says(g.Why)
			if g.Unreachable {
				text = l.f("intr.unreachable", g.Gateway, l.says(g.Why))
			}
			items = append(items, item{Label: g.Gateway, Text: text})
		}
		s.Blocks = append(s.Blocks, block{Bullets: items})
	}
	s.Blocks = append(s.Blocks, block{Para: l.f("intr.evidence", sum.Timeline, sum.Export, investigation.TimesketchName)})
	return s
}

// intrusionSentence is the one sentence of the management summary.
func intrusionSentence(m Model, l loc) string {
	in := m.Intrusion
	if !in.Investigated {
		return ""
	}
	sum := in.Summary
	entry := l.f("intr.s.noentry")
	for _, c := range sum.EntryPoint {
		if c.Why == investigation.WhyNewSourceLogin {
			entry = l.f("intr.s.login", c.Event.Actor, c.Event.Host, c.Event.Address, l.short(c.Event.Time))
			break
		}
	}
	if entry == l.f("intr.s.noentry") && len(sum.EntryPoint) > 0 {
		entry = l.f("intr.s.other", candidateText(sum.EntryPoint[0], l))
	}
	reach := l.f("intr.s.noreach")
	if len(sum.Reached) > 0 {
		reach = l.f("intr.s.reach", reachedSites(m, l))
	}
	out := l.f("intr.s.noout")
	if len(sum.Transfers) > 0 {
		var dst []string
		for _, x := range sum.Transfers[:min(3, len(sum.Transfers))] {
			dst = append(dst, l.f("intr.s.dst", size(int64(x.Bytes)), x.Destination))
		}
		out = l.f("intr.s.out", l.and(dst))
	}
	var unknown []string
	for _, g := range sum.Gaps {
		if g.Unreachable {
			unknown = append(unknown, g.Gateway)
		}
	}
	gaps := ""
	if len(unknown) > 0 {
		gaps = l.f("intr.s.gaps", l.and(unknown))
	}
	return l.f("intr.s", entry, reach, out, gaps)
}

// reachedSites names the sites the investigation found reached.
func reachedSites(m Model, l loc) string {
	var sites []string
	for _, r := range m.Intrusion.Summary.Reached {
		sites = append(sites, l.f("intr.s.site", r.Site, r.Host))
	}
	return l.and(sites)
}

// candidateText says why an event is a candidate.
func candidateText(c investigation.Marked, l loc) string {
	e := c.Event
	switch c.Why {
	case investigation.WhyNewSourceLogin:
		t := l.f("why.login", e.Host, e.Actor, e.Address)
		if c.Failures > 0 {
			t += l.f("why.login.failures", c.Failures)
		}
		return t
	case investigation.WhyFirstChange:
		return l.f("why.change", e.Object, e.Host)
	case investigation.WhyNewDestination:
		return l.f("why.destination", e.Host, e.Detail["dst"])
	case investigation.WhyLateralConnect:
		return l.f("why.lateral", e.Host, e.Detail["src"], e.Detail["dst"], c.Site)
	case investigation.WhyLateralLogin:
		return l.f("why.lateral.login", e.Address, e.Host, e.Actor, c.Site)
	}
	return eventText(e, l)
}

// eventText says what an event was, in l's words around its record's
// own names.
func eventText(e investigation.Event, l loc) string {
	what := l.word("invaction", e.Action)
	switch {
	case e.Object != "" && e.Outcome != "":
		return fmt.Sprintf("%s: %s (%s)", what, e.Object, e.Outcome)
	case e.Object != "":
		return what + ": " + e.Object
	}
	return what
}

func marksText(marks []string, l loc) string {
	var out []string
	for _, mk := range marks {
		out = append(out, l.word("mark", mk))
	}
	return strings.Join(out, ", ")
}

func recordOf(e investigation.Event) string {
	r := e.Artefact
	if e.Line > 0 {
		r += fmt.Sprintf(":%d", e.Line)
	}
	if e.Evidence != "" {
		r += " (" + e.Evidence + ")"
	}
	return r
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func signedSeconds(d time.Duration) string { return fmt.Sprintf("%+.3f s", d.Seconds()) }

// ---- the picture ----

// intrusionChart is the timeline of key events as a picture: an inline
// SVG in HTML, lines of text in Markdown.
type intrusionChart struct {
	Present bool
	Title   string
	Alt     string
	Width   int
	Height  int
	AxisY   int
	AxisX0  int
	AxisW   int
	Colour  string
	Rows    []pictureRow
	Ticks   []pictureTick
	// Lines are the Markdown form.
	Lines []string
}

// IntrusionColour marks the attacker's events in the picture.
const IntrusionColour = "#b3261e"

func intrusionPicture(m Model, l loc) intrusionChart {
	p := intrusionChart{Title: l.f("intr.svg.title"), Width: picWidth, AxisX0: picMargin, AxisW: picWidth - 2*picMargin, Colour: IntrusionColour}
	key := m.Intrusion.Summary.Key
	if !m.Intrusion.Investigated || len(key) == 0 {
		return p
	}
	key = key[:min(len(key), intrusionKeyRows)]
	p.Present = true
	t0, t1 := key[0].Time, key[len(key)-1].Time
	span := t1.Sub(t0)
	if span <= 0 {
		span = time.Millisecond
	}
	var alts []string
	for i, e := range key {
		x := picMargin + int(float64(p.AxisW)*float64(e.Time.Sub(t0))/float64(span)+0.5)
		label := e.Host + " " + eventText(e, l)
		if len(e.Marks) > 0 {
			label += " [" + marksText(e.Marks, l) + "]"
		}
		off := "+" + l.duration(e.Time.Sub(t0))
		if e.Time.Equal(t0) {
			off = "0"
		}
		row := pictureRow{X: x, Y: picTop + i*picRowStep, Label: label, Offset: off,
			Clock: e.Time.In(l.zone).Format("15:04:05.000") + " " + l.zoneName(e.Time), Emphasised: len(e.Marks) > 0,
			Contained: slices.Contains(e.Marks, investigation.MarkEntryPoint)}
		if x < picWidth*2/5 {
			row.TextX, row.Anchor = x+12, "start"
		} else {
			row.TextX, row.Anchor = x-12, "end"
		}
		p.Rows = append(p.Rows, row)
		alts = append(alts, off+" "+label)
		mark := "·"
		if len(e.Marks) > 0 {
			mark = "●"
		}
		p.Lines = append(p.Lines, fmt.Sprintf("%-10s %s %s  %s", off, mark, row.Clock, label))
	}
	p.AxisY = picTop + len(key)*picRowStep + 4
	p.Height = p.AxisY + 40
	for i := 0; i <= 4; i++ {
		d := span * time.Duration(i) / 4
		label := "+" + l.duration(d)
		if i == 0 {
			label = "0"
		}
		anchor := map[int]string{0: "start", 4: "end"}[i]
		if anchor == "" {
			anchor = "middle"
		}
		p.Ticks = append(p.Ticks, pictureTick{X: picMargin + p.AxisW*i/4, Label: label, Anchor: anchor})
	}
	p.Alt = l.f("intr.svg.alt", l.list(alts))
	return p
}
