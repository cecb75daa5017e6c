// Package controller turns indicators into verified containment.
//
// The core loop, for every indicator, in one transaction (loop.go,
// acceptOne): load a snapshot (loadSnapshot) → triage it (triage:
// unmatched, duplicate, resolved, or to decide) → decide
// (policies.Set.Decide, pure) → plan the run the decision names
// (staticPlan, pure) → gate it (evaluateGates in gates.go: an ordered list
// of pure gates over facts read for the plan) → record (record, recordRun:
// the indicator, the decision, the run and their hash-chained audit).
// Side effects happen after, from the recorded run: the executor applies
// and verifies each step through the catalogue (actions.Execute, under the
// one retry layer composed with the catalogue) and records the step and
// its posture effect together (recordStep, stepEffects). A reconcile loop
// repairs drift between a gateway's desired posture and what the
// providers observe.
//
// Intake, runs, the executor, reconcile, drift and patch waves are small
// units sharing one core: the store (through the store.Backend seam), the
// inventory, the catalogue and one clock.
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
	"sync/atomic"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/journal"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// Clock is the one clock every unit shares; tests inject a fake.
type Clock = clock.Clock

// Options configure a Controller.
type Options struct {
	Store     store.Backend
	Inventory *inventory.Inventory
	Policies  *policies.Set
	Actions   actions.Catalogue
	Intake    config.Intake
	Guards    config.Guards
	Executor  config.Executor
	Reconcile config.Reconcile
	Blocks    config.Blocks
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
	// Replicated says other controllers share the store and one of them
	// may lead: work for the leader asked of this one (a patch wave) is
	// recorded for the leader to adopt rather than refused while this
	// one's loops do not run.
	Replicated bool
	// Journal, when set, is the intake journal: Enqueue answers bulk
	// alerts once journaled, and RunDecider decides them (journaled.go).
	Journal *journal.Journal
}

// Lease is the writer lease a controller executes side effects under.
type Lease interface {
	// Epoch is the epoch of the current holding.
	Epoch() int64
	// Held returns nil while the lease is held, and why not otherwise. It
	// is called right before every side effect, so it must be cheap.
	Held() error
}

// ErrNotLeader marks work not started because this controller does not
// hold the writer lease (with replicas: is not the leader): a run is left
// for the holder, never failed; a request for such work is refused.
var ErrNotLeader = errors.New("not executing: the store's writer lease is not held (with replicas: this one is not the leader)")

// leaseEpoch checks the lease and returns its epoch (0 when unfenced).
func (c *core) leaseEpoch() (int64, error) {
	if c.opt.Lease == nil {
		return 0, nil
	}
	if err := c.opt.Lease.Held(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return c.opt.Lease.Epoch(), nil
}

// leaseChecker is a Lease that can also be checked against the store
// itself, not only its cached view (the fence before an irreversible
// call).
type leaseChecker interface {
	Check(ctx context.Context) error
}

// leaseFence is the controller's lease as the actions' Fence: epoch pins
// a step to the holding it started under (0: whatever is held now, for the
// loops).
type leaseFence struct {
	lease Lease
	epoch int64
}

func (f leaseFence) Epoch() int64 {
	if f.epoch != 0 {
		return f.epoch
	}
	return f.lease.Epoch()
}

func (f leaseFence) Check(ctx context.Context) error {
	if err := f.lease.Held(); err != nil {
		return fmt.Errorf("%w: %w", actions.ErrFenced, err)
	}
	if now := f.lease.Epoch(); f.epoch != 0 && now != f.epoch {
		return fmt.Errorf("%w: the step started under epoch %d, the lease is at %d", actions.ErrFenced, f.epoch, now)
	}
	if c, ok := f.lease.(leaseChecker); ok {
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("%w: %w", actions.ErrFenced, err)
		}
	}
	return nil
}

// fenced returns ctx carrying the lease as the actions' fence, pinned to
// epoch (0: not pinned); ctx itself without a lease (unit tests).
func (c *core) fenced(ctx context.Context, epoch int64) context.Context {
	if c.opt.Lease == nil {
		return ctx
	}
	return actions.WithFence(ctx, leaseFence{lease: c.opt.Lease, epoch: epoch})
}

// Controller is the running core: small units sharing one core (the
// store, the inventory, the catalogue and one clock). Each unit's methods
// are the Controller's.
type Controller struct {
	*core
	*intake
	*runs
	*executor
	*reconciler
	*drifter
	*patcher
	*people
	*blocker
}

// core is what every unit shares, and the core loop itself (loop.go,
// gates.go, the run-creation half of runs.go).
type core struct {
	opt   Options
	st    store.Backend
	inv   *inventory.Inventory
	pol   *policies.Set
	acts  actions.Catalogue
	clock Clock
	log   *slog.Logger
	m     *Metrics

	kick chan struct{}
	// ready carries runs intake has just created to the executor, which
	// starts them without listing the store first (startRuns).
	ready chan string
	// handedOver holds the runs intake recorded started with their first
	// step's attempt (startsAtOnce), as committed, until the executor takes
	// them (takeHandedOver); guarded by mu.
	handedOver map[string]store.Run
	// wavesInFlight are the patch waves this controller runs now.
	wavesInFlight map[string]bool
	pageMu        sync.Mutex
	pages         []Page
	mu            sync.Mutex
	wg            sync.WaitGroup
	// life is the context Start was given (nil before Start); background
	// work a request starts (a patch wave) runs under it.
	life context.Context
}

// intake accepts indicators: the core loop, group-committed. Requests
// that carry a high or critical indicator wait in their own queue, which
// every committer empties first (the priority lane): an alert storm of
// low-severity indicators cannot hold a C2 alert behind it for longer than
// one bounded batch.
type intake struct {
	*core
	qmu    sync.Mutex
	queue  []*acceptReq // normal lane
	urgent []*acceptReq // priority lane
	// urgentWaiting is set while the priority lane holds a request: a
	// batch being written then stops after its current request.
	urgentWaiting atomic.Bool
	// freed is closed (and replaced) each time a committer lets go of
	// commitMu, waking the callers waiting to take it over.
	freed    chan struct{}
	commitMu sync.Mutex
}

// runs is what people do with runs: start, plan, approve, cancel.
type runs struct{ *core }

// executor drives runs to a terminal state, step by step.
type executor struct {
	*core
	inFlight map[string]bool
}

// reconciler repairs drift between desired and observed postures.
type reconciler struct{ *core }

// drifter checks hardened baselines on a schedule and on request.
type drifter struct {
	*core
	intake *intake
}

// patcher runs patch waves through runs.
type patcher struct {
	*core
	runs *runs
}

// lifeContext is the context of the running loops, or nil.
func (c *core) lifeContext() context.Context {
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
		opt.Clock = clock.Real
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
	if opt.Blocks.Interval == 0 {
		opt.Blocks = d.Blocks
	}
	// Every step is fenced and recorded per attempt by the retry layer;
	// an entry composed without one makes exactly one attempt.
	opt.Actions = opt.Actions.Decorate(func(e actions.Entry) actions.Action {
		if actions.Retrying(e.Action) {
			return e.Action
		}
		return actions.WithRetry(actions.RetryPolicy{MaxAttempts: 1, AttemptTimeout: opt.Executor.StepTimeout})(e)
	})
	for name, rb := range opt.Policies.Runbooks {
		for _, s := range rb.Steps {
			if _, ok := opt.Actions[s.Action]; !ok {
				return nil, fmt.Errorf("creating controller: runbook %q uses action %q which is not available (have: %v)", name, s.Action, opt.Actions.Names())
			}
		}
	}
	co := &core{
		opt: opt, st: opt.Store, inv: opt.Inventory, pol: opt.Policies, acts: opt.Actions,
		clock: opt.Clock, log: opt.Log, m: opt.Metrics, kick: make(chan struct{}, 1), ready: make(chan string, 64), wavesInFlight: map[string]bool{},
	}
	in, rs := &intake{core: co}, &runs{core: co}
	return &Controller{core: co, intake: in, runs: rs, executor: &executor{core: co, inFlight: map[string]bool{}},
		reconciler: &reconciler{core: co}, drifter: &drifter{core: co, intake: in}, patcher: &patcher{core: co, runs: rs},
		people: &people{core: co}, blocker: newBlocker(co)}, nil
}

// Start runs the executor and the reconcile loop until ctx ends. Runs that
// were interrupted (state running, e.g. after kill -9) are resumed first:
// steps already recorded as succeeded are never applied again; the step that
// was in flight is applied again, and the provider recognises by current
// state and idempotency key that its side effect already happened.
//
// With replicas Start runs while this one leads: the daemon cancels ctx
// when leadership is lost, waits (Wait), and calls Start again if it leads
// again later. Every side effect the loops make carries the lease as the
// actions' fence (actions.WithFence).
func (c *Controller) Start(ctx context.Context) {
	ctx = c.fenced(ctx, 0)
	c.mu.Lock()
	c.life = ctx
	c.mu.Unlock()
	c.wg.Add(5)
	go func() { defer c.wg.Done(); c.executorLoop(ctx) }()
	go func() { defer c.wg.Done(); c.waveLoop(ctx) }()
	go func() { defer c.wg.Done(); c.blockLoop(ctx) }()
	go func() { defer c.wg.Done(); c.reconcileLoop(ctx) }()
	go func() { defer c.wg.Done(); c.driftLoop(ctx) }()
	c.adoptWaves(ctx)
	c.Kick()
}

// Wait blocks until the loops started by Start have returned.
func (c *Controller) Wait() { c.wg.Wait() }

// Store exposes the controller's store (read paths of the API and CLI).
func (c *Controller) Store() store.Backend { return c.st }

// Inventory exposes the inventory.
func (c *Controller) Inventory() *inventory.Inventory { return c.inv }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
	}
	return b
}

// handOver keeps run, which intake recorded started with its first
// step's attempt, for the executor: it takes the first step without
// recording that attempt again.
func (c *core) handOver(run store.Run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handedOver == nil {
		c.handedOver = map[string]store.Run{}
	}
	c.handedOver[run.ID] = run
}

// takeHandedOver returns and forgets the run intake handed over as id.
func (c *core) takeHandedOver(id string) (store.Run, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	run, ok := c.handedOver[id]
	delete(c.handedOver, id)
	return run, ok
}

// startRuns hands runs just created to the executor, to start at once;
// when it is busy with many, they wait for its next pass (Kick).
func (c *core) startRuns(ids ...string) {
	for _, id := range ids {
		select {
		case c.ready <- id:
		default:
			c.Kick()
			return
		}
	}
}

// Kick wakes the executor.
func (c *core) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
