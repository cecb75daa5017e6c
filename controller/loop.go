package controller

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// acceptOne is the core loop for one indicator, inside the transaction
// that makes it durable: load what deciding needs, sort and decide without
// I/O, plan and gate the run the decision names without I/O, then record
// it all. Side effects on gateways happen later, from the recorded run.
func (c *core) acceptOne(ctx context.Context, tx store.Tx, actor string, now time.Time, it Item) (Accepted, error) {
	if a, stored, err := alreadyStored(ctx, tx, it); err != nil || stored {
		return a, err
	}
	snap, err := c.loadSnapshot(ctx, tx, it, now) // 1. load
	if err != nil {
		return Accepted{}, err
	}
	t := triage(snap) // 2. triage: unmatched, duplicate, resolved, or to decide
	var dec policies.Decision
	if t.decide {
		if err := c.loadPolicyContext(ctx, tx, &snap); err != nil {
			return Accepted{}, err
		}
		dec = c.pol.Decide(policyInput(snap, t)) // 3. decide (policies)
	}
	start, err := c.prepareDecided(ctx, tx, snap, t, dec) // 4. plan and gates
	if err != nil {
		return Accepted{}, err
	}
	if start.run != nil {
		start.run.req.requester = actor // who sent the indicator asked for the run
	}
	return c.record(ctx, tx, actor, snap, t, dec, start) // 5. record
}

// snapshot is what deciding one indicator needs, read in its transaction.
type snapshot struct {
	now  time.Time
	item Item
	in   indicator.Indicator // normalised, with its id
	// stored is set when an indicator already recorded is decided again
	// (it arrived while its gateway was being released).
	stored *store.IndicatorRecord
	gw     inventory.Gateway
	site   inventory.Site
	// posture is the gateway's posture the indicator meets.
	posture store.Posture
	// dupOf is an earlier copy within the deduplication window.
	dupOf *store.IndicatorRecord
	// open is the gateway's open incident within the incident window.
	open *store.Incident
	// openIncidents and recentIndicators about the gateway, as read
	// (before this indicator is recorded, unless stored); read only for
	// an indicator the policies decide (loadPolicyContext).
	openIncidents, recentIndicators int
}

// loadSnapshot reads the snapshot for a new item.
func (c *core) loadSnapshot(ctx context.Context, tx store.Tx, it Item, now time.Time) (snapshot, error) {
	s := snapshot{now: now, item: it, in: it.Indicator}
	s.in.ID = it.ID
	if s.in.ID == "" {
		s.in.ID = store.NewID("ind")
	}
	s.in.Normalize(now)
	if !it.Matched {
		return s, nil
	}
	if err := c.loadGateway(ctx, tx, &s); err != nil {
		return s, err
	}
	if prev, dup, err := tx.RecentByFingerprint(ctx, s.in.Fingerprint, now.Add(-c.opt.Intake.DedupWindow)); err != nil {
		return s, err
	} else if dup {
		s.dupOf = &prev
	}
	if inc, found, err := tx.OpenIncidentFor(ctx, s.gw.ID, now.Add(-c.opt.Intake.IncidentWindow)); err != nil {
		return s, err
	} else if found {
		s.open = &inc
	}
	return s, nil
}

// loadStoredSnapshot reads the snapshot for deciding a recorded
// indicator again, against the posture its gateway has now.
func (c *core) loadStoredSnapshot(ctx context.Context, tx store.Tx, rec store.IndicatorRecord, now time.Time) (snapshot, error) {
	s := snapshot{now: now, item: Item{Indicator: rec.Indicator, Matched: true}, in: rec.Indicator, stored: &rec}
	if err := c.loadGateway(ctx, tx, &s); err != nil {
		return s, err
	}
	return s, c.loadPolicyContext(ctx, tx, &s)
}

// loadGateway reads the gateway and its posture.
func (c *core) loadGateway(ctx context.Context, tx store.Tx, s *snapshot) error {
	gw, ok := c.inv.Gateway(s.in.Gateway)
	if !ok {
		return fmt.Errorf("gateway %q is not in the inventory", s.in.Gateway)
	}
	s.gw = gw
	s.site, _ = c.inv.Site(gw.Site)
	var err error
	s.posture, err = tx.Posture(ctx, gw.ID)
	return err
}

// loadPolicyContext reads what the policies are told about the gateway
// besides its posture.
//
// A counter no policy mentions is not read, since no policy would see it:
// a C2 alert's decision does not wait for counting what nobody looks at.
func (c *core) loadPolicyContext(ctx context.Context, tx store.Tx, s *snapshot) error {
	var err error
	if c.pol.MayRead(policies.ContextOpenIncidents) {
		if s.openIncidents, err = tx.CountOpenIncidents(ctx, s.gw.ID); err != nil {
			return err
		}
	}
	if c.pol.MayRead(policies.ContextRecentIndicators) {
		s.recentIndicators, err = tx.CountRecentIndicators(ctx, s.gw.ID, s.now.Add(-c.opt.Intake.DedupWindow))
	}
	return err
}

// redecideLiveThreats decides again, against the gateway's current
// posture, the live threats about gw received after since (the latest copy
// of each alert): the core loop for indicators already recorded.
func (c *core) redecideLiveThreats(ctx context.Context, tx store.Tx, gw string, since, now time.Time) error {
	threats, err := tx.LiveThreats(ctx, gw, since, ReleaseThreatSeverity)
	if err != nil || len(threats) == 0 {
		return err
	}
	if _, ok := c.inv.Gateway(gw); !ok {
		return nil
	}
	latest := map[string]store.LiveThreat{}
	var order []string
	for _, t := range threats { // oldest first: later copies replace earlier ones
		if _, seen := latest[t.Fingerprint]; !seen {
			order = append(order, t.Fingerprint)
		}
		latest[t.Fingerprint] = t
	}
	for _, fp := range order {
		rec, err := tx.IndicatorByID(ctx, latest[fp].ID)
		if err != nil {
			return err
		}
		snap, err := c.loadStoredSnapshot(ctx, tx, rec, now)
		if err != nil {
			return err
		}
		t := triage(snap)
		dec := c.pol.Decide(policyInput(snap, t))
		start, err := c.prepareDecided(ctx, tx, snap, t, dec)
		if err != nil {
			return err
		}
		if _, err := c.record(ctx, tx, "controller", snap, t, dec, start); err != nil {
			return err
		}
	}
	return nil
}

// triaged is what becomes of an indicator before any policy is asked.
type triaged struct {
	// kind is the audit action recording it.
	kind     string
	incident store.Incident // the incident it joins (ID "" for none)
	opened   bool           // the incident is new
	// note says why a resolved alert starts nothing.
	note   string
	decide bool // the policies decide what it calls for
}

// triage sorts an indicator, without I/O.
func triage(s snapshot) triaged {
	switch {
	case s.stored != nil:
		return triaged{kind: "indicator.redecided", incident: store.Incident{ID: s.stored.Incident}, decide: true}
	case !s.item.Matched:
		return triaged{kind: "indicator.unmatched"}
	case s.dupOf != nil && s.in.Status == indicator.StatusFiring &&
		!(s.posture.Desired == store.PostureReleased && s.posture.UpdatedAt.After(s.dupOf.ReceivedAt)):
		// The same alert within the window joins its incident and starts
		// nothing, unless the gateway was released since the earlier copy
		// was decided (against the quarantine): then it is decided afresh.
		// A repeat while quarantined stays a duplicate; Alertmanager
		// repeats firing alerts.
		return triaged{kind: "indicator.duplicate", incident: store.Incident{ID: s.dupOf.Incident}}
	case s.open == nil && s.in.Status == indicator.StatusResolved:
		return triaged{kind: "indicator.resolved", note: "no open incident; nothing is released by a resolved alert"}
	}
	t := triaged{kind: "indicator.accepted", decide: s.in.Status != indicator.StatusResolved}
	if s.open != nil {
		t.incident = *s.open
	} else {
		t.opened = true
		t.incident = store.Incident{ID: store.NewID("inc"), Gateway: s.gw.ID, Site: s.gw.Site, OpenedAt: s.now, UpdatedAt: s.now,
			Status: store.IncidentOpen, Severity: string(s.in.Severity), Title: incidentTitle(s.in, s.gw)}
	}
	if !t.decide {
		t.note = "recorded; a resolved alert never releases a gateway by itself"
	}
	return t
}

// policyInput is what the policies see: the indicator, its gateway and
// site, and the context as it will be once the indicator is recorded.
func policyInput(s snapshot, t triaged) policies.Input {
	open, recent := s.openIncidents, s.recentIndicators
	if s.stored == nil {
		recent = min(recent+1, store.RecentIndicatorsCap)
		if t.opened {
			open++
		}
	}
	return policies.Input{Indicator: s.in, Gateway: s.gw, Site: s.site, Context: policies.Context{
		Now: s.now, Posture: s.posture.Desired, OpenIncidents: open, RecentIndicators: recent}}
}

// decidedRun is the run a decision starts, planned and gated, or the run
// that makes starting one unnecessary: one already active, or one created
// within the policy's guards.repeat_after.
type decidedRun struct {
	active string // id of an active run of the runbook for the incident
	// recent is the id of the latest run the policy started for the
	// incident, created at recentAt, within its repeat_after.
	recent   string
	recentAt time.Time
	run      *preparedRun
}

// covering is the run that made starting one unnecessary, if any.
func (d decidedRun) covering() string { return cmp.Or(d.active, d.recent) }

// prepareDecided plans and gates the run a decision names.
func (c *core) prepareDecided(ctx context.Context, tx store.Tx, s snapshot, t triaged, dec policies.Decision) (decidedRun, error) {
	if !t.decide || !dec.Matched || dec.Runbook == "" || dec.Runbook == "none" {
		return decidedRun{}, nil
	}
	if !t.opened {
		if id, exists, err := tx.ActiveRunFor(ctx, t.incident.ID, dec.Runbook); err != nil || exists {
			return decidedRun{active: id}, err
		}
		if dec.RepeatAfter > 0 {
			id, at, found, err := tx.RecentRunFor(ctx, t.incident.ID, dec.Policy, s.now.Add(-dec.RepeatAfter))
			if err != nil || found {
				return decidedRun{recent: id, recentAt: at}, err
			}
		}
	}
	p, err := c.prepareRun(ctx, tx, newRunRequest{
		incident: t.incident.ID, gateway: s.gw, runbook: dec.Runbook, policy: dec.Policy, trigger: "policy",
		approval: dec.Approval == policies.Approval("required"), budget: dec.CountsAgainstBudget, actor: "controller", now: s.now,
		firing: s.gw.ID,
		// Accept hands the runs it starts to the executor; the decider's
		// batches of journaled indicators leave theirs to its next pass.
		handedOver: !s.item.batched,
	})
	return decidedRun{run: &p}, err
}

// record writes what the loop found and decided, in order: the incident
// opened, the indicator and its audit entry, the decision, and the run.
func (c *core) record(ctx context.Context, tx store.Tx, actor string, s snapshot, t triaged, dec policies.Decision, start decidedRun) (Accepted, error) {
	in := s.in
	a := Accepted{IndicatorID: in.ID, Matched: s.item.Matched, Reason: s.item.Reason, Status: in.Status, Gateway: s.gw.ID, IncidentID: t.incident.ID}
	if s.stored == nil {
		if t.opened {
			if err := tx.UpsertIncident(ctx, t.incident); err != nil {
				return a, err
			}
			if err := tx.Audit(ctx, audit.Entry{At: s.now, Actor: "controller", Action: "incident.opened", Incident: t.incident.ID, Subject: s.gw.ID,
				Data: mustJSON(map[string]any{"title": t.incident.Title, "site": s.gw.Site})}); err != nil {
				return a, err
			}
		}
		a.Duplicate = t.kind == "indicator.duplicate"
		received := s.now
		if at := s.item.receivedAt; !at.IsZero() && at.Before(s.now) {
			received = at // answered from the journal before this decision
		}
		rec := store.IndicatorRecord{ID: in.ID, ReceivedAt: received, Matched: s.item.Matched, Reason: s.item.Reason, Indicator: in,
			Incident: t.incident.ID, Duplicate: a.Duplicate}
		// An indicator of bulk intake that starts no run is kept in the
		// audit by its batch's entry: what became of it goes on its row.
		compact := s.item.batched && start.run == nil
		if compact {
			rec.Sender, rec.Decision = actor, bulkDecision(s, t, dec, start)
		}
		if err := tx.InsertIndicator(ctx, rec); err != nil {
			return a, err
		}
		if t.incident.ID != "" {
			if err := touchIncident(ctx, tx, t.incident.ID, in, s.now); err != nil {
				return a, err
			}
		}
		if compact {
			if id := start.covering(); id != "" {
				a.Policy, a.RunID = dec.Policy, id
			}
			return a, nil
		}
		if err := tx.Audit(ctx, indicatorEntry(actor, s, t)); err != nil {
			return a, err
		}
		if t.note != "" && t.incident.ID != "" {
			return a, tx.Audit(ctx, audit.Entry{At: s.now, Actor: "controller", Action: "indicator.resolved", Incident: t.incident.ID, Subject: s.gw.ID,
				Data: mustJSON(map[string]any{"indicator": in.ID, "note": t.note})})
		}
	} else if err := tx.Audit(ctx, indicatorEntry(actor, s, t)); err != nil {
		return a, err
	}
	if !t.decide {
		return a, nil
	}
	if err := tx.Audit(ctx, audit.Entry{At: s.now, Actor: "controller", Action: "policy.decided", Incident: t.incident.ID, Subject: s.gw.ID,
		Data: mustJSON(map[string]any{"indicator": in.ID, "matched": dec.Matched, "policy": dec.Policy, "runbook": dec.Runbook,
			"approval": dec.Approval, "business_hours": dec.BusinessHours, "explanations": dec.Explanations})}); err != nil {
		return a, err
	}
	switch {
	case start.active != "":
		a.Policy, a.RunID = dec.Policy, start.active
		return a, tx.Audit(ctx, audit.Entry{At: s.now, Actor: "controller", Action: "run.not_started", Incident: t.incident.ID, Run: start.active, Subject: s.gw.ID,
			Data: mustJSON(map[string]any{"reason": "a run of this runbook is already active for the incident", "runbook": dec.Runbook})})
	case start.recent != "":
		a.Policy, a.RunID = dec.Policy, start.recent
		return a, tx.Audit(ctx, audit.Entry{At: s.now, Actor: "controller", Action: "run.not_started", Incident: t.incident.ID, Run: start.recent, Subject: s.gw.ID,
			Data: mustJSON(map[string]any{"reason": "the policy started a run for the incident within its repeat_after", "runbook": dec.Runbook, "policy": dec.Policy,
				"repeat_after": dec.RepeatAfter.String(), "run_created_at": start.recentAt})})
	case start.run != nil:
		a.Policy = dec.Policy
		run, err := c.recordRun(ctx, tx, *start.run)
		if err != nil {
			return a, err
		}
		a.RunID, a.RunState = run.ID, run.State
		if run.State == store.RunRunning {
			a.started = &run // recorded started: Accept hands it over
		}
	}
	return a, nil
}

// bulkDecision is the record, on its row, of what became of an indicator
// of bulk intake that starts no run: what indicatorEntry, policy.decided
// and run.not_started would say, without the explanations of the
// policies that did not match (which is what made those entries large).
func bulkDecision(s snapshot, t triaged, dec policies.Decision, start decidedRun) *store.IndicatorDecision {
	d := &store.IndicatorDecision{At: s.now, Triage: strings.TrimPrefix(t.kind, "indicator."), Note: t.note}
	if s.dupOf != nil && t.kind == "indicator.duplicate" {
		d.DuplicateOf = s.dupOf.ID
	}
	if t.decide && dec.Matched {
		d.Policy, d.Runbook, d.BusinessHours, d.ActiveRun, d.RecentRun = dec.Policy, dec.Runbook, dec.BusinessHours, start.active, start.recent
		if a := string(dec.Approval); a != "" && a != "auto" {
			d.Approval = a
		}
	}
	return d
}

// indicatorEntry is the audit entry recording an indicator as triaged.
func indicatorEntry(actor string, s snapshot, t triaged) audit.Entry {
	in := s.in
	e := audit.Entry{At: s.now, Actor: actor, Action: t.kind, Incident: t.incident.ID, Subject: s.gw.ID}
	switch t.kind {
	case "indicator.unmatched":
		e.Subject = in.Gateway
		e.Data = mustJSON(map[string]any{"indicator": in.ID, "reason": s.item.Reason, "source": in.Source})
	case "indicator.duplicate":
		e.Data = mustJSON(map[string]any{"indicator": in.ID, "duplicate_of": s.dupOf.ID, "fingerprint": in.Fingerprint})
	case "indicator.resolved":
		e.Data = mustJSON(map[string]any{"indicator": in.ID, "note": t.note})
	case "indicator.redecided":
		e.Data = mustJSON(map[string]any{"indicator": in.ID, "posture": s.posture.Desired,
			"reason": "arrived while the gateway was being released; decided again against the posture it meets now"})
	default:
		e.Data = mustJSON(map[string]any{"indicator": in.ID, "kind": in.Kind, "severity": in.Severity, "confidence": in.Confidence,
			"source": in.Source, "status": in.Status, "fingerprint": in.Fingerprint, "observables": in.Observables})
	}
	return e
}

// touchIncident records that an indicator joined an incident.
func touchIncident(ctx context.Context, tx store.Tx, id string, in indicator.Indicator, now time.Time) error {
	inc, err := tx.IncidentByID(ctx, id)
	if err != nil {
		return err
	}
	inc.UpdatedAt = now
	inc.LastStatus = in.Status
	if in.Severity.Rank() > indicator.Severity(inc.Severity).Rank() {
		inc.Severity = string(in.Severity)
	}
	return tx.UpsertIncident(ctx, inc)
}

func incidentTitle(in indicator.Indicator, gw inventory.Gateway) string {
	t := fmt.Sprintf("%s on %s (%s)", in.Kind, gw.ID, gw.Site)
	if in.Summary != "" {
		t += ": " + in.Summary
	}
	if len(t) > 200 {
		t = t[:200]
	}
	return t
}
