package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// gateNames lists "name:passed" for each gate, in order.
func gateNames(gs []plan.Gate) string {
	var out []string
	for _, g := range gs {
		s := g.Name + ":fail"
		if g.Passed {
			s = g.Name + ":pass"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestApprovalGateTable(t *testing.T) {
	for name, tc := range map[string]struct {
		req        newRunRequest
		pass       bool
		detailHas  string
		needPerson bool
	}{
		"policy asks for a person": {req: newRunRequest{approval: true, policy: "p1"}, pass: false, detailHas: "policy p1 requires", needPerson: true},
		"a person started it":      {req: newRunRequest{trigger: "manual", actor: "ops1"}, pass: true, detailHas: "started by ops1"},
		"automatic by policy":      {req: newRunRequest{trigger: "policy", policy: "p2"}, pass: true, detailHas: "automatic by policy p2"},
	} {
		t.Run(name, func(t *testing.T) {
			var v verdict
			approvalGate(gateInput{req: tc.req}, &v)
			if len(v.gates) != 1 || v.gates[0].Passed != tc.pass || !strings.Contains(v.gates[0].Detail, tc.detailHas) || v.approvalRequired != tc.needPerson {
				t.Fatalf("gates %+v approval %v", v.gates, v.approvalRequired)
			}
		})
	}
}

func TestEvidenceFirstGate(t *testing.T) {
	unprotected := planShape{unprotected: []string{"patch"}}
	for name, tc := range map[string]struct {
		req   newRunRequest
		shape planShape
		facts gateFacts
		want  string
	}{
		"healthy gateway is not held":          {req: newRunRequest{}, shape: unprotected, facts: gateFacts{}, want: ""},
		"compromised without evidence is held": {req: newRunRequest{incident: "inc-1"}, shape: unprotected, facts: gateFacts{compromised: true}, want: "evidence-first:fail"},
		"open incident, run outside it":        {req: newRunRequest{}, shape: unprotected, facts: gateFacts{compromised: true, evidenceDone: true}, want: "evidence-first:fail"},
		"evidence already taken":               {req: newRunRequest{incident: "inc-1"}, shape: unprotected, facts: gateFacts{compromised: true, evidenceDone: true}, want: ""},
		"evidence step precedes":               {req: newRunRequest{incident: "inc-1"}, shape: planShape{}, facts: gateFacts{compromised: true}, want: ""},
		"override is recorded, never blocks":   {req: newRunRequest{incident: "inc-1", override: "disk full", actor: "ops1"}, shape: unprotected, facts: gateFacts{compromised: true}, want: "evidence-first:pass"},
	} {
		t.Run(name, func(t *testing.T) {
			var v verdict
			evidenceFirstGate(gateInput{req: tc.req, shape: tc.shape, facts: tc.facts}, &v)
			if got := gateNames(v.gates); got != tc.want {
				t.Fatalf("gates %q, want %q", got, tc.want)
			}
			if tc.want == "evidence-first:pass" && (v.gates[0].Blocking || !strings.Contains(v.gates[0].Detail, "ops1: disk full")) {
				t.Fatalf("override gate %+v", v.gates[0])
			}
		})
	}
}

func TestBaselineGate(t *testing.T) {
	q := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		facts     gateFacts
		pass      bool
		detailHas string
	}{
		"none on record":              {facts: gateFacts{quarantinedSince: q}, detailHas: "no baseline check on record"},
		"older than quarantine":       {facts: gateFacts{quarantinedSince: q, hasBaseline: true, baseline: store.BaselineResult{CheckedAt: q.Add(-time.Minute), Passed: true}}, detailHas: "older than the quarantine"},
		"failed after":                {facts: gateFacts{quarantinedSince: q, hasBaseline: true, baseline: store.BaselineResult{CheckedAt: q.Add(time.Minute), Failed: 2}}, detailHas: "failed 2 check(s)"},
		"passed after the quarantine": {facts: gateFacts{quarantinedSince: q, hasBaseline: true, baseline: store.BaselineResult{CheckedAt: q.Add(time.Minute), Passed: true}}, pass: true, detailHas: "baseline passed"},
	} {
		t.Run(name, func(t *testing.T) {
			g := baselineGate("gw-osaka", tc.facts)
			if g.Passed != tc.pass || !g.Blocking || !strings.Contains(g.Detail, tc.detailHas) {
				t.Fatalf("gate %+v", g)
			}
		})
	}
}

func TestCredentialsGate(t *testing.T) {
	for name, tc := range map[string]struct {
		facts gateFacts
		pass  bool
	}{
		"no tunnels":  {facts: gateFacts{}, pass: true},
		"rotated":     {facts: gateFacts{tunnels: 2, rotated: true}, pass: true},
		"not rotated": {facts: gateFacts{tunnels: 2}, pass: false},
	} {
		t.Run(name, func(t *testing.T) {
			if g := credentialsGate(tc.facts); g.Passed != tc.pass || !g.Blocking {
				t.Fatalf("gate %+v", g)
			}
		})
	}
}

func TestLiveThreatGate(t *testing.T) {
	if g := liveThreatGate(nil); !g.Passed {
		t.Fatalf("no threats: %+v", g)
	}
	g := liveThreatGate([]store.LiveThreat{{ID: "ind-1", Severity: "high"}, {ID: "ind-2", Severity: "critical", Kind: "c2_beacon"}})
	if g.Passed || !strings.Contains(g.Detail, "2 firing") || !strings.Contains(g.Detail, "ind-2") {
		t.Fatalf("threats: %+v", g)
	}
}

func TestReleaseGates(t *testing.T) {
	gw := inventory.Gateway{ID: "gw-osaka"}
	q := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	earned := gateFacts{quarantinedSince: q, hasBaseline: true, baseline: store.BaselineResult{CheckedAt: q.Add(time.Hour), Passed: true}}
	unmet := gateFacts{quarantinedSince: q, tunnels: 1}
	threat := earned
	threat.threats = []store.LiveThreat{{ID: "ind-9", Severity: "critical"}}
	for name, tc := range map[string]struct {
		req     newRunRequest
		facts   gateFacts
		want    string
		refused string
	}{
		"earned still needs a person": {req: newRunRequest{gateway: gw}, facts: earned,
			want: "baseline:pass credentials-rotated:pass no-live-threat:pass release-approval:fail"},
		"unmet is refused": {req: newRunRequest{gateway: gw}, facts: unmet,
			want: "baseline:fail credentials-rotated:fail no-live-threat:pass release-approval:fail", refused: "unmet gates: baseline"},
		"unmet with an override": {req: newRunRequest{gateway: gw, override: "vendor fix", actor: "ops1"}, facts: unmet,
			want: "baseline:pass credentials-rotated:pass no-live-threat:pass release-approval:fail"},
		"a live threat is never overridden": {req: newRunRequest{gateway: gw, override: "vendor fix", actor: "ops1"}, facts: threat,
			want: "baseline:pass credentials-rotated:pass no-live-threat:fail", refused: "ind-9"},
		"a preview shows, never refuses": {req: newRunRequest{gateway: gw, preview: true}, facts: unmet,
			want: "baseline:fail credentials-rotated:fail no-live-threat:pass release-approval:fail"},
	} {
		t.Run(name, func(t *testing.T) {
			var v verdict
			releaseGates(gateInput{req: tc.req, shape: planShape{releases: true}, facts: tc.facts}, &v)
			if got := gateNames(v.gates); got != tc.want {
				t.Fatalf("gates %q, want %q", got, tc.want)
			}
			switch {
			case tc.refused == "" && v.refuse != nil:
				t.Fatalf("refused: %v", v.refuse)
			case tc.refused != "" && (v.refuse == nil || !errors.Is(v.refuse, ErrConflict) || !strings.Contains(v.refuse.Error(), tc.refused)):
				t.Fatalf("refusal %v, want ErrConflict naming %q", v.refuse, tc.refused)
			}
			if !v.approvalRequired {
				t.Fatal("a release never runs without a person")
			}
		})
	}
	var v verdict
	releaseGates(gateInput{req: newRunRequest{gateway: gw}, facts: unmet}, &v)
	if len(v.gates) != 0 || v.refuse != nil {
		t.Fatalf("a plan that releases nothing got release gates: %+v", v)
	}
}

func TestContainmentGates(t *testing.T) {
	guards := config.Defaults().Guards
	guards.BreakerMinGateways, guards.BreakerFraction = 3, 0.5
	guards.MaxAutoIsolationsPerSite, guards.MaxAutoIsolationsFleet = 1, 3
	auto := newRunRequest{trigger: "policy", budget: true, gateway: inventory.Gateway{ID: "gw-1", Site: "osaka"}}
	contains := planShape{contains: true}
	for name, tc := range map[string]struct {
		req   newRunRequest
		shape planShape
		facts gateFacts
		fleet int
		want  string
		trip  bool
		auto  bool
	}{
		"within budget":        {req: auto, shape: contains, fleet: 4, want: "blast-radius:pass", auto: true},
		"site budget spent":    {req: auto, shape: contains, fleet: 4, facts: gateFacts{autoSite: 1}, want: "blast-radius:fail"},
		"fleet budget spent":   {req: auto, shape: contains, fleet: 4, facts: gateFacts{autoFleet: 3}, want: "blast-radius:fail"},
		"breaker trips now":    {req: auto, shape: contains, fleet: 4, facts: gateFacts{gatewaysFiring: 3}, want: "circuit-breaker:fail", trip: true},
		"fraction of a fleet":  {req: auto, shape: contains, fleet: 10, facts: gateFacts{gatewaysFiring: 4}, want: "blast-radius:pass", auto: true},
		"breaker already open": {req: auto, shape: contains, fleet: 4, facts: gateFacts{breaker: store.Breaker{Tripped: true, Reason: "storm"}}, want: "circuit-breaker:fail"},
		"a person's run":       {req: newRunRequest{trigger: "manual", budget: true}, shape: contains, fleet: 4, facts: gateFacts{gatewaysFiring: 9}, want: ""},
		"contains nothing":     {req: auto, shape: planShape{}, fleet: 4, facts: gateFacts{gatewaysFiring: 9}, want: ""},
		"not counted":          {req: newRunRequest{trigger: "policy"}, shape: contains, fleet: 4, facts: gateFacts{gatewaysFiring: 9}, want: ""},
	} {
		t.Run(name, func(t *testing.T) {
			var v verdict
			containmentGates(gateInput{req: tc.req, shape: tc.shape, facts: tc.facts, guards: guards, fleet: tc.fleet}, &v)
			if got := gateNames(v.gates); got != tc.want {
				t.Fatalf("gates %q, want %q", got, tc.want)
			}
			if (v.trip != "") != tc.trip || v.auto != tc.auto {
				t.Fatalf("trip %q auto %v", v.trip, v.auto)
			}
		})
	}
}

func TestShapeOfUsesTheCatalogue(t *testing.T) {
	cat, err := actions.NewCatalogue(newFake(actions.NameIsolate, nil), newFake(actions.NamePatch, nil), newFake(actions.NameSnapshot, nil), newFake(actions.NameRelease, nil))
	if err != nil {
		t.Fatal(err)
	}
	steps := func(names ...string) []plan.Step {
		var out []plan.Step
		for _, n := range names {
			out = append(out, plan.Step{Name: n, Action: n})
		}
		return out
	}
	if sh := shapeOf(steps("isolate", "patch"), cat); !sh.contains || sh.releases || len(sh.unprotected) != 1 {
		t.Fatalf("isolate, patch: %+v", sh)
	}
	if sh := shapeOf(steps("snapshot", "patch", "release"), cat); sh.contains || !sh.releases || len(sh.unprotected) != 0 {
		t.Fatalf("snapshot, patch, release: %+v", sh)
	}
}

func TestGatesRunInOrder(t *testing.T) {
	guards := config.Defaults().Guards
	v := evaluateGates(gateInput{
		req:    newRunRequest{trigger: "policy", policy: "p", budget: true, incident: "inc-1", gateway: inventory.Gateway{ID: "gw-1", Site: "s"}},
		shape:  planShape{contains: true, unprotected: []string{"power_off"}},
		facts:  gateFacts{compromised: true},
		guards: guards, fleet: 100,
	})
	if got, want := gateNames(v.gates), "approval:pass evidence-first:fail blast-radius:pass"; got != want {
		t.Fatalf("gates %q, want %q", got, want)
	}
	if v.auto || !v.approvalRequired {
		t.Fatalf("an unmet evidence gate leaves the run to a person: auto %v approval %v", v.auto, v.approvalRequired)
	}
}
