package controller

import (
	"context"
	"slices"
	"testing"

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
