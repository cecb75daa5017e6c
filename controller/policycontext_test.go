package controller

import (
	"testing"

	"github.com/warden-ir/warden/indicator"
)

// contextPolicies match only on the context counters the controller
// reads for a decision.
const contextPolicies = `
policies:
  - name: third-guess
    match: 'indicator.kind == "brute_force" && context.recent_indicators >= 3'
    runbook: notify-only
    approval: auto
    guards: {budget: false}
  - name: crash-in-an-open-incident
    match: 'indicator.kind == "crash" && context.open_incidents == 1'
    runbook: notify-only
    approval: auto
    guards: {budget: false}
`

// TestPolicyContextCountersAreRead: a policy that reads
// context.recent_indicators or context.open_incidents sees them counted
// (the controller reads only the counters some policy mentions): the
// third alert about a gateway within the dedup window sees 3 recent
// indicators, and an alert joining the gateway's open incident sees it.
func TestPolicyContextCountersAreRead(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Policies = loadPolicies(t, contextPolicies) })
	for n, want := range []string{"", "", "third-guess"} {
		if a := h.accept(t, burst(indicator.BruteForce, "gw-hq", n))[0]; a.Policy != want {
			t.Fatalf("brute-force alert %d: policy %q, want %q", n+1, a.Policy, want)
		}
	}
	// The first crash opens the incident (counted as the one it will be in
	// whatever was read); the second joins it, and only a count read from
	// the store says so.
	first := h.accept(t, burst(indicator.Crash, "gw-osaka", 1))[0]
	if first.RunID != "" {
		h.run(t, first.RunID)
	}
	if a := h.accept(t, burst(indicator.Crash, "gw-osaka", 2))[0]; a.Policy != "crash-in-an-open-incident" || a.IncidentID != first.IncidentID {
		t.Fatalf("a crash joining the open incident: %+v; want policy crash-in-an-open-incident in %s", a, first.IncidentID)
	}
}
