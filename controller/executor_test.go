package controller

import (
	"context"
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

	t.Run("before the first step", func(t *testing.T) {
		h := newHarness(t, nil)
		runID := h.accept(t, ind("c2_beacon", "gw-osaka"))[0].RunID
		cancel(t, h, runID)
		r := h.run(t, runID)
		if got := total(h); got != 0 || r.State != store.RunCancelled {
			t.Fatalf("a run cancelled before it started: %d steps applied, run %s; want none and cancelled", got, r.State)
		}
		es, err := audit.List(t.Context(), h.st.DB(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Run == runID && (e.Action == "run.started" || e.Action == "step.apply") {
				t.Fatalf("a run cancelled before it started has %s in the audit", e.Action)
			}
		}
	})
}
