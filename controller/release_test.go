package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

func (h *harness) recordBaseline(t *testing.T, gw string, passed bool, at time.Time) {
	t.Helper()
	err := h.st.Tx(t.Context(), func(tx store.Tx) error {
		failed := 0
		if !passed {
			failed = 2
		}
		return tx.InsertBaselineResult(t.Context(), store.BaselineResult{ID: store.NewID("bsl"), Gateway: gw, CheckedAt: at,
			Passed: passed, Failed: failed, Source: "test", Report: []byte(`{}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReleaseIsEarned proves safety invariant 7: release needs a passing
// baseline checked after the quarantine, rotated credentials, and an
// approval; without the first two it is refused with the list, and only a
// recorded override lets it through, never without the approval.
func TestReleaseIsEarned(t *testing.T) {
	h := newHarness(t, nil)
	clock := h.c.clock.Now()
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	if r := h.run(t, res[0].RunID); r.State != store.RunSucceeded {
		t.Fatalf("containment: %s", r.Error)
	}
	start := func(override string) (store.Run, error) {
		return h.c.StartRunbook(t.Context(), StartRequest{Runbook: "release-gateway", Gateway: "gw-hq", Incident: res[0].IncidentID, Actor: "alice", OverrideReason: override})
	}

	_, err := start("")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "baseline: no baseline check") || !strings.Contains(err.Error(), "credentials-rotated") {
		t.Fatalf("release with nothing done: %v", err)
	}
	h.recordBaseline(t, "gw-hq", true, clock.Add(-time.Hour)) // before the quarantine: does not count
	if _, err = start(""); err == nil || !strings.Contains(err.Error(), "older than the quarantine") {
		t.Fatalf("stale baseline: %v", err)
	}
	h.recordBaseline(t, "gw-hq", false, clock.Add(time.Minute))
	if _, err = start(""); err == nil || !strings.Contains(err.Error(), "failed 2 check(s)") {
		t.Fatalf("failing baseline: %v", err)
	}
	h.recordBaseline(t, "gw-hq", true, clock.Add(2*time.Minute))
	if _, err = start(""); err == nil || strings.Contains(err.Error(), "baseline:") || !strings.Contains(err.Error(), "credentials-rotated") {
		t.Fatalf("passing baseline, credentials not rotated: %v", err)
	}
	rot, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "rotate", Gateway: "gw-hq", Incident: res[0].IncidentID, Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.run(t, rot.ID); r.State != store.RunSucceeded {
		t.Fatalf("rotation: %s", r.Error)
	}

	// Every gate met: the run is created, and still waits for a person.
	run, err := start("")
	if err != nil {
		t.Fatal(err)
	}
	if run.State != store.RunAwaitingApproval || !strings.Contains(run.ApprovalReason, "release-approval") {
		t.Fatalf("release run %s (%s)", run.State, run.ApprovalReason)
	}
	if r := h.run(t, run.ID); r.State != store.RunAwaitingApproval || h.acts["release"].calls() != 0 {
		t.Fatal("release ran without approval")
	}
	if _, err := h.c.Approve(t.Context(), run.ID, "bob", "baseline and rotation checked"); err != nil {
		t.Fatal(err)
	}
	if r := h.run(t, run.ID); r.State != store.RunSucceeded || h.acts["release"].calls() != 1 {
		t.Fatalf("approved release: %s %s", r.State, r.Error)
	}
}

func TestReleaseOverrideIsRecordedButStillNeedsApproval(t *testing.T) {
	h := newHarness(t, nil)
	run := overriddenRelease(t, h) // checks that it waits for approval
	es, _ := audit.List(t.Context(), h.st.DB(), "")
	found := false
	for _, e := range es {
		if e.Action == "run.created" && e.Run == run.ID && strings.Contains(string(e.Data), "overridden by user:resp1") && strings.Contains(string(e.Data), "rebuilt from a clean image") {
			found = true
		}
	}
	if !found {
		t.Fatal("override not recorded in the audit")
	}
	// The plan shows the gates without refusing.
	p, err := h.c.PlanDecision(t.Context(), "gw-osaka", "release-gateway", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, g := range p.Gates {
		names[g.Name] = !g.Passed
	}
	if !names["baseline"] || !names["credentials-rotated"] || !names["release-approval"] || !p.ApprovalRequired {
		t.Fatalf("plan gates %+v", p.Gates)
	}
}

func TestReleaseDryRunShowsGates(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	h.run(t, res[0].RunID)
	p, err := h.c.PlanManual(t.Context(), StartRequest{Runbook: "release-gateway", Gateway: "gw-hq", Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	text := p.Text()
	for _, want := range []string{"[HOLD] baseline", "[HOLD] credentials-rotated", "[HOLD] release-approval"} {
		if !strings.Contains(text, want) {
			t.Fatalf("dry run does not show %q:\n%s", want, text)
		}
	}
	if runs, _ := h.st.Runs(t.Context(), store.RunFilter{Gateway: "gw-hq", States: []string{store.RunAwaitingApproval, store.RunPending}}); len(runs) != 0 {
		t.Fatal("a dry run created a run")
	}
}
