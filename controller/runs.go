package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
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

// ErrForbidden is a request the caller may not make whatever the state:
// approving a run they asked for or overrode (four eyes), disabling the
// last admin.
var ErrForbidden = errors.New("forbidden")

type newRunRequest struct {
	incident string
	gateway  inventory.Gateway
	runbook  string
	policy   string
	trigger  string // policy, manual, drift
	approval bool   // the policy or person asked for approval
	budget   bool   // counts against the automatic-isolation budget
	actor    string
	// requester is who asked for the run: the person starting it, or
	// whoever submitted the indicator a policy decided on. Four eyes keeps
	// them from approving it.
	requester string
	override  string // recorded reason to skip the evidence-first rule
	params    map[string]string
	now       time.Time
	preview   bool // gates evaluated for a plan only, in a rolled-back transaction
	// firing names the gateway whose indicator is being decided: the
	// circuit breaker counts it as firing although it is not recorded yet.
	firing string
	// handedOver says the run, once committed, goes straight to this
	// controller's executor (intake's Accept, startRuns): if it needs no
	// approval, its start and its first step's first attempt are recorded
	// with it (startsAtOnce).
	handedOver bool
}

// recheckRelease evaluates the release gates again for a run that
// releases, at approval and right before the release step: an override
// recorded on the run still covers the baseline and credential gates,
// never a live threat. It returns the reason the release must not go on,
// or "".
func (c *core) recheckRelease(ctx context.Context, tx store.Tx, run store.Run) (string, error) {
	if !c.releases(run) {
		return "", nil
	}
	gw, ok := c.inv.Gateway(run.Gateway)
	if !ok {
		return "gateway " + run.Gateway + " is no longer in the inventory", nil
	}
	r := newRunRequest{gateway: gw, override: run.OverrideReason, actor: run.ApprovedBy, now: c.clock.Now()}
	f, err := c.loadReleaseFacts(ctx, tx, gw.ID, gateFacts{})
	if err != nil {
		return "", err
	}
	var v verdict
	releaseGates(gateInput{req: r, shape: planShape{releases: true}, facts: f}, &v)
	if v.refuse != nil {
		return v.refuse.Error(), nil
	}
	return "", nil
}

// releases reports whether a run has a step that releases the gateway.
func (c *core) releases(run store.Run) bool {
	for _, s := range run.Steps {
		if c.acts.Meta(s.Action).Posture == actions.EffectRelease {
			return true
		}
	}
	return false
}

// refuseRelease cancels a release whose gates no longer hold, with the
// reason in the run and the audit.
func (c *core) refuseRelease(ctx context.Context, tx store.Tx, run *store.Run, when, reason string) error {
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
func (c *core) staticPlan(incident string, gw inventory.Gateway, runbook, policy string, extra ...map[string]string) (plan.Plan, error) {
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
		meta := c.acts.Meta(s.Action)
		target := gw.ID
		if gw.VM != "" && meta.OnVM {
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
			Optional: s.Optional, Evidence: meta.Evidence, Destructive: meta.Destructive})
	}
	return p, nil
}

// preparedRun is a run planned and gated, not yet recorded.
type preparedRun struct {
	req  newRunRequest
	plan plan.Plan
	v    verdict
}

// prepareRun plans a run (pure) and gates it (pure, over the facts read
// for its plan). A release whose gates refuse it is an ErrConflict.
func (c *core) prepareRun(ctx context.Context, tx store.Tx, r newRunRequest) (preparedRun, error) {
	p, err := c.staticPlan(r.incident, r.gateway, r.runbook, r.policy, r.params)
	if err != nil {
		return preparedRun{}, err
	}
	return c.gatePlan(ctx, tx, r, p)
}

// gatePlan evaluates the gates for plan p and adds them to it.
func (c *core) gatePlan(ctx context.Context, tx store.Tx, r newRunRequest, p plan.Plan) (preparedRun, error) {
	sh := shapeOf(p.Steps, c.acts)
	f, err := c.loadGateFacts(ctx, tx, r, sh)
	if err != nil {
		return preparedRun{}, err
	}
	v := evaluateGates(gateInput{req: r, steps: p.Steps, shape: sh, facts: f, guards: c.opt.Guards, fleet: len(c.inv.Gateways)})
	if v.refuse != nil {
		return preparedRun{}, v.refuse
	}
	p.Gates = append(p.Gates, v.gates...)
	p.ApprovalRequired = p.ApprovalRequired || v.approvalRequired
	return preparedRun{req: r, plan: p, v: v}, nil
}

// recordRun writes a prepared run and what its gates decided: a tripped
// breaker (audited, and a person paged), the run and its audit entry.
func (c *core) recordRun(ctx context.Context, tx store.Tx, pr preparedRun) (store.Run, error) {
	r, p := pr.req, pr.plan
	if reason := pr.v.trip; reason != "" {
		if err := tx.TripBreaker(ctx, r.now, reason); err != nil {
			return store.Run{}, err
		}
		if err := tx.Audit(ctx, audit.Entry{At: r.now, Actor: "controller", Action: "breaker.tripped", Incident: r.incident,
			Data: mustJSON(map[string]any{"reason": reason})}); err != nil {
			return store.Run{}, err
		}
		c.m.BreakerTrips.Inc()
		c.log.Error("circuit breaker tripped: automatic actions stopped, a person must decide", "reason", reason)
		c.queuePage(breakerPage(r.now, reason))
	}
	auto := pr.v.auto
	pj, _ := json.Marshal(p)
	run := store.Run{
		ID: store.NewID("run"), Incident: r.incident, Gateway: r.gateway.ID, Site: r.gateway.Site, Runbook: r.runbook, Policy: r.policy,
		Trigger: r.trigger, State: store.RunPending, AutoIsolation: auto, OverrideReason: r.override, Plan: pj,
		CreatedAt: r.now, UpdatedAt: r.now, RequestedBy: r.requester,
	}
	if r.override != "" {
		run.OverriddenBy = r.actor
	}
	if p.ApprovalRequired {
		run.State, run.ApprovalRequired = store.RunAwaitingApproval, true
		run.ApprovalReason = strings.Join(p.BlockingReasons(), "; ")
	} else if r.trigger == "manual" {
		run.ApprovedBy, run.ApprovedAt = r.actor, r.now
	}
	for _, s := range p.Steps {
		run.Steps = append(run.Steps, store.Step{Run: run.ID, Index: s.Index, Name: s.Name, Action: s.Action, Params: s.Params, Optional: s.Optional,
			State: store.StepPending, IdemKey: fmt.Sprintf("%s/%d/%s", run.ID, s.Index, s.Action)})
	}
	created := run.State
	epoch, atOnce := c.startsAtOnce(r, run)
	if atOnce {
		step := &run.Steps[0]
		run.State, run.StartedAt = store.RunRunning, r.now
		step.State, step.Attempts, step.Epoch, step.StartedAt = store.StepRunning, 1, epoch, r.now
	}
	if err := tx.InsertRun(ctx, run); err != nil {
		return store.Run{}, err
	}
	if err := tx.Audit(ctx, audit.Entry{At: r.now, Actor: r.actor, Action: "run.created", Incident: r.incident, Run: run.ID, Subject: r.gateway.ID,
		Data: mustJSON(map[string]any{"runbook": r.runbook, "policy": r.policy, "trigger": r.trigger, "state": created,
			"approval_reason": run.ApprovalReason, "auto_isolation": auto, "gates": p.Gates, "override_reason": r.override})}); err != nil {
		return store.Run{}, err
	}
	if atOnce {
		if err := tx.Audit(ctx, runStartedEntry(run, r.now)); err != nil {
			return store.Run{}, err
		}
		if err := tx.Audit(ctx, stepApplyEntry(run, run.Steps[0], r.gateway, r.now)); err != nil {
			return store.Run{}, err
		}
	}
	if run.State == store.RunAwaitingApproval {
		c.log.Warn("run waits for approval", "run", run.ID, "gateway", r.gateway.ID, "reason", run.ApprovalReason)
	}
	return run, nil
}

// startsAtOnce reports whether run, about to be recorded pending, is
// recorded started instead, with its first step's first attempt, under
// the returned lease epoch: one commit fewer between an alert and its
// containment's first command. Only a run handed straight to this
// controller's executor (so this controller holds the lease), whose first
// step the executor would take without another check at the moment of
// acting: neither destructive (evidence first) nor releasing (the release
// gates), and through the retry layer, which records every later attempt.
// The executor still reads the run right before that step: a cancel
// committed meanwhile withdraws the attempt (withdrawFirstAttempt).
func (c *core) startsAtOnce(r newRunRequest, run store.Run) (int64, bool) {
	if !r.handedOver || r.preview || run.State != store.RunPending || len(run.Steps) == 0 {
		return 0, false
	}
	first := run.Steps[0]
	act, ok := c.acts[first.Action]
	if !ok || !actions.Retrying(act) {
		return 0, false
	}
	if m := c.acts.Meta(first.Action); m.Destructive || m.Posture == actions.EffectRelease {
		return 0, false
	}
	epoch, err := c.leaseEpoch()
	return epoch, err == nil
}

// runStartedEntry is the audit entry of a run's start.
func runStartedEntry(r store.Run, at time.Time) audit.Entry {
	return audit.Entry{At: at, Actor: "controller", Action: "run.started", Incident: r.Incident, Run: r.ID, Subject: r.Gateway,
		Data: mustJSON(map[string]any{"runbook": r.Runbook})}
}

// stepApplyEntry is the audit entry of a step's attempt, recorded before
// the attempt's side effect.
func stepApplyEntry(r store.Run, step store.Step, gw inventory.Gateway, at time.Time) audit.Entry {
	return audit.Entry{At: at, Actor: "controller", Action: "step.apply", Incident: r.Incident, Run: r.ID, Subject: gw.ID,
		Data: mustJSON(map[string]any{"step": step.Index, "name": step.Name, "action": step.Action, "params": step.Params,
			"idempotency_key": step.IdemKey, "attempt": step.Attempts, "epoch": step.Epoch, "vm": gw.VM})}
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
func (c *runs) StartRunbook(ctx context.Context, req StartRequest) (store.Run, error) {
	gw, err := c.resolveGateway(req.Gateway)
	if err != nil {
		return store.Run{}, err
	}
	if req.Actor == "" {
		return store.Run{}, fmt.Errorf("%w: actor is required", ErrInvalid)
	}
	var run store.Run
	err = c.st.Tx(ctx, func(tx store.Tx) error {
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
		pr, err := c.prepareRun(ctx, tx, newRunRequest{incident: incident, gateway: gw, runbook: req.Runbook, trigger: "manual",
			actor: req.Actor, requester: req.Actor, override: req.OverrideReason, params: req.Params, now: c.clock.Now()})
		if err != nil {
			return err
		}
		run, err = c.recordRun(ctx, tx, pr)
		return err
	})
	if err != nil {
		return store.Run{}, err
	}
	c.Kick()
	return run, nil
}

func (c *core) resolveGateway(id string) (inventory.Gateway, error) {
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
func (c *runs) PlanFor(ctx context.Context, runbook, gateway, incident, policy string) (plan.Plan, error) {
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
func (c *runs) PlanDecision(ctx context.Context, gateway, runbook, policy string, approval, budget bool) (plan.Plan, error) {
	return c.planWithGates(ctx, newRunRequest{runbook: runbook, policy: policy, trigger: "policy", approval: approval, budget: budget, actor: "plan"}, gateway, "")
}

// PlanManual is PlanDecision for a runbook a person would start: the
// steps, their expected changes, and the gates (release gates, evidence
// first) as they stand now. It changes nothing.
func (c *runs) PlanManual(ctx context.Context, req StartRequest) (plan.Plan, error) {
	return c.planWithGates(ctx, newRunRequest{runbook: req.Runbook, trigger: "manual", actor: req.Actor, requester: req.Actor, override: req.OverrideReason, params: req.Params}, req.Gateway, req.Incident)
}

func (c *runs) planWithGates(ctx context.Context, r newRunRequest, gateway, incident string) (plan.Plan, error) {
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
	err = c.st.Tx(ctx, func(tx store.Tx) error {
		pr, err := c.gatePlan(ctx, tx, r, p)
		if err != nil {
			return err
		}
		p = pr.plan
		return errPreview
	})
	if err != nil && !errors.Is(err, errPreview) {
		return plan.Plan{}, err
	}
	p.Incident = incident
	return p, nil
}

// Approve lets a waiting run proceed. The approver is the authenticated
// caller; with four eyes (guards.two_person, the default) it must be
// someone other than the run's requester and whoever overrode a gate on
// it: ErrForbidden otherwise, and the refusal is audited.
func (c *runs) Approve(ctx context.Context, runID, actor, comment string) (store.Run, error) {
	if actor == "" {
		return store.Run{}, fmt.Errorf("%w: approver is required", ErrInvalid)
	}
	var run store.Run
	var refused, forbidden string
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		run, err = tx.Run(ctx, runID)
		if err != nil {
			return err
		}
		if run.State != store.RunAwaitingApproval {
			return fmt.Errorf("%w: run %s is %s, not awaiting approval", ErrConflict, runID, run.State)
		}
		if why := fourEyes(run, actor, c.opt.Guards); why != "" {
			forbidden = why
			return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: actor, Action: "run.approval_refused", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
				Data: mustJSON(map[string]any{"rule": "four-eyes", "reason": why})})
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
	if forbidden != "" {
		return run, fmt.Errorf("%w: %s", ErrForbidden, forbidden)
	}
	if refused != "" {
		return run, fmt.Errorf("%w: run %s cancelled: %s", ErrConflict, run.ID, refused)
	}
	c.Kick()
	return run, nil
}

// RefuseApproval records that actor tried to approve run runID and was
// refused before it got here (reason: their role), when the run exists and
// waits for approval, and returns what four eyes would add ("" when
// nothing).
func (c *runs) RefuseApproval(ctx context.Context, runID, actor, reason string) (string, error) {
	var fe string
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		run, err := tx.Run(ctx, runID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || run.State != store.RunAwaitingApproval {
			return err
		}
		fe = fourEyes(run, actor, c.opt.Guards)
		data := map[string]any{"rule": "role", "reason": reason}
		if fe != "" {
			data["four_eyes"] = fe
		}
		return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: actor, Action: "run.approval_refused", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(data)})
	})
	return fe, err
}

// Cancel stops a run that has not finished. Steps already applied stay
// applied (undo is a separate, explicit runbook).
func (c *runs) Cancel(ctx context.Context, runID, actor, reason string) (store.Run, error) {
	var run store.Run
	err := c.st.Tx(ctx, func(tx store.Tx) error {
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
func (c *runs) ResetBreaker(ctx context.Context, actor, reason string) (bool, error) {
	var was bool
	err := c.st.Tx(ctx, func(tx store.Tx) error {
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
func (c *runs) ResolveIndicator(ctx context.Context, id, actor, reason string) error {
	if actor == "" || strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: resolving an indicator needs the person and a reason", ErrInvalid)
	}
	return c.st.Tx(ctx, func(tx store.Tx) error {
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
