package report

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// document is a report laid out in one language, independent of the output
// format. Every string in it is plain text: renderers escape.
type document struct {
	Lang        string
	Title       string
	Meta        []item
	Banner      banner
	MgmtHeading string
	Mgmt        []section
	TechHeading string
	Tech        []section
	Timeline    timelinePicture
	// Intrusion is the attacker's timeline as a picture.
	Intrusion intrusionChart
}

type banner struct {
	Tone string // ok, warn, alert
	Text string
}

type section struct {
	ID      string
	Heading string
	Blocks  []block
}

// block is one of: a paragraph, a bullet or numbered list, a table, a
// preformatted line, or the place of the timeline picture.
type block struct {
	Para     string
	Bullets  []item
	Numbered []item
	Table    *table
	Code     string
	Picture  bool
	// Pre is preformatted text of several lines (a diff); Chart the
	// place of the intrusion picture.
	Pre   string
	Chart bool
}

// item is a list entry: an optional bold label and its text.
type item struct {
	Label string
	Text  string
}

type table struct {
	Head []string
	Rows [][]string
	// Mono marks columns printed in a fixed-width font (hashes, ids).
	Mono map[int]bool
}

// decisionsNeeded counts what management must decide.
func decisionsNeeded(m Model) int {
	n := 2 // notification, forensics
	for _, a := range m.Approvals {
		if a.Waiting {
			n++
		}
	}
	if m.Containment.Contained || (!m.Containment.Verified && !m.Containment.Pending && !anyWaiting(m)) {
		n++ // release, or whether to isolate at all
	}
	return n
}

func anyWaiting(m Model) bool {
	for _, a := range m.Approvals {
		if a.Waiting {
			return true
		}
	}
	return false
}

func failedContainRun(m Model) (Run, bool) {
	for _, r := range m.Runs {
		if r.State == store.RunFailed {
			for _, s := range r.Steps {
				if s.Action == actions.NameIsolate {
					return r, true
				}
			}
		}
	}
	return Run{}, false
}

func isolatingRunPending(m Model) (Run, bool) {
	for _, r := range m.Runs {
		if r.Terminal() {
			continue
		}
		for _, s := range r.Steps {
			if s.Action == actions.NameIsolate {
				return r, true
			}
		}
	}
	return Run{}, false
}

func build(m Model, lang string) (document, error) {
	l, err := newLoc(lang, m.Site.TimeZone)
	if err != nil {
		return document{}, err
	}
	l.actors = m.Actors
	d := document{Lang: lang, Title: l.f("title", m.Gateway.ID, m.Site.Name), MgmtHeading: l.f("mgmt"), TechHeading: l.f("tech")}
	ref := m.Incident.OpenedAt
	if ref.IsZero() {
		ref = m.GeneratedAt
	}
	times := l.f("meta.times.value", m.Site.Name, l.zone.String(), l.zoneName(ref))
	if m.InventoryUnknown {
		times = l.f("meta.times.unknown", m.Site.Name, l.f("inventory.unknown"))
	}
	d.Meta = []item{
		{l.f("meta.incident"), m.Incident.ID},
		{l.f("meta.severity"), l.word("severity", m.Incident.Severity)},
		{l.f("meta.status"), l.word("status", currentStatus(m))},
		{l.f("meta.generated"), l.when(m.GeneratedAt)},
		{l.f("meta.times"), times},
		{l.f("meta.source"), l.f("meta.source.value")},
	}
	d.Banner = bannerOf(m, l)
	d.Mgmt = []section{whatHappened(m, l), impact(m, l), whatWasDone(m, l), currentState(m, l), decisions(m, l)}
	d.Tech = []section{
		techIndicators(m, l), techDecisions(m, l), techApprovals(m, l), techPeople(m, l), techRuns(m, l), techGateway(m, l),
		techIntrusion(m, l), techCredentials(m, l), techEvidence(m, l), techBaseline(m, l), techAudit(m, l), techTimeline(m, l), techNext(m, l),
	}
	d.Timeline = picture(m, l)
	d.Intrusion = intrusionPicture(m, l)
	return d.sanitised(), nil
}

// statusReleased is the status the header shows for an incident whose
// gateway was released: the store keeps "contained" until the incident is
// closed, but the header must say what holds now, as the banner does.
const statusReleased = "released"

// currentStatus is the incident's status as of the gateway's current
// posture.
func currentStatus(m Model) string {
	if m.Incident.Status != store.IncidentClosed && m.Containment.Released {
		return statusReleased
	}
	return m.Incident.Status
}

func bannerOf(m Model, l loc) banner {
	gw := m.Gateway.ID
	switch {
	case m.Containment.Released && len(m.Release.Owed) > 0:
		return banner{"warn", l.f("banner.released.override", gw, l.when(lastReleased(m)), gateTitles(m.Release.Overridden, l),
			l.who(m.Release.OverriddenBy), l.list(owed(m, l)))}
	case m.Containment.Released:
		return banner{"ok", l.f("banner.released", gw, l.when(lastReleased(m)))}
	case m.Containment.Contained:
		return banner{"ok", l.f("banner.contained", gw, l.when(m.Containment.At), l.n(decisionsNeeded(m), "decision"))}
	case anyWaiting(m):
		return banner{"alert", l.f("banner.awaiting", gw)}
	}
	if r, ok := failedContainRun(m); ok {
		return banner{"alert", l.f("banner.failed", gw, l.says(r.Error))}
	}
	if _, ok := isolatingRunPending(m); ok {
		return banner{"warn", l.f("banner.inprogress", gw)}
	}
	return banner{"warn", l.f("banner.notisolated", gw, l.n(decisionsNeeded(m), "decision"))}
}

func lastReleased(m Model) time.Time {
	var at time.Time
	for _, r := range m.Runs {
		for _, s := range r.Steps {
			if s.Action == actions.NameRelease && s.State == store.StepSucceeded {
				at = s.FinishedAt
			}
		}
	}
	return at
}

func primaryIndicator(m Model) (Indicator, bool) {
	var best Indicator
	found := false
	for _, in := range m.Indicators {
		if in.Duplicate || in.Status == "resolved" {
			continue
		}
		if !found || rank(in.Severity) > rank(best.Severity) {
			best, found = in, true
		}
	}
	if !found && len(m.Indicators) > 0 {
		return m.Indicators[0], true
	}
	return best, found
}

func rank(sev string) int {
	switch sev {
	case "critical":
		return 4
	case "high":
		return 3
	case "medium":
		return 2
	case "low":
		return 1
	}
	return 0
}

func percent(c float64) string { return fmt.Sprintf("%.0f%%", c*100) }

func whatHappened(m Model, l loc) section {
	s := section{ID: "what", Heading: l.f("mgmt.what")}
	in, ok := primaryIndicator(m)
	if !ok {
		s.Blocks = append(s.Blocks, block{Para: l.f("what.none")})
		return s
	}
	at := in.ReceivedAt
	lt := at.In(l.zone)
	timeText := lt.Format("15:04:05") + " " + l.zoneName(at)
	switch {
	case l.utcOnly:
		// The time above is already in UTC.
	case l.lang == LangJapanese:
		timeText += "（UTC " + at.UTC().Format("2006-01-02 15:04:05") + "）"
	default:
		timeText += " (" + at.UTC().Format("2006-01-02 15:04:05") + " UTC)"
	}
	p := l.f("what.sentence", l.date(lt), timeText, in.Source, l.word("kind", in.Kind), m.Gateway.ID, m.Site.Name,
		l.word("severity", in.Severity), percent(in.Confidence))
	var obs []string
	obs = append(obs, in.IPs...)
	obs = append(obs, in.Domains...)
	if len(obs) > 0 {
		p += sep(l) + l.f("what.addresses", l.list(obs))
	}
	if r, ok := l.t["risk."+in.Kind]; ok {
		p += sep(l) + r
	} else {
		p += sep(l) + l.f("risk.other")
	}
	if more := len(m.Indicators) - 1; more > 0 {
		p += sep(l) + l.f("what.more", l.n(more, "indicator"))
	}
	s.Blocks = append(s.Blocks, block{Para: p})
	if sentence := intrusionSentence(m, l); sentence != "" {
		s.Blocks = append(s.Blocks, block{Para: sentence})
	}
	return s
}

// sep is the space between sentences.
func sep(l loc) string {
	if l.lang == LangJapanese {
		return ""
	}
	return " "
}

func credName(l loc, kind string) string { return l.word("cred", kind) }

func tunnelKindName(kind string) string {
	switch kind {
	case inventory.KindWireGuard:
		return "WireGuard"
	case inventory.KindStrongSwan:
		return "IPsec (strongSwan)"
	}
	return kind
}

func impact(m Model, l loc) section {
	s := section{ID: "impact", Heading: l.f("mgmt.impact")}
	if m.InventoryUnknown {
		// Without the inventory nothing is known about the site's VM and
		// networks, its tunnels or the spread to its peers: say so.
		unknown := l.f("inventory.unknown")
		s.Blocks = []block{{Bullets: []item{
			{l.f("impact.site"), l.f("impact.site.unknown", m.Site.Name, m.Gateway.ID, unknown)},
			{l.f("impact.peers"), l.f("impact.peers.unknown", unknown)},
			{l.f("impact.spread"), l.f("impact.spread.unknown", unknown)},
		}}}
		return s
	}
	nets := l.list(m.Site.Networks)
	if nets == "" {
		nets = l.f("none")
	}
	vm := m.Gateway.VM
	if vm == "" {
		vm = l.f("none")
	}
	var items []item
	items = append(items, item{l.f("impact.site"), l.f("impact.site.value", m.Site.Name, m.Gateway.ID, vm, nets)})
	var peers []string
	for _, p := range m.Peers {
		peers = append(peers, l.f("impact.peer", p.Site, p.Gateway, p.Tunnel, tunnelKindName(p.Kind)))
	}
	peerText := l.list(peers)
	if len(peers) == 0 {
		peerText = l.f("impact.nopeers")
	} else if l.lang == LangEnglish {
		peerText += "."
	} else {
		peerText += "。"
	}
	if m.Containment.Contained && len(peers) > 0 {
		peerText += sep(l) + l.f("impact.cut", m.Site.Name)
	}
	if len(m.OtherTunnels) > 0 {
		peerText += sep(l) + l.f("impact.others", l.n(len(m.OtherTunnels), "tunnel"), l.list(m.OtherTunnels))
	}
	items = append(items, item{l.f("impact.peers"), peerText})
	var spread []string
	for _, p := range m.Peers {
		for _, id := range p.OpenIncidents {
			spread = append(spread, l.f("impact.spread.item", p.Gateway, id))
		}
	}
	switch {
	case len(spread) == 0 && m.Intrusion.Investigated && len(m.Intrusion.Summary.Reached) > 0:
		items = append(items, item{l.f("impact.spread"), l.f("impact.spread.reached", reachedSites(m, l))})
	case len(spread) == 0 && m.Intrusion.Investigated:
		items = append(items, item{l.f("impact.spread"), l.f("impact.spread.investigated")})
	case len(spread) == 0:
		items = append(items, item{l.f("impact.spread"), l.f("impact.spread.none")})
	default:
		items = append(items, item{l.f("impact.spread"), l.f("impact.spread.some", l.list(spread))})
	}
	s.Blocks = append(s.Blocks, block{Bullets: items})
	return s
}

// milestoneText says what a milestone was, for people.
func milestoneText(m Model, ms Milestone, l loc) string {
	switch ms.Kind {
	case MilestoneAlert:
		return l.f("done.alert", ms.Detail)
	case MilestoneDecision:
		for _, d := range m.Decisions {
			if d.Policy == ms.Detail && d.Approval == "required" {
				return l.f("done.decision.human", ms.Detail)
			}
		}
		return l.f("done.decision.auto", ms.Detail)
	case MilestoneApproval:
		return l.f("done.approval", l.who(ms.Detail))
	case MilestoneContained:
		return l.f("done.contained")
	}
	if ms.State == store.StepFailed {
		return l.f("done.failed", l.word("action", ms.Action))
	}
	if ms.State == store.StepSkipped && ms.Action != actions.NameCaptureVolatile {
		return l.f("done.skipped", l.word("action", ms.Action))
	}
	switch ms.Action {
	case actions.NameCaptureVolatile:
		if ms.State == store.StepSkipped {
			return l.f("done.capture.skip")
		}
		return l.f("done.capture")
	case actions.NameRevokePeer:
		return l.f("done.revoke")
	case actions.NameSnapshot:
		for _, sn := range m.Snapshots {
			if sn.At.Equal(ms.At) && !sn.Memory {
				return l.f("done.snapshot.nomem")
			}
		}
		return l.f("done.snapshot")
	case actions.NameNotify:
		return l.f("done.notify")
	case actions.NameRelease:
		if len(m.Release.Overridden) > 0 {
			return l.f("done.release.override", gateTitles(m.Release.Overridden, l))
		}
		return l.f("done.release")
	case actionRotate:
		return l.f("done.rotate")
	case actionBaseline:
		if ms.State == store.StepSucceeded {
			return l.f("done.baseline.pass")
		}
		return l.f("done.baseline.fail")
	}
	return l.f("done.generic", l.word("action", ms.Action))
}

func whatWasDone(m Model, l loc) section {
	s := section{ID: "done", Heading: l.f("mgmt.done")}
	if len(m.Milestones) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("done.nothing")})
		s.Blocks = append(s.Blocks, peopleBlocks(m, l)...)
		return s
	}
	var items []item
	t0 := m.Milestones[0].At
	var prev time.Time
	for i, ms := range m.Milestones {
		withDate := i == 0 || ms.At.In(l.zone).YearDay() != prev.In(l.zone).YearDay() || ms.At.UTC().YearDay() != prev.UTC().YearDay()
		label := l.clock(ms.At, withDate)
		if !withDate && ms.At.After(t0) {
			lt := ms.At.In(l.zone).Format("15:04:05") + " " + l.zoneName(ms.At)
			label = l.f("clock.after", lt, ms.At.UTC().Format("15:04:05"), l.duration(ms.At.Sub(t0)))
			if l.utcOnly {
				label = l.f("clock.after.utc", ms.At.UTC().Format("15:04:05"), l.duration(ms.At.Sub(t0)))
			}
		}
		items = append(items, item{Label: label, Text: milestoneText(m, ms, l)})
		prev = ms.At
	}
	s.Blocks = append(s.Blocks, block{Bullets: items})
	if m.Containment.Verified && m.Containment.TimeToContain > 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("done.ttc", l.duration(m.Containment.TimeToContain))})
	}
	s.Blocks = append(s.Blocks, block{Picture: true})
	s.Blocks = append(s.Blocks, peopleBlocks(m, l)...)
	return s
}

// peopleBlocks name the people who acted and what they did, then every
// run on which four eyes has something to say: each break-glass override
// (and whether a second person approved it), and each run one person
// asked for and approved alone.
func peopleBlocks(m Model, l loc) []block {
	if len(m.People) == 0 {
		return []block{{Para: l.f("people.none")}}
	}
	var items []item
	for _, p := range m.People {
		items = append(items, item{Label: personLabel(m, p.Actor, l), Text: l.list(deeds(m, p, l, false))})
	}
	for _, r := range m.Runs {
		text := fourEyesText(r, l)
		if text == "" {
			continue
		}
		label := l.f("breakglass.label", r.ID, r.Runbook)
		if r.OverrideReason == "" {
			label = l.f("alone.label", r.ID, r.Runbook)
		}
		if len(r.RefusedApprovers) > 0 {
			text += sep(l) + l.f("breakglass.refused", l.whoAll(r.RefusedApprovers))
		}
		items = append(items, item{Label: label, Text: text})
	}
	return []block{{Para: l.f("people.heading")}, {Bullets: items}}
}

// personLabel is a person's name, with their display name when the user
// store has one.
func personLabel(m Model, actor string, l loc) string {
	if d := m.actor(actor).DisplayName; d != "" {
		return l.f("people.label", l.who(actor), d)
	}
	return l.who(actor)
}

// deeds says what p did: for management by runbook and with a count of
// indicators; with ids, for the technical part, by run and indicator id.
func deeds(m Model, p Person, l loc, ids bool) []string {
	runs := func(list []string) string {
		var out []string
		for _, id := range list {
			name := id
			if r, ok := runByID(m, id); ok && !ids {
				name = r.Runbook
			}
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		return l.and(out)
	}
	var out []string
	if len(p.Requested) > 0 {
		out = append(out, l.f("people.requested", runs(p.Requested)))
	}
	if len(p.Overrode) > 0 {
		out = append(out, l.f("people.overrode", runs(p.Overrode)))
	}
	if len(p.Approved) > 0 {
		out = append(out, l.f("people.approved", runs(p.Approved)))
	}
	if len(p.Resolved) > 0 {
		if ids {
			out = append(out, l.f("people.resolved.ids", l.and(p.Resolved)))
		} else {
			out = append(out, l.f("people.resolved", l.n(len(p.Resolved), "ind")))
		}
	}
	return out
}

func runByID(m Model, id string) (Run, bool) {
	for _, r := range m.Runs {
		if r.ID == id {
			return r, true
		}
	}
	return Run{}, false
}

// fourEyesText says how four eyes stands on r when there is something to
// say: a break-glass override and whether a second person approved it,
// or one person who asked for a run and approved it alone. "" otherwise.
func fourEyesText(r Run, l loc) string {
	c := r.fourEyes()
	if r.OverrideReason == "" {
		if c == fourEyesAlone {
			return l.f("alone.requested", l.who(r.ApprovedBy))
		}
		return ""
	}
	by := l.who(r.OverriddenBy)
	switch c {
	case fourEyesSecondPerson:
		return l.f("breakglass.second", by, l.who(r.ApprovedBy))
	case fourEyesAlone:
		if r.ApprovedBy == r.OverriddenBy {
			return l.f("breakglass.alone", by)
		}
		return l.f("breakglass.alone.requester", by, l.who(r.ApprovedBy))
	case fourEyesWaiting:
		return l.f("breakglass.waiting", by)
	}
	return l.f("breakglass.unapproved", by, l.word("runstate", r.State))
}

func baselineWord(m Model, l loc) string {
	switch {
	case !m.Baseline.Checked:
		return l.f("state.baseline.no")
	case m.Baseline.Passed:
		return l.f("state.baseline.pass")
	}
	return l.f("state.baseline.fail")
}

func credWord(m Model, l loc) string {
	switch {
	case m.Credentials.Rotated:
		return l.f("state.cred.done")
	case m.InventoryUnknown:
		return l.f("state.cred.unknown")
	}
	return l.f("state.cred.pending", l.n(len(m.Credentials.Tunnels), "tunnel"))
}

func currentState(m Model, l loc) section {
	s := section{ID: "state", Heading: l.f("mgmt.state")}
	var contain string
	switch {
	case m.Containment.Released:
		contain = l.f("state.contain.released")
	case m.Containment.Contained:
		contain = l.f("state.contain.yes", m.Gateway.ID, l.short(m.Containment.At))
		if m.Posture.Observed != "" && !m.Posture.ObservedAt.IsZero() {
			contain += sep(l) + l.f("state.contain.observed", l.word("posture", m.Posture.Observed), l.short(m.Posture.ObservedAt))
		}
	default:
		if r, ok := waitingRun(m); ok {
			contain = l.f("state.contain.awaiting", r.ID)
		} else if r, ok := failedContainRun(m); ok {
			contain = l.f("state.contain.failed", r.ID, l.says(r.Error))
		} else if r, ok := isolatingRunPending(m); ok {
			contain = l.f("state.contain.progress", r.ID)
		} else {
			contain = l.f("state.contain.none")
		}
	}
	items := []item{{l.f("state.contain"), contain}}
	switch {
	case len(m.Snapshots) == 0 && len(m.Evidence.Items) == 0:
		items = append(items, item{l.f("state.evidence"), l.f("state.evidence.none")})
	case m.Evidence.Available:
		items = append(items, item{l.f("state.evidence"), l.f("state.evidence.value", l.n(len(m.Snapshots), "snapshot"), l.n(len(m.Evidence.Items), "artefact"))})
	default:
		items = append(items, item{l.f("state.evidence"), l.f("state.evidence.noledger", l.n(len(m.Snapshots), "snapshot"))})
	}
	if m.Audit.OK {
		items = append(items, item{l.f("state.audit"), l.f("state.audit.ok", l.n(int(m.Audit.Entries), "entry"))})
	} else {
		items = append(items, item{l.f("state.audit"), l.f("state.audit.broken", m.Audit.Problem)})
	}
	if m.Containment.Released {
		items = append(items, item{l.f("state.release"), releaseState(m, l)})
	} else if m.Containment.Contained {
		items = append(items, item{l.f("state.release"), l.f("state.release.value", baselineWord(m, l), credWord(m, l))})
	}
	if m.FourEyesOff {
		items = append(items, item{l.f("state.foureyes"), l.f("state.foureyes.off")})
	}
	s.Blocks = append(s.Blocks, block{Bullets: items})
	return s
}

// releaseState says how the gateway was returned to service: plainly
// "done", or by whose exception, skipping what, and what is still owed.
func releaseState(m Model, l loc) string {
	rel := m.Release
	if len(rel.Overridden) == 0 {
		return l.f("state.release.done")
	}
	text := l.f("state.release.override", l.short(rel.At), l.who(rel.OverriddenBy), gateTitles(rel.Overridden, l), rel.Reason)
	if r, ok := runByID(m, rel.Run); ok {
		switch {
		case r.fourEyes() == fourEyesSecondPerson:
			text += sep(l) + l.f("release.second", l.who(r.ApprovedBy))
		case r.fourEyes() == fourEyesAlone && r.ApprovedBy == r.OverriddenBy:
			text += sep(l) + l.f("release.alone", l.who(r.ApprovedBy))
		default:
			text += sep(l) + fourEyesText(r, l)
		}
	}
	if len(rel.Owed) == 0 {
		return text + sep(l) + l.f("state.release.owed.none")
	}
	return text + sep(l) + l.f("state.release.owed", l.list(owed(m, l)))
}

// gateTitles names overridden gates in a sentence ("the baseline check
// and the rotation of the tunnel credentials").
func gateTitles(gates []OverriddenGate, l loc) string {
	var out []string
	for _, g := range gates {
		out = append(out, l.word("gate.title", g.Gate))
	}
	return l.and(out)
}

// owed says what the release still owes, one item per overridden gate
// that still does not hold.
func owed(m Model, l loc) []string {
	var out []string
	for _, g := range m.Release.Owed {
		switch g {
		case gateBaseline:
			out = append(out, l.f("owed.baseline", m.Gateway.ID))
		case gateCredentials:
			tunnels := l.f("owed.tunnels", l.n(len(m.Credentials.Tunnels), "tunnel"))
			if m.InventoryUnknown {
				tunnels = l.f("owed.tunnels.unknown")
			}
			out = append(out, l.f("owed.credentials-rotated", tunnels))
		default:
			out = append(out, l.word("gate.title", g))
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func waitingRun(m Model) (Run, bool) {
	for _, r := range m.Runs {
		if r.State == store.RunAwaitingApproval {
			return r, true
		}
	}
	return Run{}, false
}

func peerSites(m Model, l loc) string {
	var out []string
	for _, p := range m.Peers {
		out = append(out, p.Site)
	}
	return l.and(out)
}

func decisions(m Model, l loc) section {
	s := section{ID: "decide", Heading: l.f("mgmt.decide")}
	var items []item
	for _, r := range m.Runs {
		if r.State == store.RunAwaitingApproval {
			items = append(items, item{l.f("decide.approve", r.ID, r.Runbook), l.f("decide.approve.text", waitReason(r, l))})
		}
	}
	if m.Containment.Released && len(m.Release.Owed) > 0 {
		text := l.f("decide.owed.text", l.and(owed(m, l)))
		if slices.Contains(m.Release.Owed, gateCredentials) && len(m.Peers) > 0 {
			text += sep(l) + l.f("decide.owed.cred", peerSites(m, l))
		}
		items = append(items, item{l.f("decide.owed", m.Gateway.ID), text})
	}
	switch {
	case m.Containment.Contained:
		items = append(items, item{l.f("decide.release", m.Gateway.ID), releaseText(m, l)})
	case !m.Containment.Verified && !m.Containment.Pending && !anyWaiting(m) && !m.Containment.Released:
		items = append(items, item{l.f("decide.contain", m.Gateway.ID), l.f("decide.contain.text", m.Site.Name)})
	}
	forensics := l.f("decide.forensics.noev")
	if ev := preserved(m, l); ev != "" {
		forensics = l.f("decide.forensics.text", ev)
	}
	items = append(items,
		item{l.f("decide.notify"), l.f("decide.notify.text")},
		item{l.f("decide.forensics"), forensics},
	)
	s.Blocks = append(s.Blocks, block{Numbered: items})
	return s
}

// releaseText says what a release needs and what stays cut off until then;
// it never names an empty list of sites.
func releaseText(m Model, l loc) string {
	switch {
	case m.InventoryUnknown:
		return l.f("decide.release.text.unknown", m.Site.Name, l.f("inventory.unknown"))
	case len(m.Peers) == 0:
		return l.f("decide.release.text.nopeers", m.Site.Name)
	}
	return l.f("decide.release.text", m.Site.Name, peerSites(m, l))
}

// waitReason says in plain words why a run waits, from its failed blocking
// gates (the stored reason is the controller's English).
func waitReason(r Run, l loc) string {
	var out []string
	for _, g := range r.Gates {
		if g.Passed || !g.Blocking {
			continue
		}
		switch g.Name {
		case "approval":
			out = append(out, l.f("gate.reason.approval", r.Policy))
		case "blast-radius":
			out = append(out, l.f("gate.reason.blast-radius", g.Detail))
		case "circuit-breaker", "evidence-first":
			out = append(out, l.f("gate.reason."+g.Name))
		case "four-eyes":
			out = append(out, l.f("gate.reason.four-eyes", l.who(r.OverriddenBy)))
		default:
			out = append(out, l.f("gate.reason.other", l.word("gatename", g.Name), l.says(g.Detail)))
		}
	}
	if len(out) == 0 {
		return l.says(r.ApprovalReason)
	}
	return l.list(out)
}

// preserved lists the kinds of evidence that exist beyond the audit log,
// or "" when there is none.
func preserved(m Model, l loc) string {
	var out []string
	if len(m.Snapshots) > 0 {
		mem := false
		for _, s := range m.Snapshots {
			mem = mem || s.Memory
		}
		if mem {
			out = append(out, l.f("ev.snapshot.mem"))
		} else {
			out = append(out, l.f("ev.snapshot"))
		}
	}
	if len(m.Evidence.Items) > 0 {
		out = append(out, l.f("ev.files"))
	}
	if len(out) == 0 {
		return ""
	}
	return l.list(append(out, l.f("ev.audit")))
}

// ---- technical part ----

func techIndicators(m Model, l loc) section {
	t := &table{Head: []string{l.f("col.received"), l.f("col.observed"), l.f("col.kind"), l.f("col.severity"), l.f("col.confidence"),
		l.f("col.source"), l.f("col.observables"), l.f("col.summary")}}
	for _, in := range m.Indicators {
		var obs []string
		obs = append(obs, in.IPs...)
		obs = append(obs, in.Domains...)
		obs = append(obs, in.Hashes...)
		kind := in.Kind
		if in.Duplicate {
			kind += l.f("ind.dup")
		}
		if in.Status == "resolved" {
			kind += l.f("ind.resolved")
		}
		if in.ResolvedBy != "" {
			kind += l.f("ind.resolvedby", l.who(in.ResolvedBy), in.ResolveReason)
		}
		t.Rows = append(t.Rows, []string{l.stamp(in.ReceivedAt), l.stamp(in.ObservedAt), kind, l.word("severity", in.Severity),
			percent(in.Confidence), in.Source, strings.Join(obs, " "), in.Summary})
	}
	return section{ID: "indicators", Heading: l.f("tech.indicators"), Blocks: []block{{Table: t}}}
}

func techDecisions(m Model, l loc) section {
	s := section{ID: "decisions", Heading: l.f("tech.decisions")}
	var items []item
	for _, d := range m.Decisions {
		if !d.Matched {
			items = append(items, item{Text: l.f("tech.decision.nomatch", l.stamp(d.At), d.Indicator)})
			continue
		}
		bh := l.f("tech.decision.bh.out")
		if d.BusinessHours {
			bh = l.f("tech.decision.bh.in")
		}
		text := l.f("tech.decision.line", l.stamp(d.At), d.Indicator, d.Policy, d.Runbook, l.word("approvalmode", d.Approval), bh)
		if d.Reason != "" {
			text += sep(l) + l.f("tech.decision.reason", l.says(d.Reason))
		}
		if len(d.NotMatched) > 0 {
			var nm []string
			for _, x := range d.NotMatched {
				nm = append(nm, l.f("tech.decision.nm", x.Policy, l.says(x.Reason)))
			}
			text += sep(l) + l.f("tech.decision.before", l.list(nm))
		}
		items = append(items, item{Text: text})
	}
	if len(items) > 0 {
		s.Blocks = append(s.Blocks, block{Bullets: items})
	}
	gates := &table{Head: []string{l.f("col.run"), l.f("col.gate"), l.f("col.result"), l.f("col.detail")}, Mono: map[int]bool{0: true}}
	for _, r := range m.Runs {
		for _, g := range r.Gates {
			res := l.f("gate.passed")
			if g.Passed && strings.Contains(g.Detail, "overridden by ") {
				res = l.f("gate.overridden")
			}
			if !g.Passed {
				res = l.f("gate.info")
				if g.Blocking {
					res = l.f("gate.failed")
				}
			}
			gates.Rows = append(gates.Rows, []string{r.ID, l.word("gatename", g.Name), res, l.says(g.Detail)})
		}
	}
	if len(gates.Rows) > 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.gates")}, block{Table: gates})
	}
	return s
}

func techApprovals(m Model, l loc) section {
	t := &table{Head: []string{l.f("col.run"), l.f("col.runbook"), l.f("col.requested"), l.f("col.overrode"), l.f("col.approval"), l.f("col.by"),
		l.f("col.at"), l.f("col.comment")}, Mono: map[int]bool{0: true}}
	for _, a := range m.Approvals {
		var what, detail string
		switch {
		case a.Automatic:
			what, detail = l.f("approval.auto"), l.says(a.Detail)
		case a.Waiting:
			what, detail = l.f("approval.waiting"), approvalReason(m, a, l)
		case a.Required && a.By == "":
			// Never approved: the run was cancelled or refused first.
			state := ""
			if r, ok := runByID(m, a.Run); ok {
				state = r.State
			}
			what, detail = l.f("approval.never", l.word("runstate", state)), a.Comment
		case a.Required:
			what, detail = l.f("approval.approved"), a.Comment
			if a.Reason != "" {
				detail = strings.TrimSpace(a.Comment + " [" + approvalReason(m, a, l) + "]")
			}
		default:
			what, detail = l.f("approval.manual"), l.f("say.gate.started", l.who(a.By))
		}
		if r, ok := runByID(m, a.Run); ok && !a.Automatic && !a.Waiting {
			switch r.fourEyes() {
			case fourEyesAlone:
				what = l.f("approval.alone")
			case fourEyesSecondPerson:
				if r.OverrideReason != "" {
					what = l.f("approval.second")
				}
			}
		}
		at := "—"
		if !a.At.IsZero() {
			at = l.stamp(a.At)
		}
		t.Rows = append(t.Rows, []string{a.Run, a.Runbook, l.who(a.RequestedBy), l.who(a.OverriddenBy), what, l.who(a.By), at, detail})
	}
	s := section{ID: "approvals", Heading: l.f("tech.approvals"), Blocks: []block{{Table: t}}}
	if m.FourEyesOff {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.foureyes.off")})
	}
	return s
}

// approvalReason says why a run waited for a person, gate by gate: the
// stored reason joins the controller's sentences ("gate: detail; …") in
// English, with the actors as recorded.
func approvalReason(m Model, a Approval, l loc) string {
	var out []string
	for _, r := range m.Runs {
		if r.ID != a.Run {
			continue
		}
		for _, g := range r.Gates {
			if !g.Passed && g.Blocking {
				if l.lang == LangEnglish {
					out = append(out, g.Name+": "+l.says(g.Detail))
				} else {
					out = append(out, l.says(g.Detail))
				}
			}
		}
	}
	if len(out) == 0 {
		return l.says(a.Reason)
	}
	return strings.Join(out, l.f("say.join"))
}

// techPeople lists the people who acted: how the store recorded them,
// what kind of actor each is, what the user store says of them now, and
// what they did.
func techPeople(m Model, l loc) section {
	s := section{ID: "people", Heading: l.f("tech.people")}
	if len(m.People) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.people.none")})
		return s
	}
	t := &table{Head: []string{l.f("col.person"), l.f("col.recorded"), l.f("col.kind"), l.f("col.display"), l.f("col.role"), l.f("col.did")},
		Mono: map[int]bool{1: true}}
	for _, p := range m.People {
		a := m.actor(p.Actor)
		role := orDash(a.Role)
		if a.Disabled {
			role = l.f("people.disabled", role)
		}
		t.Rows = append(t.Rows, []string{l.who(p.Actor), p.Actor, l.f("actorkind." + a.Kind), orDash(a.DisplayName), role, l.list(deeds(m, p, l, true))})
	}
	s.Blocks = append(s.Blocks, block{Table: t})
	return s
}

func techRuns(m Model, l loc) section {
	s := section{ID: "runs", Heading: l.f("tech.runs")}
	for _, r := range m.Runs {
		took := "—"
		if r.Duration > 0 {
			took = l.duration(r.Duration)
		}
		policy := r.Policy
		if policy == "" {
			policy = "—"
		}
		line := l.f("tech.run.line", r.ID, r.Runbook, policy, l.word("trigger", r.Trigger), l.who(r.RequestedBy), l.word("runstate", r.State),
			l.stamp(r.StartedAt), l.stamp(r.FinishedAt), took)
		if r.ApprovalRequired && r.ApprovedBy != "" {
			line += sep(l) + l.f("tech.run.approved", l.who(r.ApprovedBy), l.stamp(r.ApprovedAt))
		}
		s.Blocks = append(s.Blocks, block{Para: line})
		var four []string
		if r.OverrideReason != "" {
			var names []string
			for _, g := range r.Overridden {
				names = append(names, l.word("gatename", g.Gate))
			}
			text := l.f("tech.run.override.none", l.who(r.OverriddenBy), r.OverrideReason)
			if len(names) > 0 {
				text = l.f("tech.run.override", l.who(r.OverriddenBy), r.OverrideReason, l.list(names))
			}
			four = append(four, text)
		}
		if text := fourEyesText(r, l); text != "" {
			four = append(four, text)
		}
		if len(r.RefusedApprovers) > 0 {
			four = append(four, l.f("breakglass.refused", l.whoAll(r.RefusedApprovers)))
		}
		if len(four) > 0 {
			s.Blocks = append(s.Blocks, block{Para: strings.Join(four, sep(l))})
		}
		if r.Error != "" {
			s.Blocks = append(s.Blocks, block{Para: l.f("tech.run.error", l.says(r.Error))})
		}
		t := &table{Head: []string{l.f("col.seq"), l.f("col.step"), l.f("col.action"), l.f("col.state"), l.f("col.attempts"), l.f("col.started"),
			l.f("col.finished"), l.f("col.duration"), l.f("col.result")}}
		for _, st := range r.Steps {
			dur := "—"
			if !st.FinishedAt.IsZero() {
				dur = l.duration(st.Duration)
			}
			res := l.says(st.Summary)
			if st.Verified != "" {
				res += l.f("step.verified", l.says(st.Verified))
			}
			if st.Error != "" && st.State != store.StepSkipped {
				// An error is diagnostic text from providers and the
				// systems they reach: shown as it was written.
				res = strings.TrimSpace(res + " " + l.f("step.error", st.Error))
			}
			t.Rows = append(t.Rows, []string{fmt.Sprint(st.Index + 1), st.Name, st.Action, l.word("stepstate", st.State),
				fmt.Sprint(st.Attempts), l.stamp(st.StartedAt), l.stamp(st.FinishedAt), dur, res})
		}
		s.Blocks = append(s.Blocks, block{Table: t})
	}
	return s
}

func techGateway(m Model, l loc) section {
	g := m.Gateway
	orNone := func(s string) string {
		if s == "" {
			return l.f("none")
		}
		return s
	}
	observed := l.f("none")
	if m.Posture.Observed != "" {
		observed = l.word("posture", m.Posture.Observed)
	}
	desired := l.f("none")
	if m.Posture.Desired != "" {
		desired = l.word("posture", m.Posture.Desired)
	}
	obsAt := l.f("none")
	if !m.Posture.ObservedAt.IsZero() {
		obsAt = l.stamp(m.Posture.ObservedAt)
	}
	items := []item{
		{l.f("tech.gw.id"), l.f("tech.gw.value", g.ID, m.Site.Name, orNone(g.VM), orNone(g.Hostname))},
		{l.f("tech.gw.addresses"), orNone(strings.Join(g.Addresses, ", "))},
		{l.f("tech.gw.mgmt"), orNone(strings.Join(g.ManagementNetworks, ", "))},
		{l.f("tech.gw.posture"), l.f("tech.gw.posture.value", desired, observed, obsAt)},
	}
	if m.InventoryUnknown {
		unknown := l.f("inventory.unknown")
		items = []item{
			{l.f("tech.gw.id"), l.f("tech.gw.value.unknown", g.ID, m.Site.Name, unknown)},
			{l.f("tech.gw.posture"), l.f("tech.gw.posture.value", desired, observed, obsAt)},
			{l.f("tech.gw.tunnels"), unknown},
		}
	}
	t := &table{Head: []string{l.f("col.tunnel"), l.f("col.kind"), l.f("col.peer"), l.f("col.peersite"), l.f("col.tunnelstate"), l.f("col.credential")}}
	for _, p := range m.Peers {
		state := l.f("tunnel.up")
		if m.Containment.Contained {
			state = l.f("tunnel.cut")
		}
		cred := credName(l, p.Kind) + ": " + l.f("cred.pending")
		if m.Credentials.Rotated {
			cred = credName(l, p.Kind) + ": " + l.f("cred.rotated")
		}
		t.Rows = append(t.Rows, []string{p.Tunnel, tunnelKindName(p.Kind), p.Gateway, p.Site, state, cred})
	}
	blocks := []block{{Bullets: items}}
	if len(t.Rows) > 0 {
		blocks = append(blocks, block{Table: t})
	}
	return section{ID: "gateway", Heading: l.f("tech.gateway"), Blocks: blocks}
}

func techCredentials(m Model, l loc) section {
	s := section{ID: "credentials", Heading: l.f("tech.credentials")}
	if m.Credentials.Rotated {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.cred.done", l.stamp(m.Credentials.At), l.says(m.Credentials.Summary))})
		return s
	}
	released := m.Containment.Released && slices.Contains(m.Release.Owed, gateCredentials)
	switch {
	case released && m.InventoryUnknown:
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.cred.released", l.stamp(m.Release.At), l.who(m.Release.OverriddenBy), l.f("owed.tunnels.unknown"))})
		return s
	case released:
		// Released without rotating: not "before release" any more, now.
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.cred.released", l.stamp(m.Release.At), l.who(m.Release.OverriddenBy), l.n(len(m.Credentials.Tunnels), "tunnel"))})
	case m.InventoryUnknown:
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.cred.pending.unknown", l.f("inventory.unknown"))})
		return s
	default:
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.cred.pending", l.n(len(m.Credentials.Tunnels), "tunnel"))})
	}
	var items []item
	for _, c := range m.Credentials.Tunnels {
		items = append(items, item{Label: c.Tunnel, Text: credName(l, c.Kind) + " (" + m.Gateway.ID + " ↔ " + c.Peer + "): " + l.f("cred.pending")})
	}
	if len(items) > 0 {
		s.Blocks = append(s.Blocks, block{Bullets: items})
	}
	return s
}

func techEvidence(m Model, l loc) section {
	s := section{ID: "evidence", Heading: l.f("tech.evidence")}
	s.Blocks = append(s.Blocks, block{Para: l.f("tech.evidence.snapshots")})
	if len(m.Snapshots) == 0 {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.nosnapshots")})
	} else {
		t := &table{Head: []string{l.f("col.snapshot"), l.f("col.vm"), l.f("col.memory"), l.f("col.at")}, Mono: map[int]bool{0: true}}
		for _, sn := range m.Snapshots {
			mem := l.f("no")
			if sn.Memory {
				mem = l.f("yes")
			}
			t.Rows = append(t.Rows, []string{sn.Name, sn.VM, mem, l.stamp(sn.At)})
		}
		s.Blocks = append(s.Blocks, block{Table: t})
	}
	s.Blocks = append(s.Blocks, block{Para: l.f("tech.evidence.ledger")})
	switch {
	case !m.Evidence.Available:
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.evidence.noledger")})
	case len(m.Evidence.Items) == 0:
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.evidence.none")})
	default:
		t := &table{Head: []string{l.f("col.id"), l.f("col.name"), l.f("col.kind"), l.f("col.size"), l.f("col.sha256"), l.f("col.collected"),
			l.f("col.by"), l.f("col.from")}, Mono: map[int]bool{0: true, 4: true}}
		t.Head[6] = l.f("col.actor")
		for _, e := range m.Evidence.Items {
			t.Rows = append(t.Rows, []string{e.ID, e.Name, l.word("evkind", e.Kind), size(e.Size), e.SHA256, l.stamp(e.CollectedAt), l.who(e.CollectedBy), e.CollectedFrom})
		}
		s.Blocks = append(s.Blocks, block{Table: t}, block{Para: l.f("tech.evidence.check")})
	}
	return s
}

func techBaseline(m Model, l loc) section {
	s := section{ID: "baseline", Heading: l.f("tech.baseline")}
	if !m.Baseline.Checked {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.baseline.no")})
	} else {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.baseline.result", baselineWord(m, l), l.stamp(m.Baseline.At), l.says(m.Baseline.Summary))})
	}
	if m.Containment.Released && slices.Contains(m.Release.Owed, gateBaseline) {
		s.Blocks = append(s.Blocks, block{Para: l.f("tech.baseline.overridden", l.who(m.Release.OverriddenBy), m.Gateway.ID, m.Gateway.ID)})
	}
	return s
}

func techAudit(m Model, l loc) section {
	res := l.f("tech.audit.ok")
	if !m.Audit.OK {
		res = l.f("tech.audit.broken", m.Audit.Problem)
	}
	return section{ID: "audit", Heading: l.f("tech.audit"), Blocks: []block{
		{Bullets: []item{
			{l.f("tech.audit.result"), res},
			{l.f("tech.audit.entries"), fmt.Sprint(m.Audit.Entries)},
			{l.f("tech.audit.how"), l.f("tech.audit.how.value")},
		}},
		{Para: l.f("tech.audit.head")},
		{Code: m.Audit.Head},
	}}
}

func techTimeline(m Model, l loc) section {
	t := &table{Head: []string{l.f("col.seq"), l.f("col.time"), l.f("col.utc"), l.f("col.actor"), l.f("col.action"), l.f("col.run"), l.f("col.subject")},
		Mono: map[int]bool{4: true, 5: true}}
	for _, e := range m.Timeline {
		t.Rows = append(t.Rows, []string{fmt.Sprint(e.Seq), l.stamp(e.At), utcStamp(e.At), actorWithToken(e, l), e.Action, e.Run, e.Subject})
	}
	return section{ID: "timeline", Heading: l.f("tech.timeline"), Blocks: []block{{Table: t}}}
}

// actorWithToken names an audit entry's actor with the credential they
// authenticated with, when the entry records one.
func actorWithToken(e Event, l loc) string {
	switch e.Token {
	case "", "legacy": // the shared token: who already says so
		return l.who(e.Actor)
	case "oidc":
		return l.f("actor.token.oidc", l.who(e.Actor))
	}
	return l.f("actor.token", l.who(e.Actor), e.Token)
}

func techNext(m Model, l loc) section {
	var peers []string
	for _, p := range m.Peers {
		peers = append(peers, p.Gateway)
	}
	items := []item{{Text: l.f("next.forensics")}}
	switch {
	case m.InventoryUnknown:
		items = append(items, item{Text: l.f("next.peers.unknown", m.Gateway.ID, l.f("inventory.unknown"))})
	case len(peers) > 0:
		items = append(items, item{Text: l.f("next.peers", l.list(peers))})
	}
	switch {
	case m.Containment.Released && slices.Contains(m.Release.Owed, gateCredentials):
		items = append(items, item{Text: l.f("next.rotate.now")})
	case !m.Credentials.Rotated:
		items = append(items, item{Text: l.f("next.rotate")})
	}
	if m.Containment.Released && slices.Contains(m.Release.Owed, gateBaseline) {
		items = append(items, item{Text: l.f("next.baseline.now", m.Gateway.ID, m.Gateway.ID)})
	}
	items = append(items, item{Text: l.f("next.patch")})
	if m.Containment.Contained {
		items = append(items, item{Text: l.f("next.release")})
	}
	items = append(items, item{Text: l.f("next.review")})
	return section{ID: "next", Heading: l.f("tech.next"), Blocks: []block{{Bullets: items}}}
}
