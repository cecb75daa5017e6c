// Package controller turns indicators into verified containment. Its core
// loop, for every indicator: observe (store it, group it into an incident) →
// decide (policy) → plan (runbook steps for the gateway) → gate (approval,
// blast-radius budget, circuit breaker, evidence first) → apply (actions,
// with retries for transient errors) → verify (read real state back) →
// record (hash-chained audit). A reconcile loop repairs drift between a
// gateway's desired posture and what the providers observe.
//
// The controller owns incidents, runs and postures. It must not talk to a
// hypervisor or a host directly: every side effect goes through an action.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// Clock is injected so tests control time.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Options configure a Controller.
type Options struct {
	Store     *store.Store
	Inventory *inventory.Inventory
	Policies  *policies.Set
	Actions   actions.Catalogue
	Intake    config.Intake
	Guards    config.Guards
	Executor  config.Executor
	Reconcile config.Reconcile
	Clock     Clock
	Log       *slog.Logger
	Metrics   *Metrics
	// Observer, when set, lets the reconcile loop read VM state.
	Observer actions.VMProvider
	// OSObserver, when set, lets the reconcile loop read the OS quarantine
	// of gateways with an agent.
	OSObserver OSObserver
	// Pager, when set, calls a person when automation stops itself (the
	// circuit breaker tripped).
	Pager Pager
	// Baseline, when set, checks gateways' hardened baselines; with a
	// positive DriftInterval the controller checks every gateway on that
	// schedule.
	Baseline      BaselineChecker
	DriftInterval time.Duration
	// Lease, when set, fences side effects: no step starts unless the
	// lease is still held, and each step records the epoch it ran under.
	// Nil (unit tests) means unfenced, epoch 0.
	Lease Lease
}

// Lease is the writer lease a controller executes side effects under.
type Lease interface {
	// Epoch is the epoch of the current holding.
	Epoch() int64
	// Held returns nil while the lease is held, and why not otherwise. It
	// is called right before every side effect, so it must be cheap.
	Held() error
}

// errNotHolder marks a step that was not started because the controller
// does not hold the writer lease: the run is left for the holder, never
// failed.
var errNotHolder = errors.New("not executing: the store's writer lease is not held")

// leaseEpoch checks the lease and returns its epoch (0 when unfenced).
func (c *Controller) leaseEpoch() (int64, error) {
	if c.opt.Lease == nil {
		return 0, nil
	}
	if err := c.opt.Lease.Held(); err != nil {
		return 0, fmt.Errorf("%w: %w", errNotHolder, err)
	}
	return c.opt.Lease.Epoch(), nil
}

// Controller is the running core.
type Controller struct {
	opt   Options
	st    *store.Store
	inv   *inventory.Inventory
	pol   *policies.Set
	acts  actions.Catalogue
	clock Clock
	log   *slog.Logger
	m     *Metrics

	kick     chan struct{}
	qmu      sync.Mutex
	queue    []*acceptReq
	commitMu sync.Mutex
	pageMu   sync.Mutex
	pages    []Page
	mu       sync.Mutex
	inFlight map[string]bool
	wg       sync.WaitGroup
	// life is the context Start was given (nil before Start); background
	// work a request starts (a patch wave) runs under it.
	life context.Context
}

// lifeContext is the context of the running loops, or nil.
func (c *Controller) lifeContext() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life
}

// New builds a controller. It validates that every runbook step names an
// action in the catalogue, so a typo fails at start, not at 03:00.
func New(opt Options) (*Controller, error) {
	if opt.Store == nil || opt.Inventory == nil || opt.Policies == nil {
		return nil, errors.New("creating controller: store, inventory and policies are required")
	}
	if opt.Clock == nil {
		opt.Clock = RealClock
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Metrics == nil {
		opt.Metrics = NewMetrics(nil)
	}
	d := config.Defaults()
	if opt.Executor.MaxAttempts == 0 {
		opt.Executor = d.Executor
	}
	if opt.Guards.Window == 0 {
		opt.Guards = d.Guards
	}
	if opt.Intake.DedupWindow == 0 {
		opt.Intake.DedupWindow = d.Intake.DedupWindow
	}
	if opt.Intake.IncidentWindow == 0 {
		opt.Intake.IncidentWindow = d.Intake.IncidentWindow
	}
	if opt.Reconcile.Interval == 0 {
		opt.Reconcile = d.Reconcile
	}
	for name, rb := range opt.Policies.Runbooks {
		for _, s := range rb.Steps {
			if _, ok := opt.Actions[s.Action]; !ok {
				return nil, fmt.Errorf("creating controller: runbook %q uses action %q which is not available (have: %v)", name, s.Action, opt.Actions.Names())
			}
		}
	}
	return &Controller{
		opt: opt, st: opt.Store, inv: opt.Inventory, pol: opt.Policies, acts: opt.Actions,
		clock: opt.Clock, log: opt.Log, m: opt.Metrics,
		kick: make(chan struct{}, 1), inFlight: map[string]bool{},
	}, nil
}

// Store exposes the controller's store (read paths of the API and CLI).
func (c *Controller) Store() *store.Store { return c.st }

// Inventory exposes the inventory.
func (c *Controller) Inventory() *inventory.Inventory { return c.inv }

// Item is one alert handed to Accept: a decoded indicator, or an unmatched
// alert with its reason.
type Item struct {
	Indicator indicator.Indicator
	Matched   bool
	Reason    string
}

// Accepted says what became of one item.
type Accepted struct {
	Index       int    `json:"index"`
	IndicatorID string `json:"indicator_id"`
	Gateway     string `json:"gateway,omitempty"`
	Matched     bool   `json:"matched"`
	Reason      string `json:"unmatched_reason,omitempty"`
	IncidentID  string `json:"incident_id,omitempty"`
	Duplicate   bool   `json:"duplicate,omitempty"`
	Status      string `json:"status,omitempty"`
	Policy      string `json:"policy,omitempty"`
	RunID       string `json:"run_id,omitempty"`
	RunState    string `json:"run_state,omitempty"`
}

// Accept stores every item, groups them into incidents, decides, and creates
// runs: when it returns nil, everything is durable (safety invariant 3).
// Runs then execute in the background.
//
// Concurrent calls are group-committed: whoever holds the commit lock
// writes every request queued so far in one transaction (one fsync), each
// request inside its own savepoint so a failing one cannot spoil the
// others. A caller returns only after the transaction holding its items
// has committed.
func (c *Controller) Accept(ctx context.Context, actor string, items []Item) ([]Accepted, error) {
	req := &acceptReq{actor: actor, items: items}
	c.qmu.Lock()
	c.queue = append(c.queue, req)
	c.qmu.Unlock()

	c.commitMu.Lock()
	if !req.done {
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		c.qmu.Unlock()
		// The batch holds other callers' items: the first caller going
		// away must not abort their commit.
		c.commitBatch(context.WithoutCancel(ctx), batch)
	}
	c.commitMu.Unlock()
	if req.err != nil {
		return nil, req.err
	}
	for _, a := range req.out {
		c.m.IndicatorsAccepted.WithLabelValues(matchLabel(a)).Inc()
	}
	c.flushPages(ctx)
	c.Kick()
	return req.out, nil
}

type acceptReq struct {
	actor string
	items []Item
	out   []Accepted
	err   error
	done  bool
}

func (c *Controller) commitBatch(ctx context.Context, batch []*acceptReq) {
	// Audit times are kept to the microsecond; so are the records they
	// describe, or an alert would appear to arrive after its decision.
	now := c.clock.Now().UTC().Truncate(time.Microsecond)
	err := c.st.Tx(ctx, func(tx *store.Tx) error {
		for _, req := range batch {
			out := make([]Accepted, len(req.items))
			req.err = tx.Savepoint(ctx, func() error {
				for i, it := range req.items {
					a, err := c.acceptOne(ctx, tx, req.actor, now, it)
					if err != nil {
						return fmt.Errorf("accepting item %d: %w", i, err)
					}
					a.Index = i
					out[i] = a
				}
				return nil
			})
			if req.err == nil {
				req.out = out
			}
		}
		return nil
	})
	for _, req := range batch {
		if err != nil {
			req.err, req.out = err, nil
		}
		req.done = true
	}
}

func matchLabel(a Accepted) string {
	switch {
	case !a.Matched:
		return "unmatched"
	case a.Duplicate:
		return "duplicate"
	}
	return "matched"
}

func (c *Controller) acceptOne(ctx context.Context, tx *store.Tx, actor string, now time.Time, it Item) (Accepted, error) {
	in := it.Indicator
	in.ID = store.NewID("ind")
	in.Normalize(now)
	rec := store.IndicatorRecord{ID: in.ID, ReceivedAt: now, Matched: it.Matched, Reason: it.Reason, Indicator: in}
	a := Accepted{IndicatorID: in.ID, Matched: it.Matched, Reason: it.Reason, Status: in.Status}
	if !it.Matched {
		if err := tx.InsertIndicator(ctx, rec); err != nil {
			return a, err
		}
		return a, tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "indicator.unmatched", Subject: in.Gateway,
			Data: mustJSON(map[string]any{"indicator": in.ID, "reason": it.Reason, "source": in.Source})})
	}
	gw, ok := c.inv.Gateway(in.Gateway)
	if !ok {
		return a, fmt.Errorf("gateway %q is not in the inventory", in.Gateway)
	}
	site, _ := c.inv.Site(gw.Site)
	a.Gateway = gw.ID

	posture, err := tx.Posture(ctx, gw.ID)
	if err != nil {
		return a, err
	}
	// Dedup: the same alert within the window joins its incident and
	// starts nothing, unless the gateway was released since the earlier
	// copy was decided (against the quarantine): the copy is decided
	// afresh against the posture it meets. A repeat while quarantined
	// stays a duplicate; Alertmanager repeats firing alerts.
	if prev, dup, err := tx.RecentByFingerprint(ctx, in.Fingerprint, now.Add(-c.opt.Intake.DedupWindow)); err != nil {
		return a, err
	} else if dup && in.Status == indicator.StatusFiring &&
		!(posture.Desired == store.PostureReleased && posture.UpdatedAt.After(prev.ReceivedAt)) {
		rec.Duplicate, rec.Incident = true, prev.Incident
		a.Duplicate, a.IncidentID = true, prev.Incident
		if err := tx.InsertIndicator(ctx, rec); err != nil {
			return a, err
		}
		if err := c.touchIncident(ctx, tx, prev.Incident, gw, site, in, now); err != nil {
			return a, err
		}
		return a, tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "indicator.duplicate", Incident: prev.Incident, Subject: gw.ID,
			Data: mustJSON(map[string]any{"indicator": in.ID, "duplicate_of": prev.ID, "fingerprint": in.Fingerprint})})
	}

	inc, found, err := tx.OpenIncidentFor(ctx, gw.ID, now.Add(-c.opt.Intake.IncidentWindow))
	if err != nil {
		return a, err
	}
	if !found {
		if in.Status == indicator.StatusResolved {
			// A resolution with nothing open: record it, start nothing.
			if err := tx.InsertIndicator(ctx, rec); err != nil {
				return a, err
			}
			return a, tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "indicator.resolved", Subject: gw.ID,
				Data: mustJSON(map[string]any{"indicator": in.ID, "note": "no open incident; nothing is released by a resolved alert"})})
		}
		inc = store.Incident{ID: store.NewID("inc"), Gateway: gw.ID, Site: gw.Site, OpenedAt: now, UpdatedAt: now,
			Status: store.IncidentOpen, Severity: string(in.Severity), Title: incidentTitle(in, gw)}
		if err := tx.UpsertIncident(ctx, inc); err != nil {
			return a, err
		}
		if err := tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "incident.opened", Incident: inc.ID, Subject: gw.ID,
			Data: mustJSON(map[string]any{"title": inc.Title, "site": gw.Site})}); err != nil {
			return a, err
		}
	}
	rec.Incident, a.IncidentID = inc.ID, inc.ID
	if err := tx.InsertIndicator(ctx, rec); err != nil {
		return a, err
	}
	if err := c.touchIncident(ctx, tx, inc.ID, gw, site, in, now); err != nil {
		return a, err
	}
	if err := tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "indicator.accepted", Incident: inc.ID, Subject: gw.ID,
		Data: mustJSON(map[string]any{"indicator": in.ID, "kind": in.Kind, "severity": in.Severity, "confidence": in.Confidence,
			"source": in.Source, "status": in.Status, "fingerprint": in.Fingerprint, "observables": in.Observables})}); err != nil {
		return a, err
	}
	if in.Status == indicator.StatusResolved {
		// Resolved alerts are recorded against their incident and never
		// release anything by themselves.
		return a, tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "indicator.resolved", Incident: inc.ID, Subject: gw.ID,
			Data: mustJSON(map[string]any{"indicator": in.ID, "note": "recorded; a resolved alert never releases a gateway by itself"})})
	}

	return c.decideAndStart(ctx, tx, now, in, gw, site, inc.ID, posture.Desired, a)
}

// decideAndStart decides what an accepted indicator calls for, against the
// gateway's posture as given, and starts the run the decision names.
func (c *Controller) decideAndStart(ctx context.Context, tx *store.Tx, now time.Time, in indicator.Indicator, gw inventory.Gateway, site inventory.Site,
	incident, posture string, a Accepted) (Accepted, error) {
	inc := store.Incident{ID: incident}
	openInc, err := tx.CountOpenIncidents(ctx, gw.ID)
	if err != nil {
		return a, err
	}
	recent, err := tx.CountRecentIndicators(ctx, gw.ID, now.Add(-c.opt.Intake.DedupWindow))
	if err != nil {
		return a, err
	}
	dec := c.pol.Decide(policies.Input{Indicator: in, Gateway: gw, Site: site, Context: policies.Context{
		Now: now, Posture: posture, OpenIncidents: openInc, RecentIndicators: recent}})
	if err := tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "policy.decided", Incident: inc.ID, Subject: gw.ID,
		Data: mustJSON(map[string]any{"indicator": in.ID, "matched": dec.Matched, "policy": dec.Policy, "runbook": dec.Runbook,
			"approval": dec.Approval, "business_hours": dec.BusinessHours, "explanations": dec.Explanations})}); err != nil {
		return a, err
	}
	if !dec.Matched || dec.Runbook == "" || dec.Runbook == "none" {
		return a, nil
	}
	a.Policy = dec.Policy
	if id, exists, err := tx.ActiveRunFor(ctx, inc.ID, dec.Runbook); err != nil {
		return a, err
	} else if exists {
		a.RunID = id
		return a, tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "run.not_started", Incident: inc.ID, Run: id, Subject: gw.ID,
			Data: mustJSON(map[string]any{"reason": "a run of this runbook is already active for the incident", "runbook": dec.Runbook})})
	}
	run, err := c.newRun(ctx, tx, newRunRequest{
		incident: inc.ID, gateway: gw, runbook: dec.Runbook, policy: dec.Policy, trigger: "policy",
		approval: dec.Approval == policies.Approval("required"), budget: dec.CountsAgainstBudget, actor: "controller", now: now,
	})
	if err != nil {
		return a, err
	}
	a.RunID, a.RunState = run.ID, run.State
	return a, nil
}

func (c *Controller) touchIncident(ctx context.Context, tx *store.Tx, id string, gw inventory.Gateway, site inventory.Site, in indicator.Indicator, now time.Time) error {
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

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
	}
	return b
}

// Kick wakes the executor.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
