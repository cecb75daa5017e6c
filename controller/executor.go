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
	"github.com/warden-ir/warden/store"
)

func (c *executor) executorLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-c.ready:
			// A run intake just created: start it without listing.
			if _, err := c.leaseEpoch(); err != nil {
				c.log.Warn("not starting runs", "err", err)
				continue
			}
			c.launch(ctx, id)
			continue
		case <-c.kick:
		case <-c.clock.After(time.Second):
		}
		if _, err := c.leaseEpoch(); err != nil {
			// Only the lease holder starts or resumes runs.
			c.log.Warn("not starting runs", "err", err)
			continue
		}
		runs, err := c.st.Runs(ctx, store.RunFilter{States: []string{store.RunPending, store.RunRunning}, Limit: 1000})
		if err != nil {
			if ctx.Err() == nil {
				c.log.Error("listing runnable runs", "err", err)
			}
			continue
		}
		for i := len(runs) - 1; i >= 0; i-- { // oldest first
			c.launch(ctx, runs[i].ID)
		}
	}
}

// launch executes run id in its own goroutine, unless it is already.
func (c *executor) launch(ctx context.Context, id string) {
	c.mu.Lock()
	busy := c.inFlight[id]
	if !busy {
		c.inFlight[id] = true
	}
	c.mu.Unlock()
	if busy {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { c.mu.Lock(); delete(c.inFlight, id); c.mu.Unlock() }()
		if err := c.ExecuteRun(ctx, id); err != nil && ctx.Err() == nil {
			c.log.Error("executing run", "run", id, "err", err)
		}
	}()
}

// ExecuteRun drives one run to a terminal state (or until ctx ends). It is
// safe to call again for the same run after a crash.
func (c *executor) ExecuteRun(ctx context.Context, id string) error {
	// A run intake recorded started, with its first step's attempt, is not
	// read now: it is read right before that step (firstStepStillOurs).
	run, handed := c.takeHandedOver(id)
	if !handed {
		var err error
		if run, err = c.st.Run(ctx, id); err != nil {
			return err
		}
	}
	if run.State != store.RunPending && run.State != store.RunRunning {
		return nil
	}
	gw, ok := c.inv.Gateway(run.Gateway)
	if !ok {
		return c.finishRun(ctx, run, nil, fmt.Errorf("gateway %q is no longer in the inventory", run.Gateway))
	}
	var start *runStart
	if run.State == store.RunPending {
		// The start is recorded with the first write that follows it
		// (the first step's attempt, or the run's end), in the same
		// transaction: one commit less before the first side effect,
		// which still finds the run running and its step started on disk.
		now := c.clock.Now()
		run.State, run.UpdatedAt = store.RunRunning, now
		if run.StartedAt.IsZero() {
			run.StartedAt = now
		}
		start = &runStart{run: run, at: now}
	} else if !handed {
		c.log.Info("resuming interrupted run", "run", run.ID, "gateway", run.Gateway)
		if err := c.st.Tx(ctx, func(tx store.Tx) error {
			return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: "controller", Action: "run.resumed", Incident: run.Incident, Run: run.ID, Subject: run.Gateway})
		}); err != nil {
			return err
		}
	}

	worked := false
	for i := range run.Steps {
		step := run.Steps[i]
		if step.State == store.StepSucceeded || step.State == store.StepSkipped {
			continue
		}
		if step.State == store.StepFailed && step.Optional {
			continue
		}
		// The run may have been cancelled while we worked. Before the
		// first step a pending run was read a moment ago, and its first
		// attempt is recorded only if the run is still not cancelled
		// (recordStart, in the attempt's transaction): reading it again
		// would only delay an alert's containment. A run handed over,
		// its first attempt recorded with the decision, is read now.
		recorded := false // this attempt was recorded with the decision
		if worked {
			if cur, err := c.st.Run(ctx, run.ID); err == nil && cur.State == store.RunCancelled {
				return nil
			}
		} else {
			if beforeFirstStep != nil {
				beforeFirstStep(run.ID)
			}
			if handed {
				ours, err := c.firstStepStillOurs(ctx, run)
				if err != nil {
					return err
				}
				if !ours {
					// Taken handed over no more: from what the store
					// says (cancelled, finished, or to resume).
					return c.ExecuteRun(ctx, run.ID)
				}
				recorded = true
			}
		}
		worked = true
		if err := c.checkEvidence(ctx, run, step); err != nil {
			return c.finishRun(ctx, run, start, err)
		}
		if why := c.checkFourEyes(run, step); why != "" {
			return c.finishRun(ctx, run, start, fmt.Errorf("%w: %s", ErrForbidden, why))
		}
		epoch, err := c.leaseEpoch()
		if err != nil {
			return err // leave the run as it is: the next holder resumes it
		}
		if step.Action == actions.NameRelease {
			// Gates again, right before releasing: an indicator may have
			// arrived since the request and the approval.
			refused := false
			if err := c.st.Tx(ctx, func(tx store.Tx) error {
				why, err := c.recheckRelease(ctx, tx, run)
				if err != nil || why == "" {
					return err
				}
				refused = true
				if err := c.recordStart(ctx, tx, start); err != nil {
					return err
				}
				return c.refuseRelease(ctx, tx, &run, "before the release step", why)
			}); errors.Is(err, errRunCancelled) {
				return nil
			} else if err != nil {
				return err
			}
			if refused {
				start.recorded()
			}
			if refused {
				c.log.Warn("release refused before its step", "run", run.ID, "gateway", run.Gateway, "reason", run.Error)
				return nil
			}
		}
		// The step carries the epoch it starts under to every provider
		// call (agents refuse an older one; vSphere changes check it).
		res, err := c.executeStep(c.fenced(ctx, epoch), run, start, step, gw, recorded)
		if ctx.Err() != nil {
			return ctx.Err() // stopping: leave the step running; resume later
		}
		if errors.Is(err, errRunCancelled) {
			return nil // cancelled before it started: nothing was done
		}
		if errors.Is(err, ErrNotLeader) || errors.Is(err, actions.ErrFenced) {
			return err // fenced off: the lease holder resumes the run
		}
		if err != nil {
			if step.Optional {
				c.log.Warn("optional step failed; continuing", "run", run.ID, "step", step.Name, "err", err)
				continue
			}
			return c.finishRun(ctx, run, start, fmt.Errorf("step %d (%s) failed: %w", step.Index+1, step.Name, err))
		}
		if err := c.afterStep(ctx, run, step, res); err != nil {
			return err
		}
	}
	return c.finishRun(ctx, run, start, nil)
}

// beforeFirstStep, set only by tests, runs when ExecuteRun has read the
// run and is about to take its first step.
var beforeFirstStep func(runID string)

// firstStepStillOurs reads a run intake handed over right before its
// first step: the step is taken without recording its attempt again only
// if the run is still as the decision recorded it (running, its first
// step's one attempt started under the same epoch, nothing since). A run
// cancelled meanwhile has that attempt withdrawn: it was recorded, never
// applied.
func (c *executor) firstStepStillOurs(ctx context.Context, handed store.Run) (bool, error) {
	cur, err := c.st.Run(ctx, handed.ID)
	if err != nil {
		return false, err
	}
	if len(cur.Steps) == 0 || len(handed.Steps) == 0 {
		return false, nil
	}
	first, want := cur.Steps[0], handed.Steps[0]
	untouched := first.State == store.StepRunning && first.Attempts == want.Attempts && first.Epoch == want.Epoch
	switch {
	case cur.State == store.RunRunning && untouched:
		return true, nil
	case cur.State == store.RunCancelled && untouched:
		return false, c.withdrawFirstAttempt(ctx, cur)
	}
	return false, nil
}

// withdrawFirstAttempt puts a cancelled run's first step, recorded started
// with the decision but never applied, back as not taken, and says so in
// the audit after its step.apply.
func (c *executor) withdrawFirstAttempt(ctx context.Context, run store.Run) error {
	step := run.Steps[0]
	attempt := step.Attempts
	step.State, step.Attempts, step.StartedAt = store.StepPending, 0, time.Time{}
	return c.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.UpdateStep(ctx, step); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: "controller", Action: "step.withdrawn", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"step": step.Index, "name": step.Name, "attempt": attempt,
				"reason": "the run was cancelled before the step was applied"})})
	})
}

// runStart is a pending run's start, not yet recorded: ExecuteRun records
// it in the transaction of the first write that follows (recordStart).
type runStart struct {
	run  store.Run // as started: running, with its start time
	at   time.Time
	done bool
}

// recorded marks the start as committed (after the transaction that
// recorded it committed).
func (s *runStart) recorded() {
	if s != nil {
		s.done = true
	}
}

// errRunCancelled: the run was cancelled before its start was recorded.
var errRunCancelled = errors.New("run cancelled before it started")

// recordStart records a pending run's start inside tx, unless it is
// recorded already: the run running (unless someone cancelled it since it
// was read: errRunCancelled) and the audit's run.started.
func (c *executor) recordStart(ctx context.Context, tx store.Tx, s *runStart) error {
	if s == nil || s.done {
		return nil
	}
	cur, err := tx.Run(ctx, s.run.ID)
	if err != nil {
		return err
	}
	if cur.State == store.RunCancelled {
		return errRunCancelled
	}
	r := s.run
	r.ApprovedBy, r.ApprovedAt = cur.ApprovedBy, cur.ApprovedAt
	if err := tx.UpdateRun(ctx, r); err != nil {
		return err
	}
	return tx.Audit(ctx, runStartedEntry(r, s.at))
}

// checkFourEyes is four eyes again at the moment of acting: a run that
// waited for a person runs a destructive or releasing step only if its
// approver is neither its requester nor its overrider.
func (c *executor) checkFourEyes(run store.Run, step store.Step) string {
	m := c.acts.Meta(step.Action)
	if !run.ApprovalRequired || (!m.Destructive && m.Posture != actions.EffectRelease) {
		return ""
	}
	return fourEyes(run, run.ApprovedBy, c.opt.Guards)
}

// checkEvidence enforces safety invariant 4 at execution time, whatever the
// plan said: a destructive step never runs before capture and snapshot
// succeeded for the incident, unless a person recorded an override.
func (c *executor) checkEvidence(ctx context.Context, run store.Run, step store.Step) error {
	if !c.acts.Meta(step.Action).Destructive || run.OverrideReason != "" {
		return nil
	}
	var missing []string
	incident := run.Incident
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		if incident == "" {
			// Not started for an incident: the gateway is compromised
			// only if it has an open one, whose evidence then counts.
			inc, open, err := tx.OpenIncidentFor(ctx, run.Gateway, time.Time{})
			if err != nil || !open {
				return err
			}
			incident = inc.ID
		}
		evidence := c.acts.EvidenceNames()
		missing, err = tx.EvidenceSucceeded(ctx, incident, evidence)
		if err != nil {
			return err
		}
		if len(missing) < len(evidence) {
			missing = nil // one suffices where another cannot exist (no agent / no VM)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return actions.Terminal(fmt.Errorf("evidence first: destructive step %s refused because %v has not succeeded for incident %s; override with a recorded reason", step.Name, missing, incident))
	}
	return nil
}

// executeStep takes step through the catalogue; recorded says its next
// attempt is recorded already (the first, with the decision).
func (c *executor) executeStep(ctx context.Context, run store.Run, start *runStart, step store.Step, gw inventory.Gateway, recorded bool) (actions.Result, error) {
	act, ok := c.acts[step.Action]
	if !ok {
		if err := c.startAlone(ctx, start); err != nil {
			return actions.Result{}, err
		}
		return actions.Result{}, actions.Terminal(fmt.Errorf("action %q is not available", step.Action))
	}
	if !actions.Retrying(act) {
		// No retry layer calls Starting (only tests build such a
		// catalogue): record the start on its own, before the action.
		if err := c.startAlone(ctx, start); err != nil {
			return actions.Result{}, err
		}
	}
	req := actions.Request{IdempotencyKey: step.IdemKey, Incident: run.Incident, Run: run.ID, Gateway: gw, Params: step.Params,
		Attempts: &stepAttempts{c: c, run: run, start: start, step: &step, gw: gw, recorded: recorded}}
	res, err := actions.Execute(ctx, act, req)
	switch {
	case ctx.Err() != nil:
		return actions.Result{}, ctx.Err() // stopping: leave the step running; resume later
	case errors.Is(err, errRunCancelled):
		return actions.Result{}, err
	case errors.Is(err, ErrNotLeader), errors.Is(err, actions.ErrFenced), errors.Is(err, errRecording):
		return actions.Result{}, err // the step stays as recorded; it is resumed
	case err == nil:
		return res, c.recordStep(ctx, run, step, store.StepSucceeded, res, nil)
	case step.Optional && errors.Is(err, actions.ErrUnsupported):
		// Nothing can do this here (no agent, no vCenter): say so
		// plainly rather than report a failure.
		return actions.Result{}, c.recordStep(ctx, run, step, store.StepSkipped, actions.Result{Summary: "skipped: " + err.Error()}, nil)
	}
	return actions.Result{}, c.recordStep(ctx, run, step, store.StepFailed, actions.Result{}, err)
}

// errRecording marks a failure to record an attempt: the store, not the
// step, failed, so the step is not marked failed.
var errRecording = errors.New("recording the attempt")

// startAlone records a pending run's start in a transaction of its own.
func (c *executor) startAlone(ctx context.Context, start *runStart) error {
	if start == nil || start.done {
		return nil
	}
	if err := c.st.Tx(ctx, func(tx store.Tx) error { return c.recordStart(ctx, tx, start) }); err != nil {
		return err
	}
	start.recorded()
	return nil
}

// stepAttempts fences and records every attempt of a step: the retry
// decorator calls it around each one. The first attempt of a run's first
// step also records the run's start (start), in the same transaction.
type stepAttempts struct {
	c     *executor
	run   store.Run
	start *runStart
	step  *store.Step
	gw    inventory.Gateway
	// recorded: the next attempt is on disk already, under step.Epoch
	// (a run's first, recorded with the decision that started it).
	recorded bool
}

// Starting checks the writer lease (a controller that lost it must not
// start another side effect) and records the attempt, unless it was
// recorded under the lease epoch still held.
func (o *stepAttempts) Starting(ctx context.Context, n int) error {
	epoch, err := o.c.leaseEpoch()
	if err != nil {
		return err
	}
	if o.recorded {
		o.recorded = false
		if epoch == o.step.Epoch {
			return nil
		}
	}
	now, step := o.c.clock.Now(), o.step
	step.State, step.Attempts, step.Epoch = store.StepRunning, step.Attempts+1, epoch
	if step.StartedAt.IsZero() {
		step.StartedAt = now
	}
	err = o.c.st.Tx(ctx, func(tx store.Tx) error {
		if err := o.c.recordStart(ctx, tx, o.start); err != nil {
			return err
		}
		if err := tx.UpdateStep(ctx, *step); err != nil {
			return err
		}
		return tx.Audit(ctx, stepApplyEntry(o.run, *step, o.gw, now))
	})
	if errors.Is(err, errRunCancelled) {
		return err
	}
	if err == nil {
		o.start.recorded()
	}
	return recording(err)
}

// Failed records a failed attempt.
func (o *stepAttempts) Failed(ctx context.Context, n int, err error, terminal bool) error {
	step := o.step
	return recording(o.c.st.Tx(ctx, func(tx store.Tx) error {
		return tx.Audit(ctx, audit.Entry{At: o.c.clock.Now(), Actor: "controller", Action: "step.error", Incident: o.run.Incident, Run: o.run.ID, Subject: o.gw.ID,
			Data: mustJSON(map[string]any{"step": step.Index, "name": step.Name, "attempt": step.Attempts, "error": err.Error(), "terminal": terminal})})
	}))
}

func recording(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrStaleEpoch) {
		return fmt.Errorf("%w: %w", actions.ErrFenced, err)
	}
	return fmt.Errorf("%w: %w", errRecording, err)
}

func (c *executor) recordStep(ctx context.Context, run store.Run, step store.Step, state string, res actions.Result, stepErr error) error {
	now := c.clock.Now()
	step.State, step.FinishedAt = state, now
	if stepErr != nil {
		step.Error = stepErr.Error()
	}
	rj, _ := json.Marshal(res)
	if red, err := audit.RedactJSON(rj); err == nil {
		// Step results are shown by the API and reports: no secrets there
		// either, whatever a provider put in its details.
		rj = red
	}
	step.Result = rj
	c.m.StepDuration.WithLabelValues(step.Action, state).Observe(now.Sub(step.StartedAt).Seconds())
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.UpdateStep(ctx, step); err != nil {
			return err
		}
		if state == store.StepSucceeded {
			if err := c.stepEffects(ctx, tx, run, step, now); err != nil {
				return err
			}
		}
		action := "step." + state
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: action, Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"step": step.Index, "name": step.Name, "action": step.Action, "changed": res.Changed,
				"summary": res.Summary, "details": res.Details, "error": step.Error, "attempts": step.Attempts,
				"duration_ms": now.Sub(step.StartedAt).Milliseconds()})})
	})
	if errors.Is(err, store.ErrStaleEpoch) {
		// Deposed: the successor owns the step now.
		return fmt.Errorf("%w: %w", actions.ErrFenced, err)
	}
	if err != nil {
		return err
	}
	if stepErr != nil {
		return stepErr
	}
	return nil
}

// stepEffects writes the postures and incident state that follow from a
// succeeded step, inside the transaction that records the success: a
// crash between the two must not leave an isolated gateway whose desired
// posture was never set (the resumed run skips a succeeded step).
func (c *executor) stepEffects(ctx context.Context, tx store.Tx, run store.Run, step store.Step, now time.Time) error {
	switch c.acts.Meta(step.Action).Posture {
	case actions.EffectQuarantine:
		if err := tx.SetDesiredPosture(ctx, run.Gateway, store.PostureQuarantined, run.Incident, now); err != nil {
			return err
		}
		if run.Incident != "" {
			if err := tx.SetIncidentStatus(ctx, run.Incident, store.IncidentContained, now); err != nil {
				return err
			}
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "posture.desired", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"desired": store.PostureQuarantined})})
	case actions.EffectRelease:
		before, err := tx.Posture(ctx, run.Gateway)
		if err != nil {
			return err
		}
		if err := tx.SetDesiredPosture(ctx, run.Gateway, store.PostureReleased, run.Incident, now); err != nil {
			return err
		}
		if err := tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "posture.desired", Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"desired": store.PostureReleased})}); err != nil {
			return err
		}
		// Indicators that arrived while the release ran were decided
		// against the quarantine they met then; decide them again against
		// the posture they meet now, in the same transaction.
		return c.redecideLiveThreats(ctx, tx, run.Gateway, before.UpdatedAt, now)
	}
	return nil
}

// afterStep does what follows a succeeded step outside the store's
// transaction: metrics, the observed posture, and waking the executor for
// runs the step's effects started.
func (c *executor) afterStep(ctx context.Context, run store.Run, step store.Step, res actions.Result) error {
	now := c.clock.Now()
	switch c.acts.Meta(step.Action).Posture {
	case actions.EffectQuarantine:
		if inds, err := c.st.IndicatorsOfIncident(ctx, run.Incident); err == nil && len(inds) > 0 {
			c.m.TimeToContain.Observe(now.Sub(inds[0].ReceivedAt).Seconds())
		}
		_ = c.st.SetObservedPosture(ctx, run.Gateway, store.PostureQuarantined, mustJSON(res.Details), now)
	case actions.EffectRelease:
		c.Kick() // a re-decided indicator may have started a run
		_ = c.st.SetObservedPosture(ctx, run.Gateway, store.PostureNormal, mustJSON(res.Details), now)
	}
	return nil
}

func (c *executor) finishRun(ctx context.Context, run store.Run, start *runStart, runErr error) error {
	now := c.clock.Now()
	run.State, run.FinishedAt, run.UpdatedAt = store.RunSucceeded, now, now
	if runErr != nil {
		run.State, run.Error = store.RunFailed, runErr.Error()
	} else if failed := c.failedOptionalSteps(ctx, run.ID); failed != "" {
		// The run went on past them (that is what optional means), but a
		// person reading "succeeded" must not miss that something failed.
		run.Error = "finished, but optional step(s) failed: " + failed
	}
	c.m.Runs.WithLabelValues(run.State).Inc()
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		cur, err := tx.Run(ctx, run.ID)
		if err != nil {
			return err
		}
		if cur.State == store.RunCancelled {
			return nil
		}
		if err := c.recordStart(ctx, tx, start); err != nil {
			return err
		}
		run.ApprovedBy, run.ApprovedAt = cur.ApprovedBy, cur.ApprovedAt
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "run." + run.State, Incident: run.Incident, Run: run.ID, Subject: run.Gateway,
			Data: mustJSON(map[string]any{"error": run.Error, "duration_ms": now.Sub(run.StartedAt).Milliseconds()})})
	})
	if err != nil {
		return err
	}
	if runErr != nil {
		c.log.Error("run failed", "run", run.ID, "gateway", run.Gateway, "err", runErr)
	} else {
		c.log.Info("run succeeded", "run", run.ID, "gateway", run.Gateway, "runbook", run.Runbook)
	}
	return nil
}

// WaitRun polls until the run is terminal or waits for approval, or ctx
// ends.
func (c *runs) WaitRun(ctx context.Context, id string) (store.Run, error) {
	for {
		r, err := c.st.Run(ctx, id)
		if err != nil {
			return r, err
		}
		if r.Terminal() || r.State == store.RunAwaitingApproval {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, errors.Join(ctx.Err(), fmt.Errorf("run %s still %s", id, r.State))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// failedOptionalSteps names the optional steps of a run that failed, with
// their errors; "" when none did.
func (c *executor) failedOptionalSteps(ctx context.Context, runID string) string {
	r, err := c.st.Run(ctx, runID)
	if err != nil {
		return ""
	}
	var out []string
	for _, st := range r.Steps {
		if st.Optional && st.State == store.StepFailed {
			out = append(out, fmt.Sprintf("%s (%s)", st.Name, st.Error))
		}
	}
	return strings.Join(out, "; ")
}
