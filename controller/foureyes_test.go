package controller

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// overriddenRelease is a quarantined gw-osaka whose release user:resp1
// requested with an override (nothing else done: the override covers the
// baseline and credential gates).
func overriddenRelease(t *testing.T, h *harness) store.Run {
	t.Helper()
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	h.run(t, res[0].RunID)
	run, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "release-gateway", Gateway: "gw-osaka", Actor: "user:resp1",
		OverrideReason: "rebuilt from a clean image"})
	if err != nil {
		t.Fatal(err)
	}
	if run.State != store.RunAwaitingApproval || run.RequestedBy != "user:resp1" || run.OverriddenBy != "user:resp1" {
		t.Fatalf("release run: %s requested by %q overridden by %q", run.State, run.RequestedBy, run.OverriddenBy)
	}
	return run
}

// TestNobodyApprovesTheirOwnRelease is four eyes (safety: nobody approves
// their own request): the requester and overrider of a release is refused,
// with the rule named and the refusal audited; another person's approval
// lets it run.
func TestNobodyApprovesTheirOwnRelease(t *testing.T) {
	h := newHarness(t, nil)
	run := overriddenRelease(t, h)
	_, err := h.c.Approve(t.Context(), run.ID, "user:resp1", "looks fine to me")
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "four eyes") ||
		!strings.Contains(err.Error(), "requested it and overrode a gate on it") {
		t.Fatalf("self-approval: %v", err)
	}
	if r := h.run(t, run.ID); r.State != store.RunAwaitingApproval || h.acts["release"].calls() != 0 {
		t.Fatalf("after a refused self-approval the run is %s and release ran %d times", r.State, h.acts["release"].calls())
	}
	if !contains(h.auditActions(t), "run.approval_refused") {
		t.Fatal("the refused approval is not in the audit")
	}
	if _, err := h.c.Approve(t.Context(), run.ID, "user:appr1", "image hash checked"); err != nil {
		t.Fatal(err)
	}
	r := h.run(t, run.ID)
	if r.State != store.RunSucceeded || r.ApprovedBy != "user:appr1" || h.acts["release"].calls() != 1 {
		t.Fatalf("approved by another person: %s %q approved by %q", r.State, r.Error, r.ApprovedBy)
	}
}

// TestRequesterOfAnIndicatorDoesNotApproveItsRun: the person who
// submitted the indicator a policy decided on asked for its run.
func TestRequesterOfAnIndicatorDoesNotApproveItsRun(t *testing.T) {
	h := newHarness(t, nil)
	res, err := h.c.Accept(t.Context(), "user:resp1", []Item{{Indicator: ind(indicator.Crash, "gw-hq").Indicator, Matched: true}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("run %s", res[0].RunState)
	}
	if r := h.run(t, res[0].RunID); r.RequestedBy != "user:resp1" {
		t.Fatalf("requested by %q", r.RequestedBy)
	}
	if _, err := h.c.Approve(t.Context(), res[0].RunID, "user:resp1", ""); !errors.Is(err, ErrForbidden) {
		t.Fatalf("the submitter approved: %v", err)
	}
	if _, err := h.c.Approve(t.Context(), res[0].RunID, "user:appr1", ""); err != nil {
		t.Fatal(err)
	}
}

// TestOnePersonModeIsAllowedOnlyByConfigAndSaidSo: with
// guards.two_person false the requester may approve, and the plan says
// the override stood alone.
func TestOnePersonModeIsAllowedOnlyByConfigAndSaidSo(t *testing.T) {
	off := false
	h := newHarness(t, func(o *Options) { o.Guards.TwoPerson = &off })
	run := overriddenRelease(t, h)
	if _, err := h.c.Approve(t.Context(), run.ID, "user:resp1", "alone tonight"); err != nil {
		t.Fatalf("one-person mode: %v", err)
	}
	var p plan.Plan
	if err := json.Unmarshal(run.Plan, &p); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range p.Gates {
		found = found || (g.Name == "four-eyes" && g.Passed && strings.Contains(g.Detail, "may act alone"))
	}
	if !found {
		t.Fatalf("the plan does not say one person acted alone: %+v", p.Gates)
	}
}

// TestFourEyesIsCheckedAgainBeforeTheStep: an approval that breaks the
// rule (written around Approve, as a restored or edited store could hold)
// does not release the gateway.
func TestFourEyesIsCheckedAgainBeforeTheStep(t *testing.T) {
	h := newHarness(t, nil)
	run := overriddenRelease(t, h)
	if err := h.st.Tx(t.Context(), func(tx store.Tx) error {
		run.State, run.ApprovedBy, run.ApprovedAt = store.RunPending, "user:resp1", h.c.clock.Now()
		return tx.UpdateRun(t.Context(), run)
	}); err != nil {
		t.Fatal(err)
	}
	r := h.run(t, run.ID)
	if r.State != store.RunFailed || !strings.Contains(r.Error, "four eyes") || h.acts["release"].calls() != 0 {
		t.Fatalf("self-approved release: %s %q, release ran %d times", r.State, r.Error, h.acts["release"].calls())
	}
}

func TestFourEyesRule(t *testing.T) {
	on, off := config.Guards{}, config.Guards{TwoPerson: new(bool)}
	run := store.Run{ID: "run-1", RequestedBy: "user:a", OverriddenBy: "user:b"}
	for _, tc := range []struct {
		name   string
		actor  string
		guards config.Guards
		want   string
	}{
		{"requester", "user:a", on, "user:a requested it"},
		{"overrider", "user:b", on, "user:b overrode a gate on it"},
		{"another person", "user:c", on, ""},
		{"one-person mode", "user:a", off, ""},
	} {
		got := fourEyes(run, tc.actor, tc.guards)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A controller's own run (no requester) is approved by anyone.
	if got := fourEyes(store.Run{ID: "run-2"}, "user:a", on); got != "" {
		t.Errorf("run without requester: %q", got)
	}
}

func TestBreakGlassGate(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name     string
		override string
		guards   config.Guards
		want     *plan.Gate
	}{
		{"no override", "", config.Guards{}, nil},
		{"override needs a second person", "wiping logs", config.Guards{}, &plan.Gate{Name: "four-eyes", Passed: false, Blocking: true}},
		{"one-person mode", "wiping logs", config.Guards{TwoPerson: &off}, &plan.Gate{Name: "four-eyes", Passed: true, Blocking: false}},
	} {
		var v verdict
		breakGlassGate(gateInput{req: newRunRequest{actor: "user:a", override: tc.override}, guards: tc.guards}, &v)
		switch {
		case tc.want == nil && len(v.gates) != 0:
			t.Errorf("%s: gates %+v", tc.name, v.gates)
		case tc.want != nil && (len(v.gates) != 1 || v.gates[0].Name != tc.want.Name || v.gates[0].Passed != tc.want.Passed || v.gates[0].Blocking != tc.want.Blocking):
			t.Errorf("%s: gates %+v, want %+v", tc.name, v.gates, *tc.want)
		case tc.want != nil && v.approvalRequired == tc.want.Passed:
			t.Errorf("%s: approval required %t", tc.name, v.approvalRequired)
		}
	}
}

// TestRefusedApprovalIsAudited: an approval the caller's role refused
// before the controller saw it is still recorded, with what four eyes
// says about the caller.
func TestRefusedApprovalIsAudited(t *testing.T) {
	h := newHarness(t, nil)
	run := overriddenRelease(t, h)
	fe, err := h.c.RefuseApproval(t.Context(), run.ID, "user:resp1", "role responder may not approve")
	if err != nil || !strings.Contains(fe, "four eyes") {
		t.Fatalf("RefuseApproval = %q, %v", fe, err)
	}
	if fe, err := h.c.RefuseApproval(t.Context(), run.ID, "user:view1", "role viewer may not approve"); err != nil || fe != "" {
		t.Fatalf("a viewer who asked for nothing: %q, %v", fe, err)
	}
	if fe, err := h.c.RefuseApproval(t.Context(), "run-nope", "user:view1", "role viewer may not approve"); err != nil || fe != "" {
		t.Fatalf("unknown run: %q, %v", fe, err)
	}
	n := 0
	for _, a := range h.auditActions(t) {
		if a == "run.approval_refused" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d run.approval_refused entries, want 2", n)
	}
}
