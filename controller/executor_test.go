package controller

import (
	"context"
	"errors"
	"github.com/warden-ir/warden/actions"
	"slices"
	"sync"
	"testing"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// A pending run's start is recorded with its first step's attempt, in one
// transaction, and that is on disk before the step's action runs: the run
// running, the step running with its attempt, and the audit saying
// run.started, then step.apply.
func TestRunStartIsDurableBeforeTheFirstSideEffect(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	runID := res[0].RunID
	var seen *store.Run
	var auditSeen []string
	first := h.acts["capture_volatile"]
	first.onCtx = func(ctx context.Context) {
		if seen != nil {
			return
		}
		r, err := h.st.Run(ctx, runID)
		if err != nil {
			t.Error(err)
			return
		}
		seen, auditSeen = &r, h.auditActions(t)
	}
	r := h.run(t, runID)
	if r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	if seen == nil {
		t.Fatal("the first step's action never ran")
	}
	if seen.State != store.RunRunning || seen.StartedAt.IsZero() {
		t.Fatalf("when the first action ran the run was %s (started %v), want running", seen.State, seen.StartedAt)
	}
	if s := seen.Steps[0]; s.State != store.StepRunning || s.Attempts != 1 || s.StartedAt.IsZero() {
		t.Fatalf("when the first action ran its step was %+v, want running, attempt 1", s)
	}
	i := slices.Index(auditSeen, "run.started")
	if i < 0 || i+1 >= len(auditSeen) || auditSeen[i+1] != "step.apply" {
		t.Fatalf("audit when the first action ran: %v, want run.started then step.apply", auditSeen)
	}
	if n := countOf(h.auditActions(t), "run.started"); n != 1 {
		t.Fatalf("run.started recorded %d times", n)
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// TestCancelledRunTakesNoFurtherStep: a run cancelled while a step runs
// takes no further step, and a run cancelled before the executor picked
// it up takes none at all (its start is recorded only if it is still not
// cancelled, in the first attempt's transaction).
func TestCancelledRunTakesNoFurtherStep(t *testing.T) {
	total := func(h *harness) int {
		n := 0
		for _, f := range h.acts {
			n += f.calls()
		}
		return n
	}

	cancel := func(t *testing.T, h *harness, id string) {
		if _, err := h.c.Cancel(t.Context(), id, "alice", "wrong gateway"); err != nil {
			t.Error(err)
		}
	}

	t.Run("during a step", func(t *testing.T) {
		h := newHarness(t, nil)
		runID := h.accept(t, ind("c2_beacon", "gw-osaka"))[0].RunID
		if r, err := h.st.Run(t.Context(), runID); err != nil || len(r.Steps) < 2 {
			t.Fatalf("run %s: %d steps (%v); the test needs two", runID, len(r.Steps), err)
		}
		var once sync.Once
		for _, f := range h.acts {
			f.onApply = func() {
				once.Do(func() { cancel(t, h, runID) })
			}
		}
		r := h.run(t, runID)
		if got := total(h); got != 1 || r.State != store.RunCancelled {
			t.Fatalf("after a cancel during the first step: %d steps applied, run %s; want 1 and cancelled", got, r.State)
		}
	})

	t.Run("between its reading and its first step", func(t *testing.T) {
		h := newHarness(t, nil)
		runID := h.accept(t, ind("c2_beacon", "gw-osaka"))[0].RunID
		beforeFirstStep = func(id string) { cancel(t, h, id) }
		t.Cleanup(func() { beforeFirstStep = nil })
		r := h.run(t, runID)
		if got := total(h); got != 0 || r.State != store.RunCancelled {
			t.Fatalf("a run cancelled before its first step: %d steps applied, run %s; want none and cancelled", got, r.State)
		}
	})

	runActions := func(t *testing.T, h *harness, runID string) []string {
		es, err := audit.List(t.Context(), h.st.DB(), "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			if e.Run == runID {
				out = append(out, e.Action)
			}
		}
		return out
	}

	t.Run("before it started", func(t *testing.T) {
		h := newHarness(t, nil)
		run, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "contain", Gateway: "gw-osaka", Actor: "alice"})
		if err != nil || run.State != store.RunPending {
			t.Fatalf("manual run: %s, %v; want pending", run.State, err)
		}
		cancel(t, h, run.ID)
		r := h.run(t, run.ID)
		if got := total(h); got != 0 || r.State != store.RunCancelled {
			t.Fatalf("a run cancelled before it started: %d steps applied, run %s; want none and cancelled", got, r.State)
		}
		for _, a := range runActions(t, h, run.ID) {
			if a == "run.started" || a == "step.apply" {
				t.Fatalf("a run cancelled before it started has %s in the audit", a)
			}
		}
	})

	// A C2 alert's run is recorded started, its first attempt with it: a
	// cancel before the executor takes it withdraws that attempt, which
	// was recorded and never applied.
	t.Run("started by its alert, before the executor took it", func(t *testing.T) {
		h := newHarness(t, nil)
		runID := h.accept(t, ind("c2_beacon", "gw-osaka"))[0].RunID
		cancel(t, h, runID)
		r := h.run(t, runID)
		if got := total(h); got != 0 || r.State != store.RunCancelled {
			t.Fatalf("a run cancelled before its first step: %d steps applied, run %s; want none and cancelled", got, r.State)
		}
		if s := r.Steps[0]; s.State != store.StepPending || s.Attempts != 0 {
			t.Fatalf("the withdrawn first step: %s after %d attempts, want pending after none", s.State, s.Attempts)
		}
		got := runActions(t, h, runID)
		want := []string{"run.created", "run.started", "step.apply", "run.cancelled", "step.withdrawn"}
		if !slices.Equal(got, want) {
			t.Fatalf("audit of the run: %v, want %v", got, want)
		}
	})
}

// TestAlertStartsItsRunWithItsFirstAttempt: a run an alert starts at once
// is committed with the decision already started, its first step's first
// attempt recorded under the lease epoch (one commit fewer before the
// first command), and the executor takes that step without recording
// the attempt again.
func TestAlertStartsItsRunWithItsFirstAttempt(t *testing.T) {
	lease := &testLease{epoch: 3}
	h := newHarness(t, func(o *Options) { o.Lease = lease })
	a := h.accept(t, ind("c2_beacon", "gw-osaka"))[0]
	if a.RunState != store.RunRunning || a.started == nil {
		t.Fatalf("the alert's run: %s (handed over: %v), want running and handed over", a.RunState, a.started != nil)
	}
	stored, err := h.st.Run(t.Context(), a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	first := stored.Steps[0]
	if stored.State != store.RunRunning || stored.StartedAt.IsZero() ||
		first.State != store.StepRunning || first.Attempts != 1 || first.Epoch != 3 || !first.StartedAt.Equal(stored.StartedAt) {
		t.Fatalf("committed with the decision: run %s started %v, first step %s after %d attempts under epoch %d from %v",
			stored.State, stored.StartedAt, first.State, first.Attempts, first.Epoch, first.StartedAt)
	}
	for _, s := range stored.Steps[1:] {
		if s.State != store.StepPending || s.Attempts != 0 {
			t.Fatalf("step %d: %s after %d attempts, want pending", s.Index, s.State, s.Attempts)
		}
	}
	// What the executor is handed is what was committed.
	if h1, s1 := mustJSON(*a.started), mustJSON(stored); string(h1) != string(s1) {
		t.Fatalf("handed over:\n%s\nstored:\n%s", h1, s1)
	}
	applies := func() map[string]int {
		es, err := audit.List(t.Context(), h.st.DB(), "")
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, e := range es {
			if e.Run == a.RunID {
				n[e.Action]++
			}
		}
		return n
	}
	if n := applies(); n["run.started"] != 1 || n["step.apply"] != 1 {
		t.Fatalf("audit with the decision: %v, want run.started and one step.apply", n)
	}

	r := h.run(t, a.RunID)
	if r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	for _, s := range r.Steps {
		if s.Attempts != 1 {
			t.Fatalf("step %d (%s): %d attempts, want 1", s.Index, s.Name, s.Attempts)
		}
	}
	if n := applies(); n["run.started"] != 1 || n["step.apply"] != len(r.Steps) || n["run.resumed"] != 0 {
		t.Fatalf("audit after the run: %v, want one run.started and one step.apply a step", n)
	}
	if got := h.acts[r.Steps[0].Action].calls(); got != 1 {
		t.Fatalf("first step applied %d times", got)
	}
}

// TestRunsStartedAtOnce says which runs are recorded started with the
// decision: only a run handed straight to this controller's executor,
// under the lease, whose first step needs no other check at the moment of
// acting.
func TestRunsStartedAtOnce(t *testing.T) {
	lease := &testLease{epoch: 5}
	h := newHarness(t, func(o *Options) { o.Lease = lease })
	runOf := func(state string, actions ...string) store.Run {
		r := store.Run{ID: "run-1", State: state}
		for i, a := range actions {
			r.Steps = append(r.Steps, store.Step{Run: "run-1", Index: i, Action: a, State: store.StepPending})
		}
		return r
	}
	handed := newRunRequest{handedOver: true}
	tests := []struct {
		name   string
		req    newRunRequest
		run    store.Run
		lost   bool
		want   bool
		wantEp int64
	}{
		{"a containment handed over", handed, runOf(store.RunPending, "capture_volatile", "isolate"), false, true, 5},
		{"left to the executor's next pass", newRunRequest{}, runOf(store.RunPending, "capture_volatile"), false, false, 0},
		{"a plan only", newRunRequest{handedOver: true, preview: true}, runOf(store.RunPending, "capture_volatile"), false, false, 0},
		{"awaiting approval", handed, runOf(store.RunAwaitingApproval, "capture_volatile"), false, false, 0},
		{"no step", handed, runOf(store.RunPending), false, false, 0},
		{"a destructive first step (evidence first)", handed, runOf(store.RunPending, "power_off"), false, false, 0},
		{"a releasing first step (the release gates)", handed, runOf(store.RunPending, "release"), false, false, 0},
		{"an action not in the catalogue", handed, runOf(store.RunPending, "no_such_action"), false, false, 0},
		{"without the lease", handed, runOf(store.RunPending, "capture_volatile"), true, false, 0},
	}
	// The refusals below are for what they say, not a missing action.
	for _, a := range []string{"capture_volatile", "power_off", "release"} {
		if act, ok := h.c.acts[a]; !ok || !actions.Retrying(act) {
			t.Fatalf("the harness's catalogue lacks %s, or not behind the retry layer", a)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.lost {
				lease.set(5, errors.New("another controller holds the store"))
				defer lease.set(5, nil)
			}
			epoch, ok := h.c.startsAtOnce(tc.req, tc.run)
			if ok != tc.want || epoch != tc.wantEp {
				t.Fatalf("startsAtOnce = %d, %v; want %d, %v", epoch, ok, tc.wantEp, tc.want)
			}
		})
	}
}
