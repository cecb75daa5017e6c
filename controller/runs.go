package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// ErrInvalid marks a request that is wrong in itself (unknown runbook,
// unknown or wildcard gateway). The API maps it to 400.
var ErrInvalid = errors.New("invalid request")

// ErrConflict marks a request that does not fit the current state (approving
// a run that does not wait for approval). The API maps it to 409.
var ErrConflict = errors.New("conflict")

type newRunRequest struct {
	incident string
	gateway  inventory.Gateway
	runbook  string
	policy   string
	trigger  string // policy, manual, drift
	approval bool   // the policy or person asked for approval
	budget   bool   // counts against the automatic-isolation budget
	actor    string
	override string // recorded reason to skip the evidence-first rule
	params   map[string]string
	now      time.Time
	preview  bool // gates evaluated for a plan only, in a rolled-back transaction
}

// releaseGates makes release earned (safety invariant 7): the gateway's
// latest baseline check passed after it was quarantined, every tunnel
// credential it held was rotated since, and a person approves. Unmet
// baseline or credential gates refuse the release, listing them, unless a
// person records an override reason; the approval can never be skipped.
func (c *Controller) releaseGates(ctx context.Context, tx *store.Tx, p *plan.Plan, r newRunRequest, add func(plan.Gate)) error {
	posture, err := tx.Posture(ctx, r.gateway.ID)
	if err != nil {
		return err
	}
	since := posture.UpdatedAt
	var unmet []plan.Gate
	check := func(g plan.Gate) {
		if !g.Passed {
			unmet = append(unmet, g)
			if r.override != "" {
				g.Passed, g.Detail = true, g.Detail+" — overridden by "+r.actor+": "+r.override
			}
		}
		add(g)
	}

	latest, ok, err := tx.LatestBaseline(ctx, r.gateway.ID)
	if err != nil {
		return err
	}
	bg := plan.Gate{Name: "baseline", Blocking: true}
	switch {
	case !ok:
		bg.Detail = "no baseline check on record (run warden drift check --gateway " + r.gateway.ID + ")"
	case latest.CheckedAt.Before(since):
		bg.Detail = fmt.Sprintf("latest baseline check (%s) is older than the quarantine (%s)", latest.CheckedAt.Format(time.RFC3339), since.Format(time.RFC3339))
	case !latest.Passed:
		bg.Detail = fmt.Sprintf("latest baseline check (%s) failed %d check(s), %d errored", latest.CheckedAt.Format(time.RFC3339), latest.Failed, latest.Errored)
	default:
		bg.Passed, bg.Detail = true, "baseline passed at "+latest.CheckedAt.Format(time.RFC3339)
	}
	check(bg)

	cg := plan.Gate{Name: "credentials-rotated", Blocking: true}
	if tunnels := c.inv.TunnelsOf(r.gateway.ID); len(tunnels) == 0 {
		cg.Passed, cg.Detail = true, "the gateway holds no tunnel credentials"
	} else {
		rotated, err := tx.StepSucceededSince(ctx, r.gateway.ID, "rotate_credentials", since)
		if err != nil {
			return err
		}
		if rotated {
			cg.Passed, cg.Detail = true, fmt.Sprintf("credentials of its %d tunnel(s) rotated since the quarantine", len(tunnels))
		} else {
			cg.Detail = fmt.Sprintf("credentials of its %d tunnel(s) not rotated since the quarantine (runbook respond-confirmed-compromise or rotate-fleet-credentials)", len(tunnels))
		}
	}
	check(cg)

	// A live threat is never overridable: releasing a gateway that is
	// still beaconing hands it back to the attacker.
	tg, err := c.liveThreatGate(ctx, tx, r.gateway.ID, since)
	if err != nil {
		return err
	}
	add(tg)
	if !tg.Passed && !r.preview {
		return fmt.Errorf("%w: release of %s refused; %s", ErrConflict, r.gateway.ID, tg.Detail)
	}

	add(plan.Gate{Name: "release-approval", Passed: false, Blocking: true, Detail: "release always needs a person's approval"})
	if len(unmet) > 0 && r.override == "" && !r.preview {
		reasons := make([]string, len(unmet))
		for i, g := range unmet {
			reasons[i] = g.Name + ": " + g.Detail
		}
		return fmt.Errorf("%w: release of %s refused; unmet gates: %s (a person may override with a recorded reason)", ErrConflict, r.gateway.ID, strings.Join(reasons, "; "))
	}
	return nil
}

// ReleaseThreatSeverity is the containment threshold: a firing indicator
// about a quarantined gateway at or above it, received after the
// quarantine began and not resolved by a person, blocks its release.
const ReleaseThreatSeverity = indicator.High

// liveThreatGate is the release gate "no-live-threat".
func (c *Controller) liveThreatGate(ctx context.Context, tx *store.Tx, gw string, since time.Time) (plan.Gate, error) {
	g := plan.Gate{Name: "no-live-threat", Blocking: true}
	threats, err := tx.LiveThreats(ctx, gw, since, ReleaseThreatSeverity)
	if err != nil {
		return g, err
	}
	if len(threats) == 0 {
		g.Passed, g.Detail = true, "no "+string(ReleaseThreatSeverity)+"-or-worse indicator about the gateway since the quarantine is still firing"
		return g, nil
	}
	last := threats[len(threats)-1]
	g.Detail = fmt.Sprintf("%d firing indicator(s) of severity %s or worse arrived since the quarantine and no person resolved them (latest %s: %s %s at %s); resolve each with warden indicator resolve ID --reason, never by override",
		len(threats), ReleaseThreatSeverity, last.ID, last.Severity, last.Kind, last.ReceivedAt.Format(time.RFC3339))
	return g, nil
}

// recheckRelease evaluates the release gates again for a run that
// releases, at approval and right before the release step: an override
// recorded on the run still covers the baseline and credential gates,
// never a live threat. It returns the reason the release must not go on,
// or "".
func (c *Controller) recheckRelease(ctx context.Context, tx *store.Tx, run store.Run) (string, error) {
	if !releases(run) {
		return "", nil
	}
	gw, ok := c.inv.Gateway(run.Gateway)
	if !ok {
		return "gateway " + run.Gateway + " is no longer in the inventory", nil
	}
	var p plan.Plan
	err := c.releaseGates(ctx, tx, &p, newRunRequest{gateway: gw, override: run.OverrideReason, actor: run.ApprovedBy, now: c.clock.Now()},
		func(g plan.Gate) { p.Gates = append(p.Gates, g) })
	if errors.Is(err, ErrConflict) {
		return err.Error(), nil
	}
	return "", err
}

// releases reports whether a run has a release step.
func releases(run store.Run) bool {
	for _, s := range run.Steps {
		if s.Action == actions.NameRelease {
			return true
		}
	}
	return false
}

// refuseRelease cancels a release whose gates no longer hold, with the
// reason in the run and the audit.
func (c *Controller) refuseRelease(ctx context.Context, tx *store.Tx, run *store.Run, when, reason string) error {
	now := c.clock.Now()
	run.State, run.UpdatedAt, run.FinishedAt = store.RunCancelled, now, now
	run.Error = "release refused " + when + ": " + reason
	if err := tx.UpdateRun(ctx, *run); err != nil {
		return err
	}
	return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "run.cancelled", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
		Data: mustJSON(map[string]any{"reason": run.Error, "gates_rechecked": when})})
}

// staticPlan lays out a runbook's steps for a gateway without reading any
// provider state (that is PlanFor's job).
func (c *Controller) staticPlan(incident string, gw inventory.Gateway, runbook, policy string, extra ...map[string]string) (plan.Plan, error) {
	rb, ok := c.pol.Runbooks[runbook]
	if !ok {
		return plan.Plan{}, fmt.Errorf("%w: unknown runbook %q", ErrInvalid, runbook)
	}
	p := plan.Plan{Incident: incident, Gateway: gw.ID, Site: gw.Site, VM: gw.VM, Runbook: runbook, Policy: policy}
	for i, s := range rb.Steps {
		name := s.Name
		if name == "" {
			name = s.Action
		}
		target := gw.ID
		if gw.VM != "" && (s.Action == actions.NameSnapshot || s.Action == actions.NameIsolate || s.Action == actions.NameRelease || s.Action == actions.NamePowerOff) {
			target = gw.ID + " (VM " + gw.VM + ")"
		}
		params := s.Params
		for _, e := range extra {
			if len(e) == 0 {
				continue
			}
			merged := make(map[string]string, len(params)+len(e))
			for k, v := range params {
				merged[k] = v
			}
			for k, v := range e {
				merged[k] = v
			}
			params = merged
		}
		p.Steps = append(p.Steps, plan.Step{Index: i, Name: name, Action: s.Action, Target: target, Params: params,
			Optional: s.Optional, Evidence: actions.Evidence[s.Action], Destructive: actions.Destructive[s.Action]})
	}
	return p, nil
}

// gates evaluates approval, breaker, budget and evidence-first gates. It
// may trip the breaker (audited).
func (c *Controller) gates(ctx context.Context, tx *store.Tx, p *plan.Plan, r newRunRequest) (autoIsolation bool, err error) {
	add := func(g plan.Gate) {
		p.Gates = append(p.Gates, g)
		if !g.Passed && g.Blocking {
			p.ApprovalRequired = true
		}
	}
	if r.approval {
		add(plan.Gate{Name: "approval", Passed: false, Blocking: true, Detail: "policy " + r.policy + " requires a person's approval"})
	} else if r.trigger == "manual" {
		add(plan.Gate{Name: "approval", Passed: true, Blocking: true, Detail: "started by " + r.actor})
	} else {
		add(plan.Gate{Name: "approval", Passed: true, Blocking: true, Detail: "automatic by policy " + r.policy})
	}

	// Evidence first: on a compromised gateway (the run belongs to an
	// incident, or the gateway has an open one) a destructive step needs an
	// evidence step before it in the plan, or already done for the
	// incident, unless overridden. Routine patching of healthy gateways is
	// not held.
	compromised := r.incident != ""
	if !compromised {
		n, err := tx.CountOpenIncidents(ctx, r.gateway.ID)
		if err != nil {
			return false, err
		}
		compromised = n > 0
	}
	seenEvidence := map[string]bool{}
	for _, s := range p.Steps {
		if s.Evidence {
			seenEvidence[s.Action] = true
		}
		if s.Destructive && len(seenEvidence) == 0 && r.override == "" && compromised {
			missing, err := tx.EvidenceSucceeded(ctx, r.incident, []string{actions.NameSnapshot, actions.NameCaptureVolatile})
			if err != nil {
				return false, err
			}
			if r.incident == "" || len(missing) == 2 {
				add(plan.Gate{Name: "evidence-first", Passed: false, Blocking: true,
					Detail: fmt.Sprintf("step %s is destructive and no evidence (capture_volatile or snapshot) precedes it; a person must override with a recorded reason", s.Name)})
			}
		}
	}
	if r.override != "" {
		add(plan.Gate{Name: "evidence-first", Passed: true, Blocking: false, Detail: "overridden by " + r.actor + ": " + r.override})
	}

	if p.HasAction(actions.NameRelease) {
		if err := c.releaseGates(ctx, tx, p, r, add); err != nil {
			return false, err
		}
	}

	isolates := p.HasAction(actions.NameIsolate) || p.HasAction(actions.NamePowerOff)
	if r.trigger == "manual" || !isolates || !r.budget {
		return false, nil
	}
	g := c.opt.Guards
	since := r.now.Add(-g.Window)

	br, err := tx.Breaker(ctx)
	if err != nil {
		return false, err
	}
	if !br.Tripped {
		n, err := tx.CountGatewaysWithIndicators(ctx, since)
		if err != nil {
			return false, err
		}
		fleet := len(c.inv.Gateways)
		need := max(g.BreakerMinGateways, int(math.Ceil(g.BreakerFraction*float64(fleet))))
		if n >= need {
			reason := fmt.Sprintf("%d of %d gateways have firing indicators within %s (threshold %d)", n, fleet, g.Window, need)
			if err := tx.TripBreaker(ctx, r.now, reason); err != nil {
				return false, err
			}
			if err := tx.Audit(ctx, audit.Entry{At: r.now, Actor: "controller", Action: "breaker.tripped", Incident: r.incident,
				Data: mustJSON(map[string]any{"reason": reason})}); err != nil {
				return false, err
			}
			if !r.preview {
				c.m.BreakerTrips.Inc()
				c.log.Error("circuit breaker tripped: automatic actions stopped, a person must decide", "reason", reason)
				c.queuePage(breakerPage(r.now, reason))
			}
			br = store.Breaker{Tripped: true, Reason: reason}
		}
	}
	if br.Tripped {
		add(plan.Gate{Name: "circuit-breaker", Passed: false, Blocking: true, Detail: "tripped: " + br.Reason + "; automatic actions wait for a person"})
		return false, nil
	}
	fleetN, siteN, err := tx.CountAutoIsolations(ctx, since, r.gateway.Site)
	if err != nil {
		return false, err
	}
	switch {
	case siteN >= g.MaxAutoIsolationsPerSite:
		add(plan.Gate{Name: "blast-radius", Passed: false, Blocking: true,
			Detail: fmt.Sprintf("site %s already had %d automatic isolation(s) within %s (budget %d)", r.gateway.Site, siteN, g.Window, g.MaxAutoIsolationsPerSite)})
		return false, nil
	case fleetN >= g.MaxAutoIsolationsFleet:
		add(plan.Gate{Name: "blast-radius", Passed: false, Blocking: true,
			Detail: fmt.Sprintf("fleet already had %d automatic isolation(s) within %s (budget %d)", fleetN, g.Window, g.MaxAutoIsolationsFleet)})
		return false, nil
	}
	add(plan.Gate{Name: "blast-radius", Passed: true, Blocking: true,
		Detail: fmt.Sprintf("site %s %d/%d, fleet %d/%d automatic isolations within %s", r.gateway.Site, siteN, g.MaxAutoIsolationsPerSite, fleetN, g.MaxAutoIsolationsFleet, g.Window)})
	return !p.ApprovalRequired, nil
}

func (c *Controller) newRun(ctx context.Context, tx *store.Tx, r newRunRequest) (store.Run, error) {
	p, err := c.staticPlan(r.incident, r.gateway, r.runbook, r.policy, r.params)
	if err != nil {
		return store.Run{}, err
	}
	auto, err := c.gates(ctx, tx, &p, r)
	if err != nil {
		return store.Run{}, err
	}
	pj, _ := json.Marshal(p)
	run := store.Run{
		ID: store.NewID("run"), Incident: r.incident, Gateway: r.gateway.ID, Site: r.gateway.Site, Runbook: r.runbook, Policy: r.policy,
		Trigger: r.trigger, State: store.RunPending, AutoIsolation: auto, OverrideReason: r.override, Plan: pj,
		CreatedAt: r.now, UpdatedAt: r.now,
	}
	if p.ApprovalRequired {
		run.State, run.ApprovalRequired = store.RunAwaitingApproval, true
		run.ApprovalReason = strings.Join(p.BlockingReasons(), "; ")
	} else if r.trigger == "manual" {
		run.ApprovedBy, run.ApprovedAt = r.actor, r.now
	}
	for _, s := range p.Steps {
		run.Steps = append(run.Steps, store.Step{Index: s.Index, Name: s.Name, Action: s.Action, Params: s.Params, Optional: s.Optional,
			State: store.StepPending, IdemKey: fmt.Sprintf("%s/%d/%s", run.ID, s.Index, s.Action)})
	}
	if err := tx.InsertRun(ctx, run); err != nil {
		return store.Run{}, err
	}
	if err := tx.Audit(ctx, audit.Entry{At: r.now, Actor: r.actor, Action: "run.created", Incident: r.incident, Run: run.ID, Subject: r.gateway.ID,
		Data: mustJSON(map[string]any{"runbook": r.runbook, "policy": r.policy, "trigger": r.trigger, "state": run.State,
			"approval_reason": run.ApprovalReason, "auto_isolation": auto, "gates": p.Gates, "override_reason": r.override})}); err != nil {
		return store.Run{}, err
	}
	if run.State == store.RunAwaitingApproval {
		c.log.Warn("run waits for approval", "run", run.ID, "gateway", r.gateway.ID, "reason", run.ApprovalReason)
	}
	return run, nil
}

// StartRequest is a person (or the drift scheduler) starting a runbook.
type StartRequest struct {
	Runbook  string
	Gateway  string
	Incident string // optional: attach to an incident
	Actor    string
	// OverrideReason lets destructive steps run without evidence first;
	// it is recorded in the audit.
	OverrideReason string
	// Params are added to every step's parameters (a patch wave names
	// the packages this way).
	Params map[string]string
}

// StartRunbook creates a manual run. An empty or wildcard gateway is an
// error, never "all" (safety invariant 2).
func (c *Controller) StartRunbook(ctx context.Context, req StartRequest) (store.Run, error) {
	gw, err := c.resolveGateway(req.Gateway)
	if err != nil {
		return store.Run{}, err
	}
	if req.Actor == "" {
		return store.Run{}, fmt.Errorf("%w: actor is required", ErrInvalid)
	}
	var run store.Run
	err = c.st.Tx(ctx, func(tx *store.Tx) error {
		incident := req.Incident
		if incident == "" {
			// A person acting on a gateway with an open incident acts
			// within it: its evidence, steps and report stay together.
			inc, open, err := tx.OpenIncidentFor(ctx, gw.ID, time.Time{})
			if err != nil {
				return err
			}
			if open {
				incident = inc.ID
			}
		}
		var err error
		run, err = c.newRun(ctx, tx, newRunRequest{incident: incident, gateway: gw, runbook: req.Runbook, trigger: "manual",
			actor: req.Actor, override: req.OverrideReason, params: req.Params, now: c.clock.Now()})
		return err
	})
	if err != nil {
		return store.Run{}, err
	}
	c.Kick()
	return run, nil
}

func (c *Controller) resolveGateway(id string) (inventory.Gateway, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return inventory.Gateway{}, fmt.Errorf("%w: gateway: is required (an empty target never means all)", ErrInvalid)
	}
	if strings.ContainsAny(id, "*?") || strings.EqualFold(id, "all") {
		return inventory.Gateway{}, fmt.Errorf("%w: gateway: %q is a wildcard; name exactly one gateway", ErrInvalid, id)
	}
	gw, ok := c.inv.Gateway(id)
	if !ok {
		return inventory.Gateway{}, fmt.Errorf("%w: gateway: unknown gateway %q", ErrInvalid, id)
	}
	return gw, nil
}

// PlanFor builds the plan a runbook would follow for a gateway, reading
// current state through each action's Plan, and turns the actions'
// warnings into notes. It changes nothing.
func (c *Controller) PlanFor(ctx context.Context, runbook, gateway, incident, policy string) (plan.Plan, error) {
	gw, err := c.resolveGateway(gateway)
	if err != nil {
		return plan.Plan{}, err
	}
	p, err := c.staticPlan(incident, gw, runbook, policy)
	if err != nil {
		return plan.Plan{}, err
	}
	for i, s := range p.Steps {
		act, ok := c.acts[s.Action]
		if !ok {
			p.Steps[i].PlanError = "action not available"
			continue
		}
		ch, err := act.Plan(ctx, actions.Request{IdempotencyKey: "plan", Incident: incident, Gateway: gw, Params: s.Params})
		if err != nil {
			p.Steps[i].PlanError = err.Error()
			continue
		}
		p.Steps[i].Expected = &ch
		// A step's warnings become notes (gates that never block), with
		// the later steps it leaves to people.
		later := make([]string, 0, len(p.Steps)-i-1)
		for _, l := range p.Steps[i+1:] {
			later = append(later, l.Action)
		}
		for _, n := range ch.Notes(later) {
			p.Gates = append(p.Gates, plan.Gate{Name: s.Name, Passed: false, Blocking: false, Detail: n})
		}
	}
	return p, nil
}

// errPreview rolls back the transaction a gate preview runs in.
var errPreview = errors.New("preview only")

// PlanDecision is what `warden plan` shows for a policy decision: the
// runbook's steps with the changes each expects against current state, and
// the gates (approval, circuit breaker, blast-radius budget, evidence first)
// as they stand now. It changes nothing: the gates are evaluated in a
// transaction that is rolled back.
func (c *Controller) PlanDecision(ctx context.Context, gateway, runbook, policy string, approval, budget bool) (plan.Plan, error) {
	return c.planWithGates(ctx, newRunRequest{runbook: runbook, policy: policy, trigger: "policy", approval: approval, budget: budget, actor: "plan"}, gateway, "")
}

// PlanManual is PlanDecision for a runbook a person would start: the
// steps, their expected changes, and the gates (release gates, evidence
// first) as they stand now. It changes nothing.
func (c *Controller) PlanManual(ctx context.Context, req StartRequest) (plan.Plan, error) {
	return c.planWithGates(ctx, newRunRequest{runbook: req.Runbook, trigger: "manual", actor: req.Actor, override: req.OverrideReason, params: req.Params}, req.Gateway, req.Incident)
}

func (c *Controller) planWithGates(ctx context.Context, r newRunRequest, gateway, incident string) (plan.Plan, error) {
	gw, err := c.resolveGateway(gateway)
	if err != nil {
		return plan.Plan{}, err
	}
	named := incident
	if named == "" {
		named = "inc-planned"
	}
	p, err := c.PlanFor(ctx, r.runbook, gw.ID, named, r.policy)
	if err != nil {
		return plan.Plan{}, err
	}
	r.incident, r.gateway, r.now, r.preview = incident, gw, c.clock.Now(), true
	if r.trigger == "policy" {
		r.incident = named
	}
	err = c.st.Tx(ctx, func(tx *store.Tx) error {
		if _, err := c.gates(ctx, tx, &p, r); err != nil {
			return err
		}
		return errPreview
	})
	if err != nil && !errors.Is(err, errPreview) {
		return plan.Plan{}, err
	}
	p.Incident = incident
	return p, nil
}

// Approve lets a waiting run proceed.
func (c *Controller) Approve(ctx context.Context, runID, actor, comment string) (store.Run, error) {
	if actor == "" {
		return store.Run{}, fmt.Errorf("%w: approver is required", ErrInvalid)
	}
	var run store.Run
	var refused string
	err := c.st.Tx(ctx, func(tx *store.Tx) error {
		var err error
		run, err = tx.Run(ctx, runID)
		if err != nil {
			return err
		}
		if run.State != store.RunAwaitingApproval {
			return fmt.Errorf("%w: run %s is %s, not awaiting approval", ErrConflict, runID, run.State)
		}
		// Gates are evaluated again at the moment of approval: what was
		// true when the release was requested may no longer be.
		why, err := c.recheckRelease(ctx, tx, run)
		if err != nil {
			return err
		}
		if why != "" {
			refused = why
			return c.refuseRelease(ctx, tx, &run, "at approval", why)
		}
		now := c.clock.Now()
		run.State, run.ApprovedBy, run.ApprovedAt, run.UpdatedAt = store.RunPending, actor, now, now
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "run.approved", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"comment": comment, "was_waiting_for": run.ApprovalReason})})
	})
	if err != nil {
		return store.Run{}, err
	}
	if refused != "" {
		return run, fmt.Errorf("%w: run %s cancelled: %s", ErrConflict, run.ID, refused)
	}
	c.Kick()
	return run, nil
}

// Cancel stops a run that has not finished. Steps already applied stay
// applied (undo is a separate, explicit runbook).
func (c *Controller) Cancel(ctx context.Context, runID, actor, reason string) (store.Run, error) {
	var run store.Run
	err := c.st.Tx(ctx, func(tx *store.Tx) error {
		var err error
		run, err = tx.Run(ctx, runID)
		if err != nil {
			return err
		}
		if run.Terminal() {
			return fmt.Errorf("%w: run %s already %s", ErrConflict, runID, run.State)
		}
		now := c.clock.Now()
		run.State, run.UpdatedAt, run.FinishedAt, run.Error = store.RunCancelled, now, now, "cancelled by "+actor+": "+reason
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "run.cancelled", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"reason": reason})})
	})
	return run, err
}

// ResetBreaker closes the circuit breaker after a person has looked.
func (c *Controller) ResetBreaker(ctx context.Context, actor, reason string) (bool, error) {
	var was bool
	err := c.st.Tx(ctx, func(tx *store.Tx) error {
		var err error
		was, err = tx.ResetBreaker(ctx)
		if err != nil || !was {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: actor, Action: "breaker.reset", Data: mustJSON(map[string]any{"reason": reason})})
	})
	return was, err
}

// ResolveIndicator records that a person judged an indicator no longer a
// threat, which is what lets a release past the no-live-threat gate. The
// actor is the authenticated caller.
func (c *Controller) ResolveIndicator(ctx context.Context, id, actor, reason string) error {
	if actor == "" || strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: resolving an indicator needs the person and a reason", ErrInvalid)
	}
	return c.st.Tx(ctx, func(tx *store.Tx) error {
		rec, err := tx.IndicatorByID(ctx, id)
		if err != nil {
			return err
		}
		now := c.clock.Now()
		if err := tx.ResolveIndicator(ctx, id, actor, reason, now); err != nil {
			if errors.Is(err, store.ErrAlreadyResolved) {
				return fmt.Errorf("%w: %w", ErrConflict, err)
			}
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "indicator.resolved_by_person", Incident: rec.Incident, Subject: rec.Indicator.Gateway,
			Data: mustJSON(map[string]any{"indicator": id, "reason": reason})})
	})
}
