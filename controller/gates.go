package controller

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// The gates between a plan and its execution are pure functions of a
// gateInput, evaluated in the order of gateOrder. Everything they need is
// read beforehand by loadGateFacts; what follows from them (a breaker to
// trip, a release to refuse) is returned in the verdict and done by the
// caller.

// gateInput is what the gates judge: the request, the plan's shape, and
// the facts read from the store.
type gateInput struct {
	req    newRunRequest
	steps  []plan.Step
	shape  planShape
	facts  gateFacts
	guards config.Guards
	fleet  int // gateways in the inventory
}

// planShape is what the gates need to know about a plan's steps, from
// the catalogue's metadata.
type planShape struct {
	releases bool // a step's posture effect is release
	contains bool // a step takes the gateway out of service
	// unprotected names the destructive steps with no evidence step
	// before them in the plan.
	unprotected []string
}

func shapeOf(steps []plan.Step, cat actions.Catalogue) planShape {
	var sh planShape
	evidence := false
	for _, s := range steps {
		m := cat.Meta(s.Action)
		sh.releases = sh.releases || m.Posture == actions.EffectRelease
		sh.contains = sh.contains || m.Contains
		evidence = evidence || m.Evidence
		if m.Destructive && !evidence {
			sh.unprotected = append(sh.unprotected, s.Name)
		}
	}
	return sh
}

// gateFacts are the store's facts the gates judge. Only what the plan's
// shape makes a gate ask for is read.
type gateFacts struct {
	// Evidence first.
	compromised  bool // the run belongs to an incident or the gateway has an open one
	evidenceDone bool // an evidence step already succeeded for the incident

	// Release.
	quarantinedSince time.Time
	baseline         store.BaselineResult
	hasBaseline      bool
	tunnels          int
	rotated          bool
	threats          []store.LiveThreat

	// Breaker and budget (automatic containment only).
	breaker        store.Breaker
	gatewaysFiring int
	autoFleet      int
	autoSite       int
}

// verdict is the outcome of the gates.
type verdict struct {
	gates []plan.Gate
	// approvalRequired: a blocking gate failed; a person must approve.
	approvalRequired bool
	// auto: the run is an automatic containment within budget.
	auto bool
	// trip is the reason to trip the circuit breaker ("" for none).
	trip string
	// refuse is why the run must not be created at all (a release whose
	// gates are unmet); nil otherwise.
	refuse error
}

func (v *verdict) add(gs ...plan.Gate) {
	for _, g := range gs {
		v.gates = append(v.gates, g)
		if !g.Passed && g.Blocking {
			v.approvalRequired = true
		}
	}
}

// gateOrder is the order gates are evaluated and shown in.
var gateOrder = []func(gateInput, *verdict){
	approvalGate,
	evidenceFirstGate,
	releaseGates,
	breakGlassGate,
	containmentGates,
}

// evaluateGates runs every gate in order.
func evaluateGates(in gateInput) verdict {
	var v verdict
	for _, g := range gateOrder {
		g(in, &v)
	}
	return v
}

// approvalGate: a policy may ask for a person; a person starting a run is
// one.
func approvalGate(in gateInput, v *verdict) {
	g := plan.Gate{Name: "approval", Passed: true, Blocking: true}
	switch {
	case in.req.approval:
		g.Passed, g.Detail = false, "policy "+in.req.policy+" requires a person's approval"
	case in.req.trigger == "manual":
		g.Detail = "started by " + in.req.actor
	default:
		g.Detail = "automatic by policy " + in.req.policy
	}
	v.add(g)
}

// evidenceFirstGate is safety invariant 4 at planning time: on a
// compromised gateway a destructive step needs an evidence step before it
// in the plan, or one already done for the incident, unless a person
// overrides. Routine patching of healthy gateways is not held.
func evidenceFirstGate(in gateInput, v *verdict) {
	if in.req.override != "" {
		v.add(plan.Gate{Name: "evidence-first", Passed: true, Blocking: false, Detail: "overridden by " + in.req.actor + ": " + in.req.override})
		return
	}
	if !in.facts.compromised || (in.req.incident != "" && in.facts.evidenceDone) {
		return
	}
	for _, name := range in.shape.unprotected {
		v.add(plan.Gate{Name: "evidence-first", Passed: false, Blocking: true,
			Detail: fmt.Sprintf("step %s is destructive and no evidence (capture_volatile or snapshot) precedes it; a person must override with a recorded reason", name)})
	}
}

// breakGlassGate is four eyes for overrides: a person who overrides a gate
// (evidence first, a release gate) cannot also be the one who lets the run
// go; a second person approves it. With guards.two_person false the
// override stands alone, and the gate says so.
func breakGlassGate(in gateInput, v *verdict) {
	if in.req.override == "" {
		return
	}
	if !in.guards.FourEyes() {
		v.add(plan.Gate{Name: "four-eyes", Passed: true, Blocking: false,
			Detail: "guards.two_person is off: " + in.req.actor + " overrode a gate and may act alone"})
		return
	}
	v.add(plan.Gate{Name: "four-eyes", Passed: false, Blocking: true,
		Detail: "break-glass override by " + in.req.actor + ": a second person (an approver) must approve the run"})
}

// fourEyes is why actor may not approve run ("" when they may): with
// guards.two_person (the default), neither the person who asked for the
// run nor the one who overrode a gate on it approves it.
func fourEyes(run store.Run, actor string, g config.Guards) string {
	if !g.FourEyes() {
		return ""
	}
	var did []string
	if run.RequestedBy != "" && run.RequestedBy == actor {
		did = append(did, "requested it")
	}
	if run.OverriddenBy != "" && run.OverriddenBy == actor {
		did = append(did, "overrode a gate on it")
	}
	if len(did) == 0 {
		return ""
	}
	return fmt.Sprintf("four eyes (guards.two_person): %s %s, so another approver must approve run %s", actor, strings.Join(did, " and "), run.ID)
}

// releaseGates make release earned (safety invariant 7): the latest
// baseline check passed after the quarantine, every tunnel credential was
// rotated since, no live threat remains, and a person approves. Unmet
// baseline or credential gates refuse the release unless a person records
// an override; a live threat and the approval can never be skipped.
func releaseGates(in gateInput, v *verdict) {
	if !in.shape.releases {
		return
	}
	var unmet []plan.Gate
	overridable := func(g plan.Gate) plan.Gate {
		if !g.Passed {
			unmet = append(unmet, g)
			if in.req.override != "" {
				g.Passed, g.Detail = true, g.Detail+" — overridden by "+in.req.actor+": "+in.req.override
			}
		}
		return g
	}
	v.add(overridable(baselineGate(in.req.gateway.ID, in.facts)), overridable(credentialsGate(in.facts)))
	tg := liveThreatGate(in.facts.threats)
	v.add(tg)
	if !tg.Passed && !in.req.preview {
		v.refuse = fmt.Errorf("%w: release of %s refused; %s", ErrConflict, in.req.gateway.ID, tg.Detail)
		return
	}
	v.add(plan.Gate{Name: "release-approval", Passed: false, Blocking: true, Detail: "release always needs a person's approval"})
	if len(unmet) > 0 && in.req.override == "" && !in.req.preview {
		reasons := make([]string, len(unmet))
		for i, g := range unmet {
			reasons[i] = g.Name + ": " + g.Detail
		}
		v.refuse = fmt.Errorf("%w: release of %s refused; unmet gates: %s (a person may override with a recorded reason)", ErrConflict, in.req.gateway.ID, strings.Join(reasons, "; "))
	}
}

// baselineGate: the latest baseline check passed, and after the
// quarantine began.
func baselineGate(gw string, f gateFacts) plan.Gate {
	g := plan.Gate{Name: "baseline", Blocking: true}
	b := f.baseline
	switch {
	case !f.hasBaseline:
		g.Detail = "no baseline check on record (run warden drift check --gateway " + gw + ")"
	case b.CheckedAt.Before(f.quarantinedSince):
		g.Detail = fmt.Sprintf("latest baseline check (%s) is older than the quarantine (%s)", b.CheckedAt.Format(time.RFC3339), f.quarantinedSince.Format(time.RFC3339))
	case !b.Passed:
		g.Detail = fmt.Sprintf("latest baseline check (%s) failed %d check(s), %d errored", b.CheckedAt.Format(time.RFC3339), b.Failed, b.Errored)
	default:
		g.Passed, g.Detail = true, "baseline passed at "+b.CheckedAt.Format(time.RFC3339)
	}
	return g
}

// credentialsGate: every tunnel credential the gateway held was rotated
// since the quarantine.
func credentialsGate(f gateFacts) plan.Gate {
	g := plan.Gate{Name: "credentials-rotated", Blocking: true}
	switch {
	case f.tunnels == 0:
		g.Passed, g.Detail = true, "the gateway holds no tunnel credentials"
	case f.rotated:
		g.Passed, g.Detail = true, fmt.Sprintf("credentials of its %d tunnel(s) rotated since the quarantine", f.tunnels)
	default:
		g.Detail = fmt.Sprintf("credentials of its %d tunnel(s) not rotated since the quarantine (runbook respond-confirmed-compromise or rotate-fleet-credentials)", f.tunnels)
	}
	return g
}

// ReleaseThreatSeverity is the containment threshold: a firing indicator
// about a quarantined gateway at or above it, received after the
// quarantine began and not resolved by a person, blocks its release.
const ReleaseThreatSeverity = indicator.High

// liveThreatGate is the release gate "no-live-threat". It is never
// overridable: releasing a gateway that is still beaconing hands it back
// to the attacker.
func liveThreatGate(threats []store.LiveThreat) plan.Gate {
	g := plan.Gate{Name: "no-live-threat", Blocking: true}
	if len(threats) == 0 {
		g.Passed, g.Detail = true, "no "+string(ReleaseThreatSeverity)+"-or-worse indicator about the gateway since the quarantine is still firing"
		return g
	}
	last := threats[len(threats)-1]
	g.Detail = fmt.Sprintf("%d firing indicator(s) of severity %s or worse arrived since the quarantine and no person resolved them (latest %s: %s %s at %s); resolve each with warden indicator resolve ID --reason, never by override",
		len(threats), ReleaseThreatSeverity, last.ID, last.Severity, last.Kind, last.ReceivedAt.Format(time.RFC3339))
	return g
}

// containmentGates hold automatic containment (a policy's run that takes
// gateways out of service and counts against the budget) to the circuit
// breaker and the blast-radius budget.
func containmentGates(in gateInput, v *verdict) {
	if !countsAgainstBudget(in.req, in.shape) {
		return
	}
	if g, trip := breakerGate(in); g != nil {
		v.trip = trip
		v.add(*g)
		return
	}
	g := budgetGate(in)
	v.add(g)
	v.auto = g.Passed && !v.approvalRequired
}

func countsAgainstBudget(r newRunRequest, sh planShape) bool {
	return r.trigger != "manual" && sh.contains && r.budget
}

// breakerGate returns the failed circuit-breaker gate when the breaker is
// tripped or trips now (with the reason to trip it), nil when closed.
func breakerGate(in gateInput) (*plan.Gate, string) {
	f, g := in.facts, in.guards
	reason, trip := f.breaker.Reason, ""
	if !f.breaker.Tripped {
		need := max(g.BreakerMinGateways, int(math.Ceil(g.BreakerFraction*float64(in.fleet))))
		if f.gatewaysFiring < need {
			return nil, ""
		}
		reason = fmt.Sprintf("%d of %d gateways have firing indicators within %s (threshold %d)", f.gatewaysFiring, in.fleet, g.Window, need)
		trip = reason
	}
	return &plan.Gate{Name: "circuit-breaker", Passed: false, Blocking: true, Detail: "tripped: " + reason + "; automatic actions wait for a person"}, trip
}

// budgetGate: automatic isolations within the window stay within the
// site's and the fleet's budget.
func budgetGate(in gateInput) plan.Gate {
	f, g, site := in.facts, in.guards, in.req.gateway.Site
	switch {
	case f.autoSite >= g.MaxAutoIsolationsPerSite:
		return plan.Gate{Name: "blast-radius", Passed: false, Blocking: true,
			Detail: fmt.Sprintf("site %s already had %d automatic isolation(s) within %s (budget %d)", site, f.autoSite, g.Window, g.MaxAutoIsolationsPerSite)}
	case f.autoFleet >= g.MaxAutoIsolationsFleet:
		return plan.Gate{Name: "blast-radius", Passed: false, Blocking: true,
			Detail: fmt.Sprintf("fleet already had %d automatic isolation(s) within %s (budget %d)", f.autoFleet, g.Window, g.MaxAutoIsolationsFleet)}
	}
	return plan.Gate{Name: "blast-radius", Passed: true, Blocking: true,
		Detail: fmt.Sprintf("site %s %d/%d, fleet %d/%d automatic isolations within %s", site, f.autoSite, g.MaxAutoIsolationsPerSite, f.autoFleet, g.MaxAutoIsolationsFleet, g.Window)}
}

// loadGateFacts reads what the gates will ask about this plan, and only
// that.
func (c *core) loadGateFacts(ctx context.Context, tx store.Tx, r newRunRequest, sh planShape) (gateFacts, error) {
	var f gateFacts
	var err error
	if len(sh.unprotected) > 0 && r.override == "" {
		if f.compromised = r.incident != ""; !f.compromised {
			n, err := tx.CountOpenIncidents(ctx, r.gateway.ID)
			if err != nil {
				return f, err
			}
			f.compromised = n > 0
		}
		if r.incident != "" {
			evidence := c.acts.EvidenceNames()
			missing, err := tx.EvidenceSucceeded(ctx, r.incident, evidence)
			if err != nil {
				return f, err
			}
			f.evidenceDone = len(missing) < len(evidence)
		}
	}
	if sh.releases {
		if f, err = c.loadReleaseFacts(ctx, tx, r.gateway.ID, f); err != nil {
			return f, err
		}
	}
	if countsAgainstBudget(r, sh) {
		since := r.now.Add(-c.opt.Guards.Window)
		if f.breaker, err = tx.Breaker(ctx); err != nil {
			return f, err
		}
		if f.breaker.Tripped {
			return f, nil // the budget is not judged while the breaker is open
		}
		if f.gatewaysFiring, err = tx.CountGatewaysWithIndicators(ctx, since, r.firing); err != nil {
			return f, err
		}
		if f.autoFleet, f.autoSite, err = tx.CountAutoIsolations(ctx, since, r.gateway.Site); err != nil {
			return f, err
		}
	}
	return f, nil
}

// loadReleaseFacts reads the release gates' facts about gw.
func (c *core) loadReleaseFacts(ctx context.Context, tx store.Tx, gw string, f gateFacts) (gateFacts, error) {
	posture, err := tx.Posture(ctx, gw)
	if err != nil {
		return f, err
	}
	f.quarantinedSince = posture.UpdatedAt
	if f.baseline, f.hasBaseline, err = tx.LatestBaseline(ctx, gw); err != nil {
		return f, err
	}
	if f.tunnels = len(c.inv.TunnelsOf(gw)); f.tunnels > 0 {
		if f.rotated, err = tx.StepSucceededSince(ctx, gw, actions.NameRotateCredentials, f.quarantinedSince); err != nil {
			return f, err
		}
	}
	f.threats, err = tx.LiveThreats(ctx, gw, f.quarantinedSince, ReleaseThreatSeverity)
	return f, err
}
