package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/report"
	"github.com/warden-ir/warden/store"
)

// incidentRow is one incident in the list.
type incidentRow struct {
	ID, Title, Gateway, Site, Severity, Status, Opened string
}

// incidentsView is the incident list, which follows new incidents live.
type incidentsView struct {
	Live string
	Seq  int64
	Rows []incidentRow
}

func (c *Console) incidents(rq *request) {
	v, err := c.incidentsView(rq)
	if err != nil {
		rq.internal("listing incidents", err)
		return
	}
	rq.render(http.StatusOK, "incidents", rq.newView("incidents", rq.t("incidents.title"), v))
}

func (c *Console) incidentsView(rq *request) (incidentsView, error) {
	st := c.opt.Controller.Store()
	// The version first: a change after it shows on the next update.
	seq, err := audit.LastSeq(rq.ctx, st.DB(), "")
	if err != nil {
		return incidentsView{}, err
	}
	list, err := st.Incidents(rq.ctx, 200)
	if err != nil {
		return incidentsView{}, err
	}
	v := incidentsView{Live: Prefix + "incidents/live", Seq: seq}
	for _, in := range list {
		v.Rows = append(v.Rows, incidentRow{ID: in.ID, Title: in.Title, Gateway: in.Gateway, Site: in.Site, Severity: in.Severity,
			Status: in.Status, Opened: when(in.OpenedAt, c.zoneOf(in.Gateway))})
	}
	return v, nil
}

func (c *Console) incidentsLive(rq *request) {
	rq.follow(func() (int64, error) { return audit.LastSeq(rq.ctx, c.opt.Controller.Store().DB(), "") }, func() (string, error) {
		v, err := c.incidentsView(rq)
		if err != nil {
			return "", err
		}
		return c.fragment("incidents", "incidents-live", rq.newView("incidents", "", v))
	})
}

// incidentView is an incident's page: everything below the heading is
// redrawn live while runs execute.
type incidentView struct {
	ID, Title string
	Live      string
	Seq       int64
	Body      incidentBody
}

// incidentBody is the live part of an incident's page.
type incidentBody struct {
	ID, Gateway, Site, Severity, Status, Opened string
	Posture, Observed                           string
	Contained, Released                         string
	Timeline                                    timeline
	Signs                                       []signLine
	Runs                                        []runCard
	EvidenceKept                                bool
	Evidence                                    []evidenceLine
	Reports                                     []reportLink
	// Release links to the release request when the gateway is
	// quarantined and the person may ask for it.
	Release string
}

type signLine struct {
	At, Kind, Severity, Summary, Source string
	Duplicate                           bool
}

type evidenceLine struct {
	ID, Name, Kind, Size, SHA256, Collected string
	Custody                                 []custodyLine
}

type custodyLine struct {
	At, Actor, Action, Detail string
}

type reportLink struct {
	Label, Href string
}

func (c *Console) incident(rq *request) {
	id := rq.r.PathValue("id")
	v, err := c.incidentView(rq, id)
	if errors.Is(err, store.ErrNotFound) {
		rq.fail(http.StatusNotFound, rq.t("error.not_found"))
		return
	}
	if err != nil {
		rq.internal("showing an incident", err)
		return
	}
	rq.render(http.StatusOK, "incident", rq.newView("incidents", rq.t("incident.title", id), v))
}

func (c *Console) incidentLive(rq *request) {
	id := rq.r.PathValue("id")
	rq.follow(func() (int64, error) { return audit.LastSeq(rq.ctx, c.opt.Controller.Store().DB(), id) }, func() (string, error) {
		v, err := c.incidentView(rq, id)
		if err != nil {
			return "", err
		}
		return c.fragment("incident", "incident-live", rq.newView("incidents", "", v))
	})
}

// incidentView reads an incident as its report does (report.Load, without
// verifying the whole audit chain on every redraw), its runs as the store
// holds them, and its evidence's chain of custody.
func (c *Console) incidentView(rq *request, id string) (incidentView, error) {
	ctl := c.opt.Controller
	st := ctl.Store()
	seq, err := audit.LastSeq(rq.ctx, st.DB(), id)
	if err != nil {
		return incidentView{}, err
	}
	m, err := report.Load(rq.ctx, st, ctl.Inventory(), c.opt.Ledger, id, report.FourEyes(ctl.FourEyes()), report.VerifyAudit(false))
	if err != nil {
		return incidentView{}, err
	}
	tr := translator{rq.lang}
	zone := c.zoneOf(m.Gateway.ID)
	who := c.people(rq)
	b := incidentBody{ID: id, Gateway: m.Gateway.ID, Site: m.Site.Name, Severity: m.Incident.Severity, Status: m.Incident.Status,
		Opened: when(m.Incident.OpenedAt, zone), Posture: m.Posture.Desired, Observed: m.Posture.Observed,
		Timeline: timelineOf(m, tr, zone, who), EvidenceKept: m.Evidence.Available}
	if ct := m.Containment; ct.Verified && !ct.At.IsZero() {
		b.Contained = tr.T("incident.contained", when(ct.At, zone), since(ct.TimeToContain))
	}
	if rel := m.Release; rel.Run != "" && !rel.At.IsZero() {
		b.Released = tr.T("incident.released", when(rel.At, zone), who.name(rel.ApprovedBy))
	}
	for _, in := range m.Indicators {
		b.Signs = append(b.Signs, signLine{At: when(in.ReceivedAt, zone), Kind: in.Kind, Severity: in.Severity, Summary: in.Summary,
			Source: in.Source, Duplicate: in.Duplicate})
	}
	runs, err := st.Runs(rq.ctx, store.RunFilter{Incident: id, Limit: 100})
	if err != nil {
		return incidentView{}, err
	}
	// Oldest first: the page reads as the incident went.
	for i := len(runs) - 1; i >= 0; i-- {
		full, err := st.Run(rq.ctx, runs[i].ID)
		if err != nil {
			return incidentView{}, err
		}
		b.Runs = append(b.Runs, c.card(rq, full, who))
	}
	if err := c.evidenceOf(rq, m, zone, who, &b); err != nil {
		return incidentView{}, err
	}
	for _, l := range []string{LangJapanese, LangEnglish} {
		for _, f := range []string{report.FormatHTML, report.FormatMarkdown} {
			b.Reports = append(b.Reports, reportLink{Label: tr.T("report." + l + "." + f),
				Href: Prefix + "incidents/" + url.PathEscape(id) + "/report?lang=" + l + "&format=" + f})
		}
	}
	if rq.sess.p.Role.Can(auth.Respond) && m.Posture.Desired == store.PostureQuarantined {
		b.Release = Prefix + "release?gateway=" + url.QueryEscape(m.Gateway.ID) + "&incident=" + url.QueryEscape(id)
	}
	return incidentView{ID: id, Title: m.Incident.Title, Live: Prefix + "incidents/" + url.PathEscape(id) + "/live", Seq: seq, Body: b}, nil
}

// evidenceOf adds the incident's evidence with each artefact's chain of
// custody, read without recording an access.
func (c *Console) evidenceOf(rq *request, m report.Model, zone *time.Location, who people, b *incidentBody) error {
	if c.opt.Ledger == nil {
		return nil
	}
	chains, err := c.opt.Ledger.CustodyOf(rq.ctx, m.Incident.ID)
	if err != nil {
		return err
	}
	tr := translator{rq.lang}
	for _, it := range m.Evidence.Items {
		e := evidenceLine{ID: it.ID, Name: it.Name, Kind: it.Kind, Size: sizeOf(it.Size), SHA256: it.SHA256,
			Collected: tr.T("evidence.by_from", who.name(it.CollectedBy), orDash(it.CollectedFrom), when(it.CollectedAt, zone))}
		for _, ev := range chains[it.ID] {
			e.Custody = append(e.Custody, custodyLine{At: when(ev.At, zone), Actor: who.name(ev.Actor), Action: tr.Word("custody", ev.Action), Detail: ev.Detail})
		}
		b.Evidence = append(b.Evidence, e)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func sizeOf(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// report serves an incident's report, as the API renders it for the
// signed-in person, under the report's own policy: no script at all, its
// inline styles allowed (it is one self-contained, printable file).
func (c *Console) report(rq *request) {
	q := rq.r.URL.Query()
	lang, format := q.Get("lang"), q.Get("format")
	body, err := rq.api().Report(rq.ctx, rq.r.PathValue("id"), lang, format)
	if err != nil {
		rq.acted(err, func(status int, msg string) { rq.fail(status, msg) })
		return
	}
	if format == "" {
		format = report.FormatHTML
	}
	h := rq.w.Header()
	h.Set("Content-Security-Policy", ReportCSP)
	h.Set("Content-Type", report.ContentType(format))
	if format == report.FormatMarkdown {
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", rq.r.PathValue("id")+"-"+lang+".md"))
	}
	_, _ = rq.w.Write(body)
}

// ReportCSP is the policy of a report served by the console: the API's
// (no script, inline styles, data: images), and never in a frame.
const ReportCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// timeline is the picture of an incident: its events top to bottom, each
// with its offset from the first and its clock time.
type timeline struct {
	Alt                     string
	Width, Height           int
	AxisX, AxisTop, AxisEnd int
	OffsetX, LabelX         int
	Rows                    []timelineRow
	Kinds                   []string
}

type timelineRow struct {
	Kind                string
	Pending             bool
	Y, CY               int
	Offset, Label, Full string
}

const (
	tlWidth  = 420
	tlRow    = 30
	tlTop    = 14
	tlAxisX  = 74
	tlLabelX = 88
	tlLabelN = 44
)

type tlEvent struct {
	at      time.Time
	kind    string
	label   string
	pending bool
}

// timelineOf lays the incident's events out, oldest first: alerts,
// decisions, steps (a running one as pending), approvals, evidence,
// containment and release.
func timelineOf(m report.Model, tr translator, zone *time.Location, who people) timeline {
	var evs []tlEvent
	add := func(at time.Time, kind, label string, pending bool) {
		if !at.IsZero() {
			evs = append(evs, tlEvent{at, kind, label, pending})
		}
	}
	for _, in := range m.Indicators {
		add(in.ReceivedAt, "alert", tr.T("tl.alert", in.Kind, tr.Word("severity", in.Severity)), false)
	}
	for _, d := range m.Decisions {
		if d.Matched {
			add(d.At, "decision", tr.T("tl.decision", d.Policy, d.Runbook), false)
		} else {
			add(d.At, "decision", tr.T("tl.nomatch"), false)
		}
	}
	for _, r := range m.Runs {
		for _, s := range r.Steps {
			switch {
			case !s.FinishedAt.IsZero():
				add(s.FinishedAt, "step", tr.T("tl.step", tr.Word("act", s.Action), tr.Word("state", s.State)), false)
			case !s.StartedAt.IsZero():
				add(s.StartedAt, "step", tr.T("tl.step", tr.Word("act", s.Action), tr.Word("state", s.State)), true)
			}
		}
	}
	for _, a := range m.Approvals {
		if !a.Automatic && a.By != "" {
			add(a.At, "approval", tr.T("tl.approval", who.name(a.By)), false)
		}
	}
	for _, e := range m.Evidence.Items {
		add(e.CollectedAt, "evidence", tr.T("tl.evidence", e.Name), false)
	}
	if ct := m.Containment; ct.Verified {
		add(ct.At, "contained", tr.T("tl.contained"), false)
	}
	if m.Release.Run != "" {
		add(m.Release.At, "release", tr.T("tl.released"), false)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	t := timeline{Width: tlWidth, AxisX: tlAxisX, OffsetX: tlAxisX - 12, LabelX: tlLabelX, AxisTop: tlTop / 2,
		Kinds: []string{"alert", "decision", "step", "approval", "evidence", "release"}}
	var alts []string
	for i, e := range evs {
		y := tlTop + i*tlRow + tlRow/2
		off := "0"
		if d := e.at.Sub(evs[0].at); d > 0 {
			off = "+" + since(d)
		}
		full := off + " " + e.label + " · " + when(e.at, zone)
		label := e.label
		if r := []rune(label); len(r) > tlLabelN {
			label = string(r[:tlLabelN-1]) + "…"
		}
		t.Rows = append(t.Rows, timelineRow{Kind: e.kind, Pending: e.pending, Y: y + 4, CY: y, Offset: off, Label: label, Full: full})
		alts = append(alts, off+" "+e.label)
	}
	t.Height = tlTop*2 + max(len(evs), 1)*tlRow
	t.AxisEnd = t.Height - tlTop/2
	if len(alts) == 0 {
		t.Alt = tr.T("tl.empty")
	} else {
		t.Alt = tr.T("tl.title") + ": " + strings.Join(alts, "; ")
	}
	return t
}
